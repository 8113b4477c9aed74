"""Turn ``args.model`` (a local folder or a hub repo id) into a local folder of model files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# What the service reads besides the ONNX file: never the PyTorch/safetensors weights.
METADATA_PATTERNS = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "1_Pooling/config.json",
)


@dataclass(frozen=True)
class ModelFiles:
    """Paths of one resolved model."""

    root: Path
    onnx: Path | None

    @property
    def config(self) -> Path:
        return self.root / "config.json"


def resolve_model(
    model: str, onnx_file: str, revision: str | None = None, *, with_onnx: bool = True
) -> ModelFiles:
    """Find (or download) the model's files.

    A path that exists is used as it is. Anything else is a hub repo id: only the metadata,
    tokenizer and the chosen ONNX file with its external data are downloaded, into the
    ``huggingface_hub`` cache (``HF_HOME``), with the hub's progress bar. ``HF_HUB_OFFLINE=1``
    makes it use the cache alone. ``with_onnx=False`` skips the weights (the ingress needs only
    the tokenizer and config).
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        root = folder.resolve()
    elif folder.exists() or model.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder {model!r} does not exist or is not a folder")
    else:
        root = _download(model, onnx_file, revision, with_onnx)
    if not with_onnx:
        return ModelFiles(root=root, onnx=None)
    onnx = root / onnx_file
    if not onnx.is_file():
        found = sorted(str(p.relative_to(root)) for p in root.rglob("*.onnx"))
        raise FileNotFoundError(
            f"ONNX file {onnx_file!r} not found in {root}; ONNX files there: {found or 'none'}"
        )
    return ModelFiles(root=root, onnx=onnx)


class ModelNotFoundError(FileNotFoundError):
    """The model is neither a local folder nor downloadable nor in the hub cache."""


def _download(repo_id: str, onnx_file: str, revision: str | None, with_onnx: bool) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = list(METADATA_PATTERNS)
    if with_onnx:
        # External weights are "<file>_data" (jina) or "<file>.data" (other exporters).
        patterns += [onnx_file, f"{onnx_file}_data", f"{onnx_file}.data"]
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
               else f"the hub could not be reached or refused it ({type(exc).__name__})")
        raise ModelNotFoundError(
            f"model {repo_id!r} is not a local folder, and it could not be downloaded "
            f"({why}) nor found in the Hugging Face cache {constants.HF_HUB_CACHE}; serve a "
            "local folder instead (args.model in serve_config.yaml, EMBEDDINGS_MODEL or "
            "--model) holding config.json, tokenizer.json and the ONNX file") from exc


def model_root(model) -> Path:
    """The local folder of ``model`` (its ``ModelSettings``): its metadata and tokenizer,
    downloaded if it is a hub repo id; not its weights."""
    return resolve_model(model.model, model.onnx_file, model.revision, with_onnx=False).root
