"""The encoder core against the per-text reference: batching must never change a vector."""

import threading

import numpy as np
import pytest

from encoder.batching import TokenBatch
from encoder.errors import EncoderFailure
from encoder.model_card import ModelCard
from encoder.pipeline import EmbeddingPipeline
from encoder.pooling import l2_normalize
from encoder.runtime import OnnxModel
from encoder.settings import ServiceSettings
from tests.reference import cosine

TEXTS = ["Hello world", "你好，世界", "emoji 😀🎉 ok", "a much longer sentence " * 12, "x"]


def make_pipeline(folder, budget=16_384, lanes=1):
    path = folder / "onnx/model.onnx"
    return EmbeddingPipeline(OnnxModel(path, threads=1), ModelCard.from_folder(folder), budget,
                             OnnxModel(path, threads=1) if lanes > 1 else None, lanes)


@pytest.fixture(scope="module")
def jina(jina_dir):
    return make_pipeline(jina_dir)


def test_discovers_jina_io(jina):
    assert jina.model.has_task_id and not jina.model.has_token_types
    assert jina.model.output_name == "text_embeds"
    assert jina.width == 64


def test_discovers_bert_io(minilm_dir):
    bert = make_pipeline(minilm_dir)
    assert bert.model.has_token_types and not bert.model.has_task_id
    assert bert.model.output_name == "last_hidden_state" and bert.width == 384


@pytest.mark.parametrize(("budget", "lanes"), [(1, 1), (40, 1), (16_384, 1), (1, 2), (40, 3)])
def test_batched_equals_reference_for_every_budget(jina_dir, jina_reference, budget, lanes):
    pipeline = make_pipeline(jina_dir, budget, lanes)
    tasks = ["retrieval.query", "text-matching", "retrieval.passage"]
    batches, expected = [], []
    for task in tasks:
        ids = [jina_reference.ids(t, task) for t in TEXTS]
        batches.append(TokenBatch.from_lists(pipeline.card.task_id(task), ids, budget))
        expected.append([jina_reference.embed(t, task) for t in TEXTS])
    results = pipeline.embed(batches)
    for got, want in zip(results, expected, strict=False):
        for vector, reference in zip(l2_normalize(got), want, strict=False):
            assert cosine(vector, reference) >= 0.99999


def test_task_and_padding_change_the_model_output(jina, jina_reference):
    ids = jina_reference.ids("Hello world")
    by_task = [jina_reference.embed_ids(ids, task) for task in ("retrieval.query", "separation")]
    assert cosine(*by_task) < 0.99
    # Unmasked padding would change the states: the model really depends on the mask.
    feed_ids = np.array([ids + [1] * 5])
    mask_all = np.ones_like(feed_ids)
    unmasked = jina.model.token_states(feed_ids, mask_all, 4)[0, : len(ids)].mean(axis=0)
    assert cosine(unmasked, jina_reference.embed_ids(ids, "text-matching")) < 0.999


def test_8192_tokens_run_and_8193_crash_the_graph(jina):
    ok = TokenBatch.from_lists(4, [[0] + [5] * 8190 + [2]], 16_384)
    over = TokenBatch.from_lists(4, [[0] + [5] * 8191 + [2]], 16_384)
    short = TokenBatch.from_lists(4, [[0, 5, 2]], 16_384)
    results = jina.embed([ok, over, short])
    assert isinstance(results[0], np.ndarray) and np.isfinite(results[0]).all()
    # The failed run fails only the batch it holds.
    assert isinstance(results[1], EncoderFailure)
    assert isinstance(results[2], np.ndarray)


def test_parallel_runs_fail_alone(jina_dir):
    pipeline = make_pipeline(jina_dir, lanes=2)
    over = TokenBatch.from_lists(4, [[0] + [5] * 8191 + [2]], 16_384)
    fine = [TokenBatch.from_lists(4, [[0] + [5] * n + [2]], 16) for n in (3, 7, 12)]
    results = pipeline.embed([fine[0], over, *fine[1:]])
    assert isinstance(results[1], EncoderFailure)
    alone = make_pipeline(jina_dir).embed(fine)
    for got, want in zip([results[0], *results[2:]], alone, strict=True):
        assert np.allclose(got, want, atol=1e-5)


def test_a_lone_run_takes_the_full_session_and_several_take_the_lanes(jina_dir):
    pipeline = make_pipeline(jina_dir, budget=40, lanes=2)
    threads = []
    pipeline.on_run = lambda *_: threads.append(threading.current_thread().name)
    pipeline.embed([TokenBatch.from_lists(0, [[0, 5, 2]], 40)])
    assert threads == [threading.current_thread().name]
    threads.clear()
    # Two short sequences would share one run; with lanes they split, one run per lane.
    pipeline.embed([TokenBatch.from_lists(0, [[0, 5, 2]] * 2, 40)])
    assert len(threads) == 2 and all(name.startswith("onnx-lane") for name in threads)


