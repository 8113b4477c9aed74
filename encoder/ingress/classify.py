"""Zero-shot classification on an embeddings model (``POST /v1/classify``, Jina's shape).

Inputs and labels are embedded with the model's ``classification`` task (jina-v3's adapter;
a model without tasks embeds them plainly), L2-normalised. A label's vector is cached: labels
recur across requests. An input's scores are a softmax over the labels of its cosines to
them, scaled by ``LOGIT_SCALE`` (CLIP's, the convention for zero-shot classification with
contrastive embeddings): they run from 0 to 1, sum to 1, and keep the cosines' order. Why:
docs/decisions/classify.md.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictStr

from encoder.errors import invalid
from encoder.ingress.admission import Ticket
from encoder.ingress.rerank_schemas import TextDocument
from encoder.ingress.service import EmbeddingsService

LOGIT_SCALE = 100.0
MAX_LABELS = 256  # Jina's zero-shot limit
CACHED_LABELS = 4096
TASK = "classification"


class ClassifyRequest(BaseModel):
    """Body of ``POST /v1/classify``: inputs as strings or ``{"text"}`` objects."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    input: list[Union[StrictStr, TextDocument]]
    labels: list[StrictStr]

    def texts(self) -> list[str]:
        return [i if isinstance(i, str) else i.text for i in self.input]


def label_scores(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[inputs, labels]`` scores: softmax over each row of scaled cosines (both sides
    unit vectors)."""
    logits = LOGIT_SCALE * (inputs @ labels.T).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


class ClassifyService:
    """Classifies with an embeddings model's vectors; its label vectors cached."""

    def __init__(self, embeddings: EmbeddingsService) -> None:
        self.embeddings = embeddings
        self.task = TASK if TASK in embeddings.card.tasks else None
        self._labels: OrderedDict[str, np.ndarray] = OrderedDict()

    async def classify(self, request: ClassifyRequest,
                       ticket: Ticket | None = None) -> dict[str, Any]:
        """Jina's response: each input's best label, its score, and every label's."""
        texts, labels = request.texts(), request.labels
        self._check(texts, labels)
        vectors, tokens = await self.embeddings.unit_vectors(texts, self.task, ticket)
        label_vectors, label_tokens = await self._label_vectors(labels)
        scores = label_scores(vectors, label_vectors)
        data = []
        for index, row in enumerate(scores):
            best = int(np.argmax(row))
            data.append({"object": "classification", "index": index,
                         "prediction": labels[best], "score": float(row[best]),
                         "predictions": [{"label": label, "score": float(score)}
                                         for label, score in zip(labels, row, strict=True)]})
        total = tokens + label_tokens
        return {"usage": {"total_tokens": total}, "data": data,
                "model": self.embeddings.model.served_model_name}

    async def _label_vectors(self, labels: list[str]) -> tuple[np.ndarray, int]:
        # Copied out before the await: other requests may evict entries meanwhile.
        known = {label: self._labels[label] for label in labels if label in self._labels}
        missing = [label for label in labels if label not in known]
        tokens = 0
        if missing:
            vectors, tokens = await self.embeddings.unit_vectors(missing, self.task)
            known.update(zip(missing, vectors, strict=True))
        for label in labels:
            self._labels[label] = known[label]
            self._labels.move_to_end(label)
        while len(self._labels) > CACHED_LABELS:
            self._labels.popitem(last=False)
        return np.stack([known[label] for label in labels]), tokens

    def _check(self, texts: list[str], labels: list[str]) -> None:
        self.embeddings.check_items(texts, "input")
        self.embeddings.check_items(labels, "labels", MAX_LABELS)
        if len(set(labels)) < len(labels) or not all(labels):
            raise invalid("'labels' must be distinct, non-empty strings", param="labels")
