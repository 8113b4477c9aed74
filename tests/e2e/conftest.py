"""Serve instances shared by the e2e modules whose configuration they are: each starts on
first use and stops right after its last user (``MODULE_ORDER`` keeps its users together),
leaving nothing: an idle instance's Ray still takes CPU from every test that runs beside it."""

from __future__ import annotations

import pytest

from tests.e2e.services import API_KEY, BATCH_WINDOW_S, LIMITS
from tests.serve_process import ServeProcess, serve_run

SHARED = ("minilm_service", "guarded_service", "jina_service", "rerank_service")
# The e2e modules in this order: each shared instance's users in a row, the instances' lives
# apart. Modules not named run after these, in their usual order.
MODULE_ORDER = ("test_cancellation", "test_serve_minilm",  # minilm_service
                "test_batch_expiry", "test_reliability",  # guarded_service
                "test_launcher",  # its own instances, then one test on jina_service
                "test_batch_api", "test_serve_jina",  # jina_service
                "test_ecosystem",  # jina_service and rerank_service
                "test_rerank")  # rerank_service
_last_user: dict[str, str] = {}  # shared fixture -> node id of the last test using it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Sorts the e2e tests by ``MODULE_ORDER`` (stable: a module's own order is kept)."""
    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    e2e = [i for i, item in enumerate(items) if item.path.parent.name == "e2e"]
    for index, item in zip(e2e, sorted((items[i] for i in e2e), key=rank), strict=True):
        items[index] = item


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:  # the final selection, after -k and -m
        for name in SHARED:
            if name in getattr(item, "fixturenames", ()):
                _last_user[name] = item.nodeid


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Stops a shared instance once its last user is done (its fixture's own stop at the end
    of the run then finds it stopped: both are idempotent)."""
    for name, nodeid in _last_user.items():
        if nodeid == item.nodeid and name in getattr(item, "funcargs", {}):
            service = item.funcargs[name]
            service.stop()
            service.assert_nothing_left()


@pytest.fixture(scope="session")
def jina_service(jina_dir, tmp_path_factory) -> ServeProcess:
    """jina-tiny through ``jina-serve`` on the shipped config, at the tests' CPU shares, with
    2 ORT threads on a fractional CPU share: the encoder opens its 1-thread parallel session
    (``parallel_runs`` defaults to 2), so every test on it also runs through parallel runs.
    Metrics reach the agent every second (Ray's default is 10 s). Used by test_serve_jina,
    test_batch_api, test_ecosystem and test_launcher's look at a running instance."""
    with serve_run(jina_dir, tmp_path_factory.mktemp("jina-service"),
                   args={"scheduler": {"ort_threads": 2}},
                   env={"RAY_metrics_report_interval_ms": "1000"}) as service:
        yield service


@pytest.fixture(scope="session")
def minilm_service(minilm_dir, tmp_path_factory) -> ServeProcess:
    """The real MiniLM (int8) through ``jina-serve``, served as ``all-MiniLM-L6-v2``, the
    encoder on one ONNX thread (0.5 CPU). Used by test_serve_minilm and test_cancellation."""
    with serve_run(minilm_dir, tmp_path_factory.mktemp("minilm-service"),
                   args={"served_model_name": "all-MiniLM-L6-v2"}) as service:
        yield service



@pytest.fixture(scope="session")
def guarded_service(jina_dir, tmp_path_factory) -> ServeProcess:
    """jina-tiny with an API key (``API_KEY``), small admission limits (``LIMITS``), one
    encoder replica (the kill test takes down the only one, the harshest case) and a 2 s
    batch completion window (``batches.completion_window_s``). Used by test_reliability and
    test_batch_expiry."""
    one = {"Encoder": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}}
    args = {**LIMITS, "batches": {"storage": str(tmp_path_factory.mktemp("guarded-batches")),
                                  "completion_window_s": BATCH_WINDOW_S}}
    with serve_run(jina_dir, tmp_path_factory.mktemp("guarded-service"), args=args,
                   env={"EMBEDDINGS_API_KEY": API_KEY}, deployments=one) as service:
        yield service


RERANKER = "jina-reranker-v2-base-multilingual"
BERT_RERANKER = "ms-marco-MiniLM-L-6-v2"


@pytest.fixture(scope="session")
def rerank_service(jina_dir, reranker_dir, bert_cross_encoder_dir,
                   tmp_path_factory) -> ServeProcess:
    """serve_config.rerank.yaml: jina-tiny's embeddings beside two rerankers, each on its
    own Encoder deployment: the tiny jina-reranker-v2 (``RERANKER``, alias
    "jina-reranker-v2") and the tiny BERT cross-encoder (``BERT_RERANKER``). Used by
    test_rerank and test_ecosystem's README examples."""
    extra = [{"model": str(reranker_dir), "served_model_name": RERANKER,
              "aliases": ["jina-reranker-v2"], "deployment": "Reranker"},
             {"model": str(bert_cross_encoder_dir), "served_model_name": BERT_RERANKER,
              "deployment": "BertReranker"}]
    cpus = {"Ingress": 0.1, "Encoder": 0.4, "Reranker": 0.4, "BertReranker": 0.3}
    with serve_run(jina_dir, tmp_path_factory.mktemp("rerank-service"), cpus=cpus,
                   config_file="serve_config.rerank.yaml",
                   env={"RAY_metrics_report_interval_ms": "1000"},
                   args={"extra_models": extra, "scheduler": {"ort_threads": 1}}) as service:
        yield service
