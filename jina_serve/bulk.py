"""What each actor of a ``jina-embed`` job runs (``embed_job.py``): the service's own core on
table rows, no HTTP.

``RowEncoder`` gives rows the same tokenizer, task prefixes, scheduler runs, pooling and
output types as ``/v1/embeddings``. A bad row (not a string, empty, over the token limit
without ``truncate``, a failed run) gets a null embedding and an ``error``; the other rows
Ray Data hands over with it are unaffected. ``LineAnswerer`` answers OpenAI batch lines.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from encoder.batches.lines import BatchLine, answer_line
from encoder.errors import EmbeddingError
from encoder.ingress.output import quantize_binary, render_json
from encoder.ingress.service import EmbeddingsService, check_dimensions
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.files import resolve_model
from encoder.parcels import Parcel
from encoder.pooling import finish
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import ServiceSettings

EMBEDDING = "embedding"
ERROR = "error"
# A request's errors name the input's index; a row's error is about its own text.
_ROW_INDEX = re.compile(r"^input\[\d+\] ")


@dataclass(frozen=True)
class BulkOptions:
    """What a bulk job asks for; each field means what the same field of a request does.

    column: the input column holding the texts (every other column is kept).
    """

    column: str = "text"
    task: str | None = None
    dimensions: int | None = None
    normalized: bool = True
    embedding_type: Literal["float", "binary", "ubinary"] = "float"
    truncate: bool = False


class RowEncoder:
    """Adds ``embedding`` (fixed-size list: float32, or uint8/int8 bits) and ``error``
    (string, null where the row embedded) columns to pyarrow tables of rows."""

    def __init__(self, settings: ServiceSettings, options: BulkOptions, threads: int) -> None:
        files = resolve_model(settings.model, settings.onnx_file, settings.revision,
                              with_onnx=False)
        self.card = ModelCard.from_folder(files.root)
        self.tokenizer = TextTokenizer(files.root)
        self.options = options
        self.task, self.task_id = self.card.resolve_task(options.task, settings.default_task)
        self.limit = settings.input_token_limit(self.card.max_tokens)
        self.scheduler = Scheduler.load(settings, threads)
        check_dimensions(options.dimensions, self.scheduler.width)
        self.width = options.dimensions or self.scheduler.width
        self.value_type = {"float": pa.float32(), "ubinary": pa.uint8(),
                           "binary": pa.int8()}[options.embedding_type]
        self.list_size = self.width if options.embedding_type == "float" else -(-self.width // 8)

    def __call__(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` with their ``embedding`` and ``error``."""
        if self.options.column not in table.column_names:
            raise KeyError(f"no column {self.options.column!r} in {table.column_names}")
        texts = table.column(self.options.column).to_pylist()
        ids = self.tokenizer.encode_each(texts, self.limit, self.options.truncate,
                                         self.card.instruction(self.task))
        errors: list[str | None] = [None] * len(texts)
        rows = [i for i, r in enumerate(ids) if not isinstance(r, EmbeddingError)]
        for i, result in enumerate(ids):
            if isinstance(result, EmbeddingError):
                errors[i] = _ROW_INDEX.sub("the text ", result.message, count=1)
        # One parcel per row: a failed run fails only its own rows.
        results = self.scheduler.run_window(
            [Parcel.from_lists(self.task_id, [ids[i]]) for i in rows])
        vectors = np.zeros((len(texts), self.scheduler.width), dtype=np.float32)
        for i, result in zip(rows, results, strict=True):
            if isinstance(result, EmbeddingError):
                errors[i] = result.message
            else:
                vectors[i] = result[0]
        return table.append_column(EMBEDDING, self._embeddings(vectors, errors)).append_column(
            ERROR, pa.array(errors, type=pa.string()))

    def _embeddings(self, vectors: np.ndarray, errors: list[str | None]) -> pa.Array:
        values = finish(vectors, self.options.dimensions, self.options.normalized)
        if self.options.embedding_type != "float":
            values = quantize_binary(values, signed=self.options.embedding_type == "binary")
        flat = pa.array(values.reshape(-1), type=self.value_type)
        mask = pa.array([e is not None for e in errors])
        return pa.FixedSizeListArray.from_arrays(flat, self.list_size, mask=mask)


class LineAnswerer:
    """Answers OpenAI batch lines (columns ``number``, ``custom_id``, ``body``) as the
    service would: columns ``number``, ``succeeded`` and ``line`` (the output line's JSON)."""

    def __init__(self, settings: ServiceSettings, threads: int) -> None:
        self.service = EmbeddingsService.for_model(settings,
                                                   Scheduler.load(settings, threads).embed)

    def __call__(self, table: pa.Table) -> pa.Table:
        """The answers to a batch of lines, answered together (they share runs)."""
        lines = [BatchLine(n, c, b) for n, c, b in zip(
            table.column("number").to_pylist(), table.column("custom_id").to_pylist(),
            table.column("body").to_pylist(), strict=True)]

        async def answer_all() -> list[tuple[bool, dict]]:
            return await asyncio.gather(*(answer_line(self.service, line) for line in lines))

        answers = asyncio.run(answer_all())
        return pa.table({"number": [line.number for line in lines],
                         "succeeded": [ok for ok, _ in answers],
                         "line": [render_json(out).decode() for _, out in answers]})
