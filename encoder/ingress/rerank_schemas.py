"""The rerank endpoints' request and response shapes: Jina's (Cohere's v1), Cohere's v2 and
TEI's, each turned into one ``RerankQuery`` and back.

- ``POST /v1/rerank``: ``{model, query, documents: [str | {"text"}], top_n, return_documents}``
  → ``{id, model, results: [{index, relevance_score, document?: {text}}], usage, meta}``;
  documents returned unless ``return_documents`` is false (Jina's default).
- ``POST /v2/rerank``: ``{model, query, documents: [str], top_n, max_tokens_per_doc}`` →
  ``{id, results: [{index, relevance_score}], meta}`` (``return_documents`` as above, off);
  ``max_tokens_per_doc`` cuts each document's tokens before its windows are made;
  ``relevant_spans`` is accepted only as ``{"mode": "disabled"}``.
- ``POST /rerank``: ``{query, texts, raw_scores, return_text, truncate,
  truncation_direction}`` → ``[{index, score, text?}]``.

All results are sorted by score, best first; ``raw_scores`` (an extension on the first two)
gives the logit instead of its sigmoid.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from encoder.errors import invalid
from encoder.ingress.rerank import Ranked, RerankQuery


class TextDocument(BaseModel):
    """A document given as an object: its ``text`` is what is ranked."""

    model_config = ConfigDict(extra="allow")

    text: StrictStr


Document = Union[StrictStr, TextDocument]


class _RerankBody(BaseModel):
    """The fields Jina's (Cohere's v1) and Cohere's v2 bodies share."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    query: StrictStr
    top_n: StrictInt | None = None
    raw_scores: StrictBool = False


class JinaRerankRequest(_RerankBody):
    """Body of ``POST /v1/rerank`` (Jina's, which is Cohere's v1)."""

    documents: list[Document]
    return_documents: StrictBool = True
    # Cohere v1's fields this server takes and leaves: documents are ranked on "text".
    rank_fields: list[StrictStr] | None = None
    max_chunks_per_doc: StrictInt | None = Field(default=None, ge=1)

    def to_query(self) -> RerankQuery:
        if self.rank_fields not in (None, ["text"]):
            raise invalid("documents are ranked on their 'text' only", param="rank_fields")
        return RerankQuery(self.query, [d if isinstance(d, str) else d.text
                                        for d in self.documents], self.top_n,
                           self.return_documents, self.raw_scores)


class RelevantSpans(BaseModel):
    """Cohere v2's ``relevant_spans`` option."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["enabled", "disabled"]


class CohereV2RerankRequest(_RerankBody):
    """Body of ``POST /v2/rerank`` (Cohere's v2)."""

    documents: list[StrictStr]
    max_tokens_per_doc: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    priority: StrictInt | None = None
    # Cohere's Rerank v5 spans; a cross-encoder scores whole windows, so only "disabled".
    relevant_spans: RelevantSpans | None = None

    def to_query(self) -> RerankQuery:
        if self.relevant_spans is not None and self.relevant_spans.mode != "disabled":
            raise invalid("relevant spans are not produced by cross-encoder rerankers; "
                          "leave relevant_spans out or set mode to 'disabled'",
                          param="relevant_spans", code="unsupported_value")
        return RerankQuery(self.query, self.documents, self.top_n, self.return_documents,
                           self.raw_scores, self.max_tokens_per_doc)


class TeiRerankRequest(BaseModel):
    """Body of ``POST /rerank`` (TEI's). ``truncate``: long documents are always scored by
    their best window, so it changes nothing."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"

    def to_query(self) -> RerankQuery:
        return RerankQuery(self.query, self.texts, None, self.return_text, self.raw_scores)


def jina_response(query: RerankQuery, ranked: Ranked, model: str) -> dict[str, Any]:
    """Jina's (Cohere v1's) response."""
    results = []
    for index in ranked.order(query.top_n):
        result: dict[str, Any] = {"index": index,
                                  "relevance_score": float(ranked.scores[index])}
        if query.return_documents:
            result["document"] = {"text": query.documents[index]}
        results.append(result)
    return {"id": str(uuid.uuid4()), "model": model, "results": results,
            "usage": {"total_tokens": ranked.tokens}, "meta": _meta("1", len(query.documents))}


def cohere_v2_response(query: RerankQuery, ranked: Ranked, model: str) -> dict[str, Any]:
    """Cohere v2's response (documents only when asked for)."""
    body = jina_response(query, ranked, model)
    body["meta"] = _meta("2", len(query.documents))
    return body


def tei_response(query: RerankQuery, ranked: Ranked) -> list[dict[str, Any]]:
    """TEI's response: a list, best first."""
    return [{"index": index, "score": float(ranked.scores[index]),
             **({"text": query.documents[index]} if query.return_documents else {})}
            for index in ranked.order(None)]


def _meta(version: str, documents: int) -> dict[str, Any]:
    # Cohere bills a search unit per 100 documents; the SDKs read it when present.
    return {"api_version": {"version": version},
            "billed_units": {"search_units": max(1, -(-documents // 100))}}
