"""The HTTP API as a FastAPI app around the application's models (a ``ModelRouter``; no Ray
here)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from encoder.errors import EmbeddingError, ErrorKind, error_envelope, type_for_status
from encoder.http.auth import check_bearer
from encoder.http.body import read_json_body
from encoder.http.ranking import REQUEST_SCHEMAS, ranking_routes, schema_ref
from encoder.ingress.models import ModelRouter, Service
from encoder.ingress.output import render_json
from encoder.ingress.schemas import (
    EmbeddingRequest,
    TokenizeRequest,
    parse_embedding_request,
    parse_request,
)
from encoder.metrics import IngressMetrics

logger = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]

_JSON = "application/json"


_REQUEST_SCHEMA = schema_ref("EmbeddingRequest")


def build_app(models: ModelRouter | Service, ready: ReadyCheck, api_key: str | None = None,
              extra: APIRouter | None = None) -> FastAPI:
    """The API of ``models`` (a router, or one model's service): ``/v1/embeddings``,
    ``/tokenize``, the rerank and classify routes (``ranking.py``), ``/v1/models``,
    ``/health``, ``/``, and ``extra``'s routes (the Batch API's).

    With ``api_key`` every route but ``/health`` needs ``Authorization: Bearer <key>``.
    """
    router = ModelRouter.of(models)
    app = FastAPI(title="jina-embeddings-v3 on ONNX Runtime", version="1.0.0")
    if api_key:
        _require_api_key(app, api_key)
    app.include_router(_embedding_routes(router))
    app.include_router(ranking_routes(router))
    if extra is not None:
        app.include_router(extra)

    @app.get("/v1/models")
    async def models() -> dict:
        return router.models()

    # OpenAI's retrieve; ids may hold a slash ("jinaai/jina-embeddings-v3").
    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict:
        return router.model(model_id)

    @app.get("/health")
    async def health() -> Response:
        if await ready():
            return JSONResponse({"status": "ok"})
        return _error_response(
            EmbeddingError(ErrorKind.UNAVAILABLE, "encoders are not ready")
        )

    @app.get("/")
    async def index() -> dict:
        return {"service": "embeddings", "model": router.settings.served_model_name,
                "models": [s.model.served_model_name for s in router.services],
                "endpoints": [r.path for r in app.routes if getattr(r, "include_in_schema",
                                                                     False)]}

    # HEAD too: some load balancers and uptime checkers probe with it.
    for path, endpoint in (("/health", health), ("/", index)):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    _install_error_handlers(app, router.metrics)
    _add_request_schema(app)
    return app


def _embedding_routes(router: ModelRouter) -> APIRouter:
    routes = APIRouter()
    max_body = router.settings.max_body_bytes

    async def embeddings(request: Request) -> Response:
        body = await read_json_body(request, max_body)
        parsed = parse_embedding_request(body)
        service = router.embeddings(parsed.model)
        request.state.model = service.model.served_model_name
        with service.encoders.admit(len(body)) as ticket:
            return Response(render_json(await service.embeddings(parsed, ticket)),
                            media_type=_JSON)

    # Both paths: OpenAI clients append /embeddings to a base URL that may lack /v1.
    routes.add_api_route(
        "/v1/embeddings", embeddings, methods=["POST"], openapi_extra=_REQUEST_SCHEMA
    )
    routes.add_api_route("/embeddings", embeddings, methods=["POST"], include_in_schema=False)

    async def tokenize(request: Request) -> Response:
        parsed = parse_request(TokenizeRequest, await read_json_body(request, max_body))
        service = router.embeddings(parsed.model)
        return Response(render_json(await service.tokenize(parsed)), media_type=_JSON)

    routes.add_api_route("/tokenize", tokenize, methods=["POST"],
                         openapi_extra=schema_ref("TokenizeRequest"))
    return routes


def _require_api_key(app: FastAPI, key: str) -> None:
    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        # Probes must work without the key; everything else, docs included, needs it.
        if request.url.path != "/health":
            try:
                check_bearer(request.headers.get("authorization"), key)
            except EmbeddingError as exc:
                return _error_response(exc)
        return await call_next(request)


def _error_response(exc: EmbeddingError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.status, headers=exc.headers())


def _install_error_handlers(app: FastAPI, metrics: IngressMetrics) -> None:
    @app.exception_handler(EmbeddingError)
    async def embedding_error(request: Request, exc: EmbeddingError) -> JSONResponse:
        metrics.failed(exc.status, exc.code, getattr(request.state, "model", None))
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        metrics.failed(exc.status_code, None)
        body = error_envelope(str(exc.detail), type_for_status(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.failed(400, None)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = loc[0] if loc else None
        body = error_envelope(first.get("msg", "invalid request"), "invalid_request_error", param)
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        metrics.failed(500, "internal_error")
        body = error_envelope("internal server error", "server_error")
        return JSONResponse(body, status_code=500)


def _add_request_schema(app: FastAPI) -> None:
    # The body is parsed by hand (any content type, exact error envelopes), so the schema
    # FastAPI cannot infer is added to the OpenAPI document here.
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (EmbeddingRequest, TokenizeRequest, *REQUEST_SCHEMAS):
            request = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(request.pop("$defs", {}))
            components[model.__name__] = request
        return schema

    app.openapi = openapi
