"""Shared fixtures: the offline test models, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import JINA_V3_GRAPH, build_jina_tiny, build_jina_v3_graph, build_minilm
from tests.reference import ReferenceEncoder


@pytest.fixture(scope="session")
def jina_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_jina_tiny(tmp_path_factory.mktemp("models") / "jina-tiny")


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_minilm(tmp_path_factory.mktemp("models") / "minilm")


@pytest.fixture(scope="session")
def jina_reference(jina_dir: Path) -> ReferenceEncoder:
    return ReferenceEncoder(jina_dir)


@pytest.fixture(scope="session")
def minilm_reference(minilm_dir: Path) -> ReferenceEncoder:
    return ReferenceEncoder(minilm_dir)


@pytest.fixture(scope="session")
def jina_v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jina-v3's real graph with random weights (2.29 GB, built once per test session)."""
    if not (JINA_V3_GRAPH / "onnx/model.onnx").is_file():
        pytest.skip(f"jina-v3's graph is not at {JINA_V3_GRAPH} (CI has it beside the checkout;"
                    " set JINA_V3_GRAPH to run these tests)")
    return build_jina_v3_graph(tmp_path_factory.mktemp("models") / "jina-v3-graph")
