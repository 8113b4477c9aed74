"""The encoder's scheduler against the per-text reference: runs never change a vector,
and runs go to the full session or parallel runs as they should. The queue: test_scheduler_queue."""

import threading

import numpy as np
import pytest

from encoder.errors import EmbeddingError
from encoder.pooling import l2_normalize
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import SchedulerSettings, ServiceSettings
from tests.reference import cosine
from tests.schedulers import make_scheduler, parcel, tokens

TEXTS = ["Hello world", "你好，世界", "emoji 😀🎉 ok", "a much longer sentence " * 12, "x"]


@pytest.fixture(scope="module")
def jina(jina_dir):
    return make_scheduler(jina_dir)


def test_discovers_jina_and_bert_io(jina, minilm_dir):
    assert jina.model.has_task_id and not jina.model.has_token_types
    assert jina.model.output_name == "text_embeds" and jina.width == 64
    bert = make_scheduler(minilm_dir)
    assert bert.model.has_token_types and not bert.model.has_task_id
    assert bert.model.output_name == "last_hidden_state" and bert.width == 384


@pytest.mark.parametrize(("budget", "parallel"), [(1, 1), (40, 1), (16_384, 1), (1, 2), (40, 3)])
def test_batched_equals_reference_for_every_budget(jina_dir, jina_reference, budget, parallel):
    scheduler = make_scheduler(jina_dir, budget, parallel)
    tasks = ["retrieval.query", "text-matching", "retrieval.passage"]
    batches, expected = [], []
    for task in tasks:
        batches.append(parcel(scheduler.card.task_id(task),
                             [jina_reference.ids(t, task) for t in TEXTS]))
        expected.append([jina_reference.embed(t, task) for t in TEXTS])
    for got, want in zip(scheduler.run_window(batches), expected, strict=True):
        for vector, reference in zip(l2_normalize(got), want, strict=True):
            assert cosine(vector, reference) >= 0.99999


def test_task_and_padding_change_the_model_output(jina, jina_reference):
    ids = jina_reference.ids("Hello world")
    by_task = [jina_reference.embed_ids(ids, task) for task in ("retrieval.query", "separation")]
    assert cosine(*by_task) < 0.99
    # Unmasked padding would change the states: the model really depends on the mask.
    feed_ids = np.array([ids + [1] * 5])
    unmasked = jina.model.token_states(feed_ids, np.ones_like(feed_ids), 4)[0, : len(ids)]
    assert cosine(unmasked.mean(axis=0), jina_reference.embed_ids(ids, "text-matching")) < 0.999


def test_8192_tokens_run_and_8193_fail_only_their_parcel(jina):
    results = jina.run_window([parcel(4, tokens(8192)), parcel(4, tokens(8193)),
                               parcel(4, [[0, 5, 2]])])
    assert isinstance(results[0], np.ndarray) and np.isfinite(results[0]).all()
    assert isinstance(results[1], EmbeddingError) and results[1].status == 500
    assert isinstance(results[2], np.ndarray)


def test_parallel_runs_fail_alone(jina_dir):
    scheduler = make_scheduler(jina_dir, budget=16, parallel=2)
    fine = [parcel(4, tokens(n)) for n in (5, 9, 14)]
    results = scheduler.run_window([fine[0], parcel(4, tokens(8193)), *fine[1:]])
    assert isinstance(results[1], EmbeddingError)
    alone = make_scheduler(jina_dir).run_window(fine)
    for got, want in zip([results[0], *results[2:]], alone, strict=True):
        assert np.allclose(got, want, atol=1e-5)


def test_a_lone_run_takes_the_full_session_and_several_run_in_parallel(jina_dir):
    threads = []
    scheduler = make_scheduler(jina_dir, budget=40, parallel=2,
                               on_run=lambda *_: threads.append(threading.current_thread().name))
    scheduler.run_window([parcel(0, [[0, 5, 2]])])
    assert threads == [threading.current_thread().name]
    threads.clear()
    # Two short sequences would share one run; with parallel they split, one run each.
    scheduler.run_window([parcel(0, [[0, 5, 2]] * 2)])
    assert len(threads) == 2 and all(name.startswith("onnx-parallel") for name in threads)


def test_uneven_runs_of_queries_still_run_in_parallel(jina_dir):
    runs = []
    scheduler = make_scheduler(jina_dir, budget=108, parallel=2, on_run=lambda s, padded, _:
                               runs.append((padded, threading.current_thread().name)))
    # Runs of 3 x 18 and 3 x 14 padded tokens (runs of one length pad nothing): none is
    # twice another, so one-thread runs two at once beat the full session one at a time.
    scheduler.run_window([parcel(0, [*tokens(*[18] * 6), *tokens(*[14] * 6)])])
    assert sorted(padded for padded, _ in runs) == [42, 42, 54, 54]
    assert all(name.startswith("onnx-parallel") for _, name in runs), runs


