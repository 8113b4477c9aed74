"""The rerank and classify routes: ``/v1/rerank`` (Jina's, Cohere's v1), ``/v2/rerank``
(Cohere's v2), ``/rerank`` (TEI's) and ``/v1/classify`` (Jina's zero-shot)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from encoder.http.body import read_json_body
from encoder.ingress.classify import ClassifyRequest
from encoder.ingress.models import ModelRouter
from encoder.ingress.output import render_json
from encoder.ingress.rerank import Ranked, RerankQuery
from encoder.ingress.rerank_schemas import (
    CohereV2RerankRequest,
    JinaRerankRequest,
    TeiRerankRequest,
    cohere_v2_response,
    jina_response,
    tei_response,
)
from encoder.ingress.schemas import parse_request

_JSON = "application/json"
# Bodies parsed by hand (exact error envelopes): their schemas join the OpenAPI document.
REQUEST_SCHEMAS = (JinaRerankRequest, CohereV2RerankRequest, TeiRerankRequest, ClassifyRequest)
Render = Callable[[RerankQuery, Ranked, str], Any]


def schema_ref(name: str) -> dict:
    """``openapi_extra`` naming a request body schema of the OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": schema}}}}


def ranking_routes(router: ModelRouter) -> APIRouter:
    """The rerank routes, one per shape, and classify."""
    routes = APIRouter()
    max_body = router.settings.max_body_bytes

    def rerank_route(schema: type[BaseModel], render: Render) -> Callable:
        async def rerank(request: Request) -> Response:
            body = await read_json_body(request, max_body)
            parsed = parse_request(schema, body)
            service = router.reranker(getattr(parsed, "model", None))
            request.state.model = service.model.served_model_name
            query = parsed.to_query()
            with service.encoders.admit(len(body)) as ticket:
                ranked = await service.rerank(query, ticket)
            return Response(render_json(render(query, ranked, service.model.served_model_name)),
                            media_type=_JSON)

        return rerank

    for path, schema, render in (
            ("/v1/rerank", JinaRerankRequest, jina_response),
            ("/v2/rerank", CohereV2RerankRequest, cohere_v2_response),
            ("/rerank", TeiRerankRequest, lambda query, ranked, _: tei_response(query, ranked))):
        routes.add_api_route(path, rerank_route(schema, render), methods=["POST"],
                             openapi_extra=schema_ref(schema.__name__))

    async def classify(request: Request) -> Response:
        body = await read_json_body(request, max_body)
        parsed = parse_request(ClassifyRequest, body)
        classifier = router.classifier(parsed.model)
        request.state.model = classifier.embeddings.model.served_model_name
        with classifier.embeddings.encoders.admit(len(body)) as ticket:
            return Response(render_json(await classifier.classify(parsed, ticket)),
                            media_type=_JSON)

    routes.add_api_route("/v1/classify", classify, methods=["POST"],
                         openapi_extra=schema_ref("ClassifyRequest"))
    return routes
