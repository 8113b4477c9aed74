"""Reranking with a cross-encoder: each (query, document) pair scored by the model's one logit.

A pair is the tokenizer's own pair template around the query's and the document's tokens
(``TextTokenizer.pair``: ``<s> q </s></s> d </s>`` for XLM-R, ``[CLS] q [SEP] d [SEP]`` with
token types for BERT). As jina-reranker-v2's own ``rerank`` does it: the query keeps at most
half the model's window; a document too long for the rest is cut into windows that overlap
by 80 tokens (at most a quarter of a window), the last one ending at the document's end, and
scores as its best window (Cohere's documented rule for long documents). A window longer
than ``max_run_tokens`` goes to the encoder's long queue, so a long document never stalls
short work. The score is the model's own activation, a sigmoid of the logit (what
jina-reranker and sentence-transformers' CrossEncoder give); the raw logit on request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from encoder.errors import invalid
from encoder.ingress.admission import Ticket
from encoder.ingress.encoders import Embedder, ModelService
from encoder.ingress.tokenize import PairTemplate, TextTokenizer, off_loop
from encoder.metrics import IngressMetrics
from encoder.model.card import ModelCard
from encoder.model.files import model_root
from encoder.parcels import request_parcels
from encoder.settings import ModelSettings, ServiceSettings

# jina-reranker-v2's rerank: windows of a long document share this many tokens.
OVERLAP_TOKENS = 80


@dataclass(frozen=True)
class RerankQuery:
    """A rerank request, whatever its shape: the query, the documents' texts, and what to
    return."""

    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool = True
    raw_scores: bool = False
    max_tokens_per_doc: int | None = None


@dataclass(frozen=True)
class Ranked:
    """The documents' scores in the request's order, and the tokens the pairs ran."""

    scores: np.ndarray
    tokens: int

    def order(self, top_n: int | None) -> list[int]:
        """Document indices, best first (ties in request order), at most ``top_n``."""
        order = sorted(range(len(self.scores)), key=lambda i: -self.scores[i])
        return order[:top_n] if top_n else order


@dataclass(frozen=True)
class PairPlan:
    """The pairs to run: their ids, where each one's second segment (token type 1) starts
    (None: the template has no second type), and the document each came from."""

    sequences: list[list[int]]
    pair_starts: list[int] | None
    documents: list[int]


def plan_pairs(template: PairTemplate, query: Sequence[int], documents: Sequence[Sequence[int]],
               window: int) -> PairPlan:
    """Pairs of the query with each document, or with each window of a long one."""
    query = list(query)[: max(1, window // 2 - len(template.lead) - 1)]
    capacity = window - template.specials - len(query)
    if capacity < 1:
        raise invalid(f"the model's window of {window} tokens leaves no room for a document",
                      param="query")
    overlap = min(OVERLAP_TOKENS, capacity // 4)
    sequences, starts, owners = [], [], []
    for index, document in enumerate(documents):
        for piece in _windows(list(document), capacity, overlap):
            ids, start = template.join(query, piece)
            sequences.append(ids)
            starts.append(start)
            owners.append(index)
    return PairPlan(sequences, starts if template.second_type else None, owners)


def _windows(document: list[int], capacity: int, overlap: int) -> list[list[int]]:
    if len(document) <= capacity:
        return [document]
    pieces, start = [], 0
    while start < len(document):
        end = start + capacity
        pieces.append(document[start:end] if end < len(document) else document[-capacity:])
        start = end - overlap if end < len(document) else end
    return pieces


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large negative logits."""
    small = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1 / (1 + small), small / (1 + small))


class RerankService(ModelService):
    """Validates and tokenizes rerank requests for one cross-encoder, runs their pairs on
    its encoders, scores each document by its best window (``max_tokens`` long)."""

    @classmethod
    def for_model(cls, settings: ServiceSettings, embed: Embedder, model: ModelSettings,
                  metrics: IngressMetrics | None = None) -> RerankService:
        """The service for ``model``, from its card and tokenizer."""
        root = model_root(model)
        return cls(settings, model, ModelCard.from_folder(root), TextTokenizer(root), embed,
                   metrics)

    async def rerank(self, query: RerankQuery, ticket: Ticket | None = None) -> Ranked:
        """Every document's score (its best window's), in the request's order."""
        self._check(query)
        texts = [query.query, *query.documents]
        ids = await off_loop(sum(map(len, texts)), self.tokenizer.content_ids, texts)
        documents = ids[1:] if query.max_tokens_per_doc is None else [
            d[: query.max_tokens_per_doc] for d in ids[1:]]
        plan = plan_pairs(self.tokenizer.pair, ids[0], documents, self.max_tokens)
        tokens = self.encoders.hold(ticket, sum(len(s) for s in plan.sequences))
        scheduler = self.model.scheduler
        parcels = request_parcels(None, plan.sequences, scheduler.sort_window_tokens,
                                  alone_above=scheduler.max_run_tokens,
                                  pair_starts=plan.pair_starts)
        logits = np.concatenate(await self.encoders.run(parcels))[:, 0].astype(np.float64)
        best = np.full(len(query.documents), -np.inf)
        np.maximum.at(best, np.asarray(plan.documents), logits)
        self.metrics.embedded(self.model.served_model_name, "rerank", len(query.documents),
                              tokens)
        return Ranked(best if query.raw_scores else sigmoid(best), tokens)

    def _check(self, query: RerankQuery) -> None:
        if not query.query:
            raise invalid("'query' must not be empty", param="query")
        self.check_items(query.documents, "documents")
        for index, document in enumerate(query.documents):
            if not document:
                raise invalid(f"documents[{index}] is empty", param="documents")
        if query.top_n is not None and not 1 <= query.top_n <= len(query.documents):
            raise invalid(f"'top_n' must be between 1 and the number of documents "
                          f"({len(query.documents)})", param="top_n")

    def model_entry(self) -> dict:
        """This model's ``/v1/models`` entry."""
        return {"id": self.model.served_model_name, "object": "model", "created": 0,
                "owned_by": "self-hosted", "kind": "rerank",
                "aliases": list(self.model.aliases), "max_tokens": self.max_tokens}
