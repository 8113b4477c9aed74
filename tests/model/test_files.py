import pytest

from encoder.model.files import resolve_model


def test_local_folder_resolves_to_its_onnx(jina_dir):
    files = resolve_model(str(jina_dir), "onnx/model.onnx")
    assert files.root == jina_dir.resolve()
    assert files.onnx == jina_dir.resolve() / "onnx/model.onnx"
    assert files.config.is_file()


def test_missing_onnx_file_lists_what_exists(jina_dir):
    with pytest.raises(FileNotFoundError, match=r"onnx/model_fp16.onnx.*onnx/model.onnx"):
        resolve_model(str(jina_dir), "onnx/model_fp16.onnx")


def test_ingress_needs_no_onnx(jina_dir):
    assert resolve_model(str(jina_dir), "missing.onnx", with_onnx=False).onnx is None


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path / "nope"), "onnx/model.onnx")


def _fake_hub_cache(home, repo, files):
    """The layout huggingface_hub keeps under HF_HOME/hub, with a 'main' ref."""
    root = home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / ("0" * 40)
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_hub_id_resolves_from_the_cache_offline(tmp_path, monkeypatch):
    """The real huggingface_hub download path, run offline against a populated cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _fake_hub_cache(tmp_path, "jinaai/jina-embeddings-v3", {
        "config.json": "{}", "tokenizer.json": "{}", "onnx/model.onnx": "x",
        "onnx/model.onnx_data": "x",
    })
    files = resolve_model("jinaai/jina-embeddings-v3", "onnx/model.onnx")
    assert files.root == snapshot
    assert files.onnx == snapshot / "onnx/model.onnx"


def test_hub_id_offline_without_cache_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(Exception, match=r"(?i)offline|cache|local"):
        resolve_model("jinaai/jina-embeddings-v3", "onnx/model.onnx")
