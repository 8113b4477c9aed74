"""Every model the application serves, found by the ``model`` a request names.

A name or alias picks its model; a request to an endpoint of another kind (rerank sent to an
embeddings model, say) is a 400. A request that names no model gets the first model of the
endpoint's kind. An unknown name is OpenAI's 404 ``model_not_found``, except where the
application serves a single model: there any name is answered by it, as the single-model
server always did (OpenAI clients send their own model names).
"""

from __future__ import annotations

from typing import Any

from encoder.errors import EmbeddingError, ErrorKind, invalid
from encoder.ingress.classify import ClassifyService
from encoder.ingress.rerank import RerankService
from encoder.ingress.service import EmbeddingsService
from encoder.metrics import IngressMetrics
from encoder.settings import ServiceSettings

Service = EmbeddingsService | RerankService
ENDPOINTS = {"embeddings": "/v1/embeddings", "rerank": "/v1/rerank"}


class ModelRouter:
    """The application's models by name and alias, and the classifier of each embeddings
    model."""

    def __init__(self, settings: ServiceSettings, services: list[Service],
                 metrics: IngressMetrics | None = None) -> None:
        self.settings = settings
        self.services = services
        self.metrics = metrics or (services[0].metrics if services else IngressMetrics())
        self._by_name = {name: s for s in services for name in s.model.names()}
        self._classifiers = {id(s): ClassifyService(s) for s in services
                             if isinstance(s, EmbeddingsService)}

    @classmethod
    def of(cls, models: ModelRouter | Service) -> ModelRouter:
        """``models`` as a router: itself, or one service alone."""
        return models if isinstance(models, ModelRouter) else cls(models.settings, [models])

    def embeddings(self, name: str | None) -> EmbeddingsService:
        """The embeddings model a request names."""
        return self._pick(name, EmbeddingsService, "embeddings")

    def reranker(self, name: str | None) -> RerankService:
        """The rerank model a request names."""
        return self._pick(name, RerankService, "rerank")

    def classifier(self, name: str | None) -> ClassifyService:
        """The classifier on the embeddings model a request names."""
        return self._classifiers[id(self._pick(name, EmbeddingsService, "embeddings"))]

    def _pick(self, name: str | None, kind: type, what: str) -> Any:
        of_kind = [s for s in self.services if isinstance(s, kind)]
        service = self._by_name.get(name) if name is not None else None
        if service is None and (name is None or len(self.services) == 1):
            if not of_kind:
                raise EmbeddingError(ErrorKind.NOT_FOUND, f"this server serves no {what} "
                                     "model", param="model", code="model_not_found")
            return of_kind[0]
        if service is None:
            raise EmbeddingError(ErrorKind.NOT_FOUND, f"The model '{name}' does not exist; "
                                 f"this server serves {self._names()}", param="model",
                                 code="model_not_found")
        if not isinstance(service, kind):
            other = "rerank" if isinstance(service, RerankService) else "embeddings"
            raise invalid(f"the model '{name}' is a {other} model: send it to "
                          f"{ENDPOINTS[other]}", param="model", code="wrong_model_kind")
        return service

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: every model, with what it does."""
        return {"object": "list", "data": [s.model_entry() for s in self.services]}

    def model(self, model_id: str) -> dict[str, Any]:
        """``GET /v1/models/{model_id}``: the model's entry (by name or alias), or a 404."""
        service = self._by_name.get(model_id)
        if service is None:
            raise EmbeddingError(ErrorKind.NOT_FOUND, f"The model '{model_id}' does not "
                                 f"exist; this server serves {self._names()}", param="model",
                                 code="model_not_found")
        return service.model_entry()

    def _names(self) -> str:
        return ", ".join(f"'{s.model.served_model_name}'" for s in self.services)
