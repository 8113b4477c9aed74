"""Shared fixtures: the offline test models, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import build_jina_tiny, build_minilm
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
