"""The Batch API's store: OpenAI's shapes, 404s, pagination, cancel marks, parts."""

import itertools
import threading

import pytest

from encoder.batches.store import BatchStore
from encoder.errors import EmbeddingError
from tests.s3_server import s3_server


@pytest.fixture
def store(tmp_path):
    return BatchStore(str(tmp_path / "store"))


def test_files_round_trip_and_404(store):
    created = store.create_file("in.jsonl", "batch", b"line\n")
    assert created["object"] == "file" and created["bytes"] == 5 and created["purpose"] == "batch"
    assert store.get_file(created["id"]) == created
    assert store.file_content(created["id"]) == b"line\n"
    assert [f["id"] for f in store.list_files("batch")["data"]] == [created["id"]]
    assert store.list_files("batch_output")["data"] == []
    assert store.delete_file(created["id"]) == {"id": created["id"], "object": "file",
                                                "deleted": True}
    for call in (store.get_file, store.file_content, store.delete_file):
        with pytest.raises(EmbeddingError) as missing:
            call(created["id"])
        assert missing.value.status == 404
    with pytest.raises(EmbeddingError):
        store.get_file("../files/x")  # never outside the store


def test_batches_page_newest_first(store):
    file = store.create_file("in.jsonl", "batch", b"x\n")
    ids = []
    for _ in range(5):  # within one second: the order still holds
        ids.append(store.create_batch(file["id"], "/v1/embeddings", "24h", {"k": "v"})["id"])
    first = store.list_batches(limit=2)
    assert [b["id"] for b in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = store.list_batches(after=first["last_id"], limit=10)
    assert [b["id"] for b in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
    assert store.get_batch(ids[0])["metadata"] == {"k": "v"}
    with pytest.raises(EmbeddingError):
        store.list_batches(limit=0)
    with pytest.raises(EmbeddingError):
        store.create_batch("file-missing", "/v1/embeddings", "24h", None)


def test_cancel_is_a_mark_the_runner_acts_on(store):
    file = store.create_file("in.jsonl", "batch", b"x\n")
    batch = store.create_batch(file["id"], "/v1/embeddings", "24h", None)
    assert store.request_cancel(batch["id"])["status"] == "cancelling"
    assert store.get_batch(batch["id"])["status"] == "validating"  # the runner's record
    assert store.view(store.get_batch(batch["id"]))["status"] == "cancelling"
    assert [b["id"] for b in store.pending_batches()] == [batch["id"]]


def test_parts_are_complete_or_absent(store):
    store.write_part("batch_x", 0, [b"a\n", b"b\n"], [b"e\n"])
    store.write_part("batch_x", 2, [], [])
    assert store.done_parts("batch_x") == {0, 2}
    assert store.part_lines("batch_x", 0, errors=False) == b"a\nb\n"
    assert store.part_lines("batch_x", 0, errors=True) == b"e\n"
    assert store.done_parts("batch_none") == set()


def test_a_batch_replaced_while_read_on_an_object_store_reads_whole():
    """An S3 reader asks an object's size, then reads its bytes: a batch the runner replaces
    in between must still read as one whole version (the e2e kill test got a 500 from it)."""
    with s3_server() as s3:
        store = BatchStore(s3.uri("root"))
        batch = store.create_batch(store.create_file("in", "batch", b"x\n")["id"],
                                   "/v1/embeddings", "24h", None)
        done = threading.Event()

        def runner() -> None:  # progress of every length, as a running batch writes it
            for i in itertools.count():
                if done.is_set():
                    return
                store.save_batch({**batch, "request_counts": {
                    "total": 10**6, "completed": i * 7919 % 10**(1 + i % 6), "failed": 0}})

        writer = threading.Thread(target=runner)
        writer.start()
        try:
            reads = [store.get_batch(batch["id"])["id"] for _ in range(150)]
        finally:
            done.set()
            writer.join()
        assert reads == [batch["id"]] * 150


@pytest.mark.parametrize("bad", ["x" * 5000, "file-\x00abc", "file-../x", ".hidden", "",
                                 "file-ü", "a/b"])
def test_an_id_the_store_cannot_have_made_is_a_404_before_any_path(store, bad):
    for call in (store.get_file, store.file_content, store.delete_file, store.get_batch,
                 store.request_cancel):
        with pytest.raises(EmbeddingError) as missing:
            call(bad)
        assert missing.value.status == 404 and len(missing.value.message) < 200