def test_a_run_bigger_than_a_parallel_share_takes_the_full_session(jina_dir, jina_reference):
    runs = []
    scheduler = make_scheduler(jina_dir, budget=512, parallel=2, on_run=lambda s, padded, _:
                               runs.append((padded, threading.current_thread().name)))
    document = tokens(2000)[0]
    passages = tokens(197, 198, 199, 200)
    results = scheduler.run_window([parcel(4, [document, *passages])])
    # The document alone is more than half the work: it runs on the full session, first;
    # the passages' runs (evened out to a multiple of 2) then go to parallel runs.
    assert runs[0] == (2000, threading.current_thread().name)
    assert len(runs) >= 3 and all(name.startswith("onnx-parallel") for _, name in runs[1:])
    want = [jina_reference.embed_ids(ids, "text-matching") for ids in [document, *passages]]
    for got, reference in zip(l2_normalize(results[0]), want, strict=True):
        assert cosine(got, reference) >= 0.99999


@pytest.mark.parametrize(("threads", "parallel_runs", "parallel_threads"),
                         [(2, 2, 1), (1, 2, None), (4, 2, 2), (2, 1, None)])
def test_load_opens_a_parallel_session_when_threads_allow(jina_dir, threads, parallel_runs,
                                                      parallel_threads):
    settings = ServiceSettings(model=str(jina_dir),
                               scheduler=SchedulerSettings(parallel_runs=parallel_runs))
    scheduler = Scheduler.load(settings, threads)
    assert scheduler.model.threads == threads
    assert (scheduler.parallel and scheduler.parallel.threads) == parallel_threads


def test_minilm_vectors_mean_something(minilm_dir, minilm_reference):
    texts = ["A cat sits on the mat", "A kitten rests on a rug", "The stock market crashed"]
    ids = [minilm_reference.ids(t) for t in texts]
    vectors = l2_normalize(make_scheduler(minilm_dir).run_window([parcel(None, ids)])[0])
    for vector, text in zip(vectors, texts, strict=True):
        assert cosine(vector, minilm_reference.embed(text)) >= 0.99999
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.4


def test_health_check_catches_a_broken_session(jina_dir, minilm_dir):
    scheduler = make_scheduler(jina_dir)
    scheduler.check()
    # A real but wrong session (MiniLM's inputs) makes every run fail, as a broken one would.
    scheduler.model.session = make_scheduler(minilm_dir).model.session
    scheduler.check()  # passive: no run has failed yet, so the check runs nothing
    assert isinstance(scheduler.run_window([parcel(0, [[0, 100, 2]])])[0], EmbeddingError)
    with pytest.raises(Exception, match=r"task_id|token_type_ids|input"):
        scheduler.check()


def test_a_run_failed_by_its_input_leaves_the_replica_healthy(jina_dir):
    scheduler = make_scheduler(jina_dir)
    assert isinstance(scheduler.run_window([parcel(0, [[0, 10**9, 2]])])[0], EmbeddingError)
    assert scheduler.executor.failed == {scheduler.model}
    scheduler.check()  # the canary passes: the session is fine, the input was not
    assert not scheduler.executor.failed


def test_non_finite_states_fail_the_run(jina_dir, monkeypatch):
    scheduler = make_scheduler(jina_dir)
    states = scheduler.model.token_states
    monkeypatch.setattr(scheduler.model, "token_states",
                        lambda *args: states(*args) * np.float32("nan"))
    failure = scheduler.run_window([parcel(0, [[0, 100, 2]])])[0]
    assert isinstance(failure, EmbeddingError) and "non-finite" in str(failure)
    with pytest.raises(RuntimeError, match="non-finite"):
        scheduler.check()


def test_every_onnx_run_is_reported_and_packed_within_the_budget(jina_dir):
    runs = []
    scheduler = make_scheduler(jina_dir, budget=40, on_run=lambda *run: runs.append(run))
    scheduler.run_window([parcel(0, tokens(3, 5, 9, 20))])
    # Budget 40, longest first: 20 and 9 share a run (2 x 20 padded), then 5 and 3.
    assert sum(r[0] for r in runs) == 4
    assert all(padded <= 40 and seconds > 0 for _, padded, seconds in runs)
    assert runs[0][1] == 40