def test_a_run_bigger_than_a_lanes_share_takes_the_full_session(jina_dir, jina_reference):
    pipeline = make_pipeline(jina_dir, budget=512, lanes=2)
    threads = []
    pipeline.on_run = lambda sequences, tokens, _: threads.append(
        (tokens, threading.current_thread().name))
    document = [0] + [5] * 1998 + [2]
    passages = [[0] + [7] * n + [2] for n in (195, 196, 197, 198)]
    results = pipeline.embed([TokenBatch.from_lists(4, [document, *passages], 4096)])
    # The document alone is more than half the work: it runs on the full session, first;
    # the passages' runs (evened out to a multiple of 2) then go to the lanes.
    assert threads[0] == (2000, threading.current_thread().name)
    assert len(threads) >= 3 and all(name.startswith("onnx-lane") for _, name in threads[1:])
    want = [jina_reference.embed_ids(ids, "text-matching") for ids in [document, *passages]]
    for got, reference in zip(l2_normalize(results[0]), want, strict=True):
        assert cosine(got, reference) >= 0.99999


@pytest.mark.parametrize(("threads", "parallel_runs", "lane_threads"),
                         [(2, 2, 1), (1, 2, None), (4, 2, 2), (2, 1, None)])
def test_load_opens_a_lane_session_when_threads_allow(jina_dir, threads, parallel_runs,
                                                      lane_threads):
    settings = ServiceSettings(model=str(jina_dir), parallel_runs=parallel_runs)
    pipeline = EmbeddingPipeline.load(settings, threads)
    assert _threads(pipeline.model) == threads
    assert (pipeline.lanes and _threads(pipeline.lanes)) == lane_threads


def _threads(model: OnnxModel) -> int:
    return model.session.get_session_options().intra_op_num_threads


def test_minilm_vectors_mean_something(minilm_dir, minilm_reference):
    bert = make_pipeline(minilm_dir)
    texts = ["A cat sits on the mat", "A kitten rests on a rug", "The stock market crashed"]
    ids = [minilm_reference.ids(t) for t in texts]
    vectors = l2_normalize(bert.embed([TokenBatch.from_lists(None, ids, 16_384)])[0])
    for vector, text in zip(vectors, texts, strict=False):
        assert cosine(vector, minilm_reference.embed(text)) >= 0.99999
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.4


def test_health_check_catches_a_broken_session(jina_dir, minilm_dir):
    pipeline = make_pipeline(jina_dir)
    pipeline.check()
    # A real but wrong session (MiniLM's inputs) makes every run fail, as a broken one would.
    pipeline.model.session = make_pipeline(minilm_dir).model.session
    pipeline.check()  # passive: no run has failed yet, so the check runs nothing
    batch = TokenBatch.from_lists(0, [[0, 100, 2]], 64)
    assert isinstance(pipeline.embed([batch])[0], EncoderFailure)
    with pytest.raises(Exception, match=r"task_id|token_type_ids|input"):
        pipeline.check()


def test_a_run_failed_by_its_input_leaves_the_replica_healthy(jina_dir):
    pipeline = make_pipeline(jina_dir)
    bad = TokenBatch.from_lists(0, [[0, 10**9, 2]], 64)  # an id past the vocabulary
    assert isinstance(pipeline.embed([bad])[0], EncoderFailure)
    assert pipeline._failed == {pipeline.model}
    pipeline.check()  # the canary passes: the session is fine, the input was not
    assert not pipeline._failed


def test_non_finite_states_fail_the_run(jina_dir, monkeypatch):
    pipeline = make_pipeline(jina_dir)
    states = pipeline.model.token_states
    monkeypatch.setattr(pipeline.model, "token_states",
                        lambda *args: states(*args) * np.float32("nan"))
    batch = TokenBatch.from_lists(0, [[0, 100, 2]], 64)
    failure = pipeline.embed([batch])[0]
    assert isinstance(failure, EncoderFailure) and "non-finite" in str(failure)
    with pytest.raises(RuntimeError, match="non-finite"):
        pipeline.check()


def test_every_onnx_run_is_reported(jina_dir):
    pipeline = make_pipeline(jina_dir, budget=40)
    runs = []
    pipeline.on_run = lambda sequences, tokens, seconds: runs.append((sequences, tokens, seconds))
    lengths = [3, 5, 9, 20]
    batch = TokenBatch.from_lists(0, [[0] + [100] * (n - 2) + [2] for n in lengths], 40)
    pipeline.embed([batch])
    # Budget 40, longest first: 20 and 9 share a run (2 x 20 padded), then 5 and 3.
    assert sum(r[0] for r in runs) == len(lengths)
    assert all(tokens <= 40 and seconds > 0 for _, tokens, seconds in runs)
    assert runs[0][1] == 40  # 20 and 9, padded to 20


def test_a_window_of_requests_is_sorted_together(jina_dir):
    # What an encoder's sort window gives: two requests of mixed lengths, one embed call.
    pipeline = make_pipeline(jina_dir, budget=40)
    padded = []
    pipeline.on_run = lambda sequences, tokens, seconds: padded.append(tokens)
    first, second = ([[0] + [100] * (n - 2) + [2] for n in lengths]
                     for lengths in ((20, 5), (19, 4)))
    together = pipeline.embed([TokenBatch.from_lists(0, first, 40),
                               TokenBatch.from_lists(0, second, 40)])
    assert padded == [40, 10]  # 20 with 19, then 5 with 4; apart they pad to 2 x 40
    alone = [pipeline.embed([TokenBatch.from_lists(0, s, 40)])[0] for s in (first, second)]
    for got, want in zip(together, alone, strict=True):
        assert np.allclose(got, want, atol=1e-5)


def test_metrics_are_silent_outside_ray():
    from encoder.metrics import EncoderMetrics, IngressMetrics

    IngressMetrics().embedded("text-matching", 3, 30)
    IngressMetrics().failed(400, None)
    EncoderMetrics().run(2, 64, 0.01)
