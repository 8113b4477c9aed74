"""What a model's own files say about it: tasks, instruction prefixes, dimensions, limits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from encoder.errors import invalid

# RoBERTa-family models number positions from pad_token_id + 1, so the first
# pad_token_id + 1 rows of the position table can never hold a token.
_OFFSET_POSITION_MODEL_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "xlm_roberta"})
# transformers writes this sentinel when a tokenizer has no real limit.
_NO_LIMIT = 10**12

Pooling = Literal["mean", "cls", "logits"]
Kind = Literal["embeddings", "rerank"]


@dataclass(frozen=True)
class ModelCard:
    """Facts read from ``config.json``, ``tokenizer_config.json`` and ``1_Pooling/config.json``.

    tasks: LoRA task names; a task's ``task_id`` is its index (empty for plain encoders).
    instructions: text prepended to every input of a task (missing or "" = none).
    matryoshka_dims: widths the model was trained to be truncated to (may be empty).
    max_tokens: most tokens one input may have, special tokens included.
    hidden_size: width of the token states, if the config says.
    attention_heads: attention heads per layer, if the config says.
    layers: transformer layers, if the config says.
    intermediate_size: width of the feed-forward layers, if the config says.
    vocab_size: token ids the model knows, if the config says.
    pad_token_id: id that fills padded positions.
    pooling: how token states become one vector ("logits": the model outputs its scores).
    kind: what it serves: "embeddings" (token states) or "rerank" (a cross-encoder of one
      logit, ``...ForSequenceClassification`` with ``num_labels`` 1).
    """

    tasks: tuple[str, ...] = ()
    instructions: dict[str, str] = field(default_factory=dict)
    matryoshka_dims: tuple[int, ...] = ()
    max_tokens: int = 512
    hidden_size: int | None = None
    attention_heads: int | None = None
    layers: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    pad_token_id: int = 0
    pooling: Pooling = "mean"
    kind: Kind = "embeddings"

    @classmethod
    def from_folder(cls, root: Path) -> ModelCard:
        """Read the card of the model stored in ``root``."""
        config = _read_json(root / "config.json")
        tokenizer_config = _read_json(root / "tokenizer_config.json")
        pooling_config = _read_json(root / "1_Pooling" / "config.json")
        kind = _kind(config)
        return cls(
            tasks=tuple(config.get("lora_adaptations") or ()),
            instructions=dict(config.get("task_instructions") or {}),
            matryoshka_dims=tuple(sorted(config.get("matryoshka_dimensions") or ())),
            max_tokens=_max_tokens(config, tokenizer_config),
            hidden_size=config.get("hidden_size"),
            attention_heads=config.get("num_attention_heads"),
            layers=config.get("num_hidden_layers"),
            intermediate_size=config.get("intermediate_size"),
            vocab_size=config.get("vocab_size"),
            pad_token_id=int(config.get("pad_token_id") or 0),
            pooling="logits" if kind == "rerank" else (
                "cls" if pooling_config.get("pooling_mode_cls_token") else "mean"),
            kind=kind,
        )

    def task_id(self, task: str) -> int:
        """Index of ``task`` in the model's task list (its ONNX ``task_id``)."""
        return self.tasks.index(task)

    def resolve_task(self, task: str | None, default: str) -> tuple[str | None, int | None]:
        """``(task, task_id)`` for a request's ``task`` (None: ``default``); a 400 for a task
        this model lacks, or any task for a model without tasks."""
        if not self.tasks:
            if task is not None:
                raise invalid("this model has no tasks; omit 'task'", param="task")
            return None, None
        task = default if task is None else task
        if task not in self.tasks:
            raise invalid(f"unknown task {task!r}; this model's tasks are {list(self.tasks)}",
                          param="task")
        return task, self.task_id(task)

    def instruction(self, task: str | None) -> str:
        """The prefix the official encode prepends for ``task``."""
        return self.instructions.get(task, "") if task else ""


def _kind(config: dict[str, Any]) -> Kind:
    """A sequence classifier of one label is a reranker; anything else embeds."""
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return "embeddings"
    labels = config.get("num_labels", len(config.get("id2label") or {}) or 2)
    if labels != 1:
        raise ValueError(f"a sequence classifier of {labels} labels: only rerankers (one "
                         "logit) are served")
    return "rerank"


def _max_tokens(config: dict[str, Any], tokenizer_config: dict[str, Any]) -> int:
    limits = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int):
        # Rotary positions count from 0 (jina-v3's caches have max_position_embeddings rows,
        # all usable); only a learned table numbered from pad_token_id + 1 loses rows.
        if (config.get("model_type") in _OFFSET_POSITION_MODEL_TYPES
                and config.get("position_embedding_type") != "rotary"):
            positions -= int(config.get("pad_token_id", 1)) + 1
        limits.append(positions)
    declared = tokenizer_config.get("model_max_length")
    if isinstance(declared, (int, float)) and 0 < declared < _NO_LIMIT:
        limits.append(int(declared))
    return min(limits) if limits else 512


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as f:
        return json.load(f)
