"""Shared fixtures: the offline test models, built once per test session, and the check that
nothing the run started outlives it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.marked_processes import RUN_MARKER, kill_marked, marked
from tests.models import (
    JINA_V3_GRAPH,
    build_bert_cross_encoder,
    build_jina_tiny,
    build_jina_v3_graph,
    build_minilm,
    build_minilm_fp32,
    build_reranker_tiny,
)
from tests.reference import ReferenceEncoder, RerankReference
from tests.serve_process import restore_sigint

# Every process the run starts inherits it: what is left at the end is found by it.
os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)
# Ray's token authentication, as every local Ray of the run has it (ray.init turns it on by
# default): set before Ray reads its config in this process, so tests that join an
# instance's Ray (ray.init(address=...)) send its token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
restore_sigint()  # also for the processes tests start themselves, not through serve_run


@pytest.fixture(scope="session", autouse=True)
def nothing_outlives_the_run():
    """Fails the run (after killing them) if processes it started are alive at its end."""
    yield
    run = os.environ[RUN_MARKER]
    deadline = time.monotonic() + 10
    while (left := marked(run, RUN_MARKER)) and time.monotonic() < deadline:
        time.sleep(0.5)
    kill_marked(run, RUN_MARKER)
    assert not left, f"processes outlived the test run: {[p.command for p in left]}"


def _built_once(builder: Callable[[Path], Path], name: str, doc: str):
    """A session fixture: the model ``builder`` writes to a temporary ``models/<name>``."""
    @pytest.fixture(scope="session")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return builder(tmp_path_factory.mktemp("models") / name)
    fixture.__doc__ = doc
    return fixture


jina_dir = _built_once(build_jina_tiny, "jina-tiny", "jina-v3's export in miniature.")
minilm_dir = _built_once(build_minilm, "minilm", "The real all-MiniLM-L6-v2, int8.")
minilm_fp32_dir = _built_once(build_minilm_fp32, "minilm-fp32",
                              "all-MiniLM-L6-v2's real fp32 weights in an ONNX graph (~3 s).")
reranker_dir = _built_once(build_reranker_tiny, "reranker-tiny",
                           "jina-reranker-v2's shape in miniature.")
bert_cross_encoder_dir = _built_once(build_bert_cross_encoder, "bert-cross-encoder",
                                     "A tiny BERT cross-encoder with token types.")


def _reference_of(reference: type, folder: str):
    """A session fixture: ``reference`` (a per-text or per-pair reference) of the model the
    fixture ``folder`` builds."""
    @pytest.fixture(scope="session")
    def fixture(request: pytest.FixtureRequest):
        return reference(request.getfixturevalue(folder))
    return fixture


reranker_reference = _reference_of(RerankReference, "reranker_dir")
bert_cross_encoder_reference = _reference_of(RerankReference, "bert_cross_encoder_dir")
jina_reference = _reference_of(ReferenceEncoder, "jina_dir")
minilm_reference = _reference_of(ReferenceEncoder, "minilm_dir")


@pytest.fixture(scope="session")
def jina_v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jina-v3's real graph with random weights (2.29 GB, built once per test session).

    Its tests fail where the graph is missing (CI has it beside the checkout); set
    ``JINA_V3_GRAPH=skip`` to skip them knowingly, or point it at the graph's folder.
    """
    if os.environ.get("JINA_V3_GRAPH") == "skip":
        pytest.skip("JINA_V3_GRAPH=skip: jina-v3's real graph is skipped on purpose")
    if not (JINA_V3_GRAPH / "onnx/model.onnx").is_file():
        pytest.fail(f"jina-v3's graph is not at {JINA_V3_GRAPH}: put ../shared beside the "
                    "checkout, point JINA_V3_GRAPH at the graph's folder, or set "
                    "JINA_V3_GRAPH=skip to skip its tests knowingly")
    return build_jina_v3_graph(tmp_path_factory.mktemp("models") / "jina-v3-graph")
