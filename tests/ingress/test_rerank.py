"""Reranking in-process: pairs as the tokenizer joins them, windows for long documents, scores
equal to a per-pair reference run of the same ONNX, whatever the runs' composition."""

import asyncio

import numpy as np
import pytest

from encoder.errors import EmbeddingError
from encoder.ingress.rerank import RerankQuery, RerankService, plan_pairs, sigmoid
from encoder.ingress.tokenize import PairTemplate
from encoder.model.card import ModelCard
from encoder.settings import SchedulerSettings, ServiceSettings
from tests.clients import tokenizer_of
from tests.schedulers import make_scheduler

QUERY = "What is the capital of Germany?"
DOCUMENTS = ["Berlin is the capital of Germany.", "Die Hauptstadt Deutschlands ist Berlin.",
             "柏林是德国的首都。", "Cats sleep most of the day.", "x",
             "A long document about many things. " * 300]


def rerank(folder, query: RerankQuery, budget: int = 16_384, parallel: int = 1):
    settings = ServiceSettings(model=str(folder),
                               scheduler=SchedulerSettings(max_run_tokens=min(budget, 4096)))
    service = RerankService(settings, settings.main_model(), ModelCard.from_folder(folder),
                            tokenizer_of(folder), make_scheduler(folder, budget, parallel).embed)
    return asyncio.run(service.rerank(query))


@pytest.mark.parametrize("model", ["reranker", "bert_cross_encoder"])
@pytest.mark.parametrize(("budget", "parallel"), [(16_384, 1), (64, 1), (300, 2)])
def test_scores_equal_the_per_pair_reference_for_every_run_layout(request, model, budget,
                                                                  parallel):
    folder = request.getfixturevalue(f"{model}_dir")
    reference = request.getfixturevalue(f"{model}_reference")
    ranked = rerank(folder, RerankQuery(QUERY, DOCUMENTS), budget, parallel)
    want = [reference.score(QUERY, d) for d in DOCUMENTS]
    np.testing.assert_allclose(ranked.scores, want, atol=1e-5, rtol=0)
    raw = rerank(folder, RerankQuery(QUERY, DOCUMENTS[:2], raw_scores=True), budget, parallel)
    np.testing.assert_allclose(raw.scores, [reference.score(QUERY, d, raw=True)
                                            for d in DOCUMENTS[:2]], atol=1e-5, rtol=0)


def test_the_check_can_fail_token_types_and_padding_change_the_score(bert_cross_encoder_dir,
                                                                     bert_cross_encoder_reference):
    """The 1e-5 checks have power: without token types, or with its padding unmasked, a
    pair scores differently."""
    reference = bert_cross_encoder_reference
    (ids, types), = reference.pairs(QUERY, DOCUMENTS[0])
    right = reference.logit(ids, types)
    assert abs(reference.logit(ids, [0] * len(ids)) - right) > 1e-3
    feed = {"input_ids": np.array([ids + [0] * 5]), "attention_mask": np.ones((1, len(ids) + 5),
                                                                               dtype=np.int64),
            "token_type_ids": np.array([types + [0] * 5])}
    unmasked = float(reference.session.run(None, feed)[0][0][0])
    assert abs(unmasked - right) > 1e-3


def test_a_long_document_scores_as_its_best_window(reranker_dir, reranker_reference):
    long = DOCUMENTS[-1]
    pairs = reranker_reference.pairs(QUERY, long)
    assert len(pairs) >= 2 and all(len(ids) <= 1024 for ids, _ in pairs)
    best = max(reranker_reference.logit(ids, types) for ids, types in pairs)
    ranked = rerank(reranker_dir, RerankQuery(QUERY, [long], raw_scores=True))
    assert ranked.scores[0] == pytest.approx(best, abs=1e-5)


def test_windows_overlap_and_the_last_ends_at_the_document_end():
    template = PairTemplate(lead=[0], mid=[2, 2], tail=[2], second_type=False)
    document = list(range(100, 400))
    plan = plan_pairs(template, [7, 8], [document, [5]], window=106)
    capacity = 106 - 4 - 2
    windows = [s[5:-1] for s, d in zip(plan.sequences, plan.documents, strict=True) if d == 0]
    assert windows[0] == document[:capacity] and windows[-1] == document[-capacity:]
    assert all(len(w) == capacity for w in windows)
    assert windows[1][0] == document[capacity - min(80, capacity // 4)]
    assert plan.documents.count(1) == 1 and plan.pair_starts is None


def test_the_query_keeps_at_most_half_the_window():
    template = PairTemplate(lead=[101], mid=[102], tail=[102], second_type=True)
    plan = plan_pairs(template, list(range(1000)), [[5, 6]], window=64)
    (ids,) = plan.sequences
    assert ids[1:31] == list(range(30)) and ids[31] == 102  # 64 // 2 - 1 - 1 query tokens
    assert plan.pair_starts == [32]


@pytest.mark.parametrize(("query", "param"), [
    (RerankQuery("", ["a"]), "query"), (RerankQuery("q", []), "documents"),
    (RerankQuery("q", ["a", ""]), "documents"), (RerankQuery("q", ["a"], top_n=0), "top_n"),
    (RerankQuery("q", ["a"], top_n=2), "top_n")])
def test_bad_requests_are_400s_naming_the_field(reranker_dir, query, param):
    with pytest.raises(EmbeddingError) as error:
        rerank(reranker_dir, query)
    assert error.value.status == 400 and error.value.param == param


def test_sigmoid_is_exact_and_never_overflows():
    logits = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0])
    np.testing.assert_allclose(sigmoid(logits)[1:4], 1 / (1 + np.exp(-logits[1:4])))
    assert sigmoid(logits)[0] == 0.0 and sigmoid(logits)[-1] == 1.0
