"""Runs Batch API batches from the store to completion, resuming where a restart left them.

The batch object's only writer: validating → in_progress (or failed) → finalizing →
completed, or → cancelled once ``/cancel`` marked it, or → expired when its completion window
closes first (the lines not yet answered go to the error file as ``batch_expired``). Lines
are answered a part at a time (``PART_LINES``), each part written to the store before the
next starts, so a restarted runner redoes at most the part it was in. Each line goes through
an ``EmbeddingsService`` exactly as a synchronous request would (``encoder/batches/lines.py``);
the service's embedder decides where the work runs (in Ray: the encoders' background queue,
behind interactive requests). A line the encoders refused for overload or could not answer
is tried again with back-off while the window is open; only a line's own 4xx is final.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from encoder.batches.lines import (
    BatchLine,
    answer_line,
    expired_line,
    parse_batch_file,
)
from encoder.batches.store import BatchStore
from encoder.ingress.models import ModelRouter
from encoder.ingress.output import render_json
from encoder.ingress.service import EmbeddingsService

logger = logging.getLogger(__name__)

# Lines answered together: the unit of progress, of resume and of cancellation.
PART_LINES = 64
# Answers worth another try: overload (429, 503), a timeout, a failed run (server faults).
RETRIED = frozenset({429, 500, 503, 504})
_FIRST_RETRY_S = 0.5


class BatchRunner:
    """Moves every pending batch in ``store`` forward, one at a time."""

    def __init__(self, store: BatchStore, models: ModelRouter | EmbeddingsService,
                 max_file_bytes: int, retry_max_s: float = 30.0) -> None:
        self.store = store
        self.models = ModelRouter.of(models)
        self.max_file_bytes = max_file_bytes
        self.retry_max_s = retry_max_s

    async def run_pending(self) -> None:
        """Run every batch not yet final, oldest first."""
        for batch in await asyncio.to_thread(self.store.pending_batches):
            try:
                await self.run(batch["id"])
            except Exception:  # one broken batch must not stop the others
                logger.exception("batch %s failed", batch["id"])
                await self._fail(batch["id"], "internal_error",
                                 "the batch could not be processed", None)

    async def run(self, batch_id: str) -> None:
        """Take one batch from wherever it is to a final state."""
        store = self.store
        batch = await asyncio.to_thread(store.get_batch, batch_id)
        file = await asyncio.to_thread(store.get_file, batch["input_file_id"])
        if file["bytes"] > self.max_file_bytes:
            await self._fail(batch_id, "file_too_large", f"the input file has {file['bytes']} "
                             f"bytes, more than the limit of {self.max_file_bytes}", None)
            return
        data = await asyncio.to_thread(store.file_content, batch["input_file_id"])
        lines, problems = parse_batch_file(data)
        if problems:
            await self._fail(batch_id, None, None, problems)
            return
        if batch["status"] == "validating":
            batch.update(status="in_progress", in_progress_at=int(time.time()))
            batch["request_counts"]["total"] = len(lines)
            await asyncio.to_thread(store.save_batch, batch)
        parts = [lines[i : i + PART_LINES] for i in range(0, len(lines), PART_LINES)]
        done = await asyncio.to_thread(store.done_parts, batch_id)
        deadline = batch["expires_at"]
        for number, part in enumerate(parts):
            if number in done:
                continue
            if time.time() >= deadline or await asyncio.to_thread(store.cancel_requested,
                                                                   batch_id):
                break
            await self._run_part(batch_id, number, part, deadline)
            done.add(number)
            batch["request_counts"] = await self._counts(batch_id, len(lines), done)
            await asyncio.to_thread(store.save_batch, batch)
        cancelled = await asyncio.to_thread(store.cancel_requested, batch_id)
        expired = not cancelled and len(done) < len(parts)
        if expired:  # the window closed: what is left fails as batch_expired, once
            for number, part in enumerate(parts):
                if number not in done:
                    lines_out = [render_json(expired_line(line)) + b"\n" for line in part]
                    await asyncio.to_thread(store.write_part, batch_id, number, [], lines_out)
                    done.add(number)
            batch["request_counts"] = await self._counts(batch_id, len(lines), done)
        elif cancelled and batch.get("status") != "cancelling":
            batch.update(status="cancelling", cancelling_at=int(time.time()))
        elif not cancelled:
            batch.update(status="finalizing", finalizing_at=int(time.time()))
        await asyncio.to_thread(store.save_batch, batch)
        await asyncio.to_thread(self._finalize, batch, sorted(done))
        final = "expired" if expired else "cancelled" if cancelled else "completed"
        batch.update(status=final, **{f"{final}_at": int(time.time())})
        await asyncio.to_thread(store.save_batch, batch)

    async def _run_part(self, batch_id: str, number: int, part: list[BatchLine],
                        deadline: float) -> None:
        answers = await asyncio.gather(*(self._answer(line, deadline) for line in part))
        outputs = [render_json(out) + b"\n" for ok, out in answers if ok]
        errors = [render_json(out) + b"\n" for ok, out in answers if not ok]
        await asyncio.to_thread(self.store.write_part, batch_id, number, outputs, errors)

    async def _answer(self, line: BatchLine, deadline: float) -> tuple[bool, dict]:
        """The line's answer, tried again with back-off while the encoders refuse or fail it
        and the window is open."""
        delay = _FIRST_RETRY_S
        while True:
            ok, out = await answer_line(self.models, line)
            if (ok or out["response"]["status_code"] not in RETRIED
                    or time.time() + delay >= deadline):
                return ok, out
            await asyncio.sleep(delay)
            delay = min(2 * delay, self.retry_max_s)

    async def _counts(self, batch_id: str, total: int, done: set[int]) -> dict[str, int]:
        def count() -> dict[str, int]:
            failed = sum(self.store.part_lines(batch_id, p, errors=True).count(b"\n")
                         for p in done)
            completed = sum(self.store.part_lines(batch_id, p, errors=False).count(b"\n")
                            for p in done)
            return {"total": total, "completed": completed, "failed": failed}

        return await asyncio.to_thread(count)

    def _finalize(self, batch: dict[str, Any], parts: list[int]) -> None:
        # Fixed file ids: finalizing again after a restart replaces, never duplicates.
        for errors, key, suffix in ((False, "output_file_id", "output"),
                                    (True, "error_file_id", "errors")):
            data = b"".join(self.store.part_lines(batch["id"], p, errors) for p in parts)
            if data or not errors:
                file = self.store.create_file(f"{batch['id']}_{suffix}.jsonl", "batch_output",
                                              data, file_id=f"file-{batch['id']}-{suffix}")
                batch[key] = file["id"]

    async def _fail(self, batch_id: str, code: str | None, message: str | None,
                    problems: list[dict] | None) -> None:
        batch = await asyncio.to_thread(self.store.get_batch, batch_id)
        data = problems or [{"code": code, "message": message, "param": None, "line": None}]
        batch.update(status="failed", failed_at=int(time.time()),
                     errors={"object": "list", "data": data})
        await asyncio.to_thread(self.store.save_batch, batch)
