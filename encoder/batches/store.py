"""Durable state of the Batch API: files and batches in a folder or an object store URI.

Layout under the root (any ``pyarrow.fs`` filesystem: a local or shared folder, ``s3://``,
``gs://``):

  files/<file_id>.json        the file object (OpenAI's shape)
  files/<file_id>.data        its bytes
  batches/<batch_id>.json     the batch object (status, counts, file ids)
  batches/<batch_id>/<part>.jsonl, <part>.errors.jsonl   output lines, one part at a time

Every write goes to a temporary name first and is moved into place, so a reader (another
replica, a restarted service) never sees half a file, and a finished part is never redone.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from encoder.errors import EmbeddingError, ErrorKind, invalid

# OpenAI's states; a batch in one of these is done.
FINAL_STATES = {"completed", "failed", "cancelled", "expired"}
# Reads of an object replaced meanwhile, before the error reaches the caller.
TORN_READ_ATTEMPTS = 8
# Every id this store makes: "file-…", "batch_…" and the output files' "file-batch_…-output".
VALID_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class BatchStore:
    """Files and batches, as OpenAI's API shapes them, kept under ``root``."""

    def __init__(self, root: str) -> None:
        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
        for folder in ("files", "batches"):
            self.fs.create_dir(f"{self.root}/{folder}", recursive=True)

    # Files

    def create_file(self, filename: str, purpose: str, data: bytes,
                    file_id: str | None = None) -> dict[str, Any]:
        """Store ``data`` (under ``file_id`` if given: writing it again replaces it)."""
        file_id = file_id or f"file-{_time_ordered()}"
        record = {"id": file_id, "object": "file", "bytes": len(data),
                  "created_at": int(time.time()), "filename": filename, "purpose": purpose,
                  "status": "processed"}
        self._write(f"files/{file_id}.data", data)
        self._write(f"files/{file_id}.json", json.dumps(record).encode())
        return record

    def get_file(self, file_id: str) -> dict[str, Any]:
        """The file object, or a 404."""
        return _present(self._read_json(f"files/{_safe(file_id, 'File')}.json",
                                        f"No such File object: {file_id}"))

    def file_content(self, file_id: str) -> bytes:
        """The file's bytes, or a 404."""
        self.get_file(file_id)
        return self._read(f"files/{file_id}.data")

    def list_files(self, purpose: str | None = None, after: str | None = None,
                   limit: int = 10_000, order: str = "desc") -> dict[str, Any]:
        """OpenAI's page of file objects (of ``purpose``), ordered by creation (``order``),
        starting after the file ``after``."""
        if not 1 <= limit <= 10_000:
            raise invalid("'limit' must be between 1 and 10000", param="limit")
        if order not in ("asc", "desc"):
            raise invalid("'order' must be 'asc' or 'desc'", param="order")
        files = sorted((_present(f) for f in self._list_json("files")
                        if purpose in (None, f["purpose"])),
                       key=lambda f: f["id"], reverse=order == "desc")
        return _page(files, after, limit, "file")

    def delete_file(self, file_id: str) -> dict[str, Any]:
        """Delete a file; OpenAI's deletion object."""
        self.get_file(file_id)
        for suffix in (".data", ".json"):
            self.fs.delete_file(f"{self.root}/files/{file_id}{suffix}")
        return {"id": file_id, "object": "file", "deleted": True}

    # Batches

    def create_batch(self, input_file_id: str, endpoint: str, completion_window: str,
                     metadata: dict[str, str] | None, window_s: float = 24 * 3600,
                     ) -> dict[str, Any]:
        """A new batch in ``validating`` that expires ``window_s`` from now; its input file
        must exist."""
        self.get_file(input_file_id)
        now = int(time.time())
        # Fields a batch does not have yet are absent, as OpenAI's schema wants them (not
        # null); metadata is the one nullable field.
        batch = {"id": f"batch_{_time_ordered()}", "object": "batch", "endpoint": endpoint,
                 "input_file_id": input_file_id, "completion_window": completion_window,
                 "status": "validating", "created_at": now,
                 "expires_at": now + round(window_s),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "metadata": metadata}
        self.save_batch(batch)
        return batch

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object as the runner last wrote it, or a 404 (clients: ``view``)."""
        return self._read_json(f"batches/{_safe(batch_id, 'Batch')}.json",
                               f"No such Batch object: {batch_id}")

    def save_batch(self, batch: dict[str, Any]) -> None:
        """Write a batch object (its new state)."""
        self._write(f"batches/{batch['id']}.json", json.dumps(batch).encode())

    def list_batches(self, after: str | None = None, limit: int = 20) -> dict[str, Any]:
        """OpenAI's page of batches, newest first, starting after the batch ``after``."""
        if not 1 <= limit <= 100:
            raise invalid("'limit' must be between 1 and 100", param="limit")
        batches = sorted(self._list_json("batches"), key=lambda b: b["id"], reverse=True)
        page = _page(batches, after, limit, "batch")
        page["data"] = [self.view(b) for b in page["data"]]
        return page

    def request_cancel(self, batch_id: str) -> dict[str, Any]:
        """Mark a batch for cancelling; the runner, the batch's only writer, acts on it."""
        batch = self.get_batch(batch_id)
        if batch["status"] not in FINAL_STATES and not self.cancel_requested(batch_id):
            self._write(f"batches/{batch_id}.cancel", str(int(time.time())).encode())
        return self.view(batch)

    def cancel_requested(self, batch_id: str) -> bool:
        """Whether the batch was asked to cancel."""
        info = self.fs.get_file_info(f"{self.root}/batches/{batch_id}.cancel")
        return info.type == pafs.FileType.File

    def view(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch as clients see it: ``cancelling`` once asked, until the runner is done;
        fields without a value absent (batches stored by older versions held nulls)."""
        if batch["status"] in FINAL_STATES or not self.cancel_requested(batch["id"]):
            return _present(batch)
        asked = int(self._read(f"batches/{batch['id']}.cancel") or 0)
        return _present({**batch, "status": "cancelling",
                         "cancelling_at": batch.get("cancelling_at") or asked})

    def pending_batches(self) -> list[dict[str, Any]]:
        """Batches not yet in a final state, oldest first: the runner's work."""
        batches = [b for b in self._list_json("batches") if b["status"] not in FINAL_STATES]
        return sorted(batches, key=lambda b: b["id"])

    # A batch's output, a part at a time

    def write_part(self, batch_id: str, part: int, outputs: list[bytes],
                   errors: list[bytes]) -> None:
        """One part's output and error lines (errors first: the output marks completion)."""
        self._write(f"batches/{batch_id}/{part:06d}.errors.jsonl", b"".join(errors))
        self._write(f"batches/{batch_id}/{part:06d}.jsonl", b"".join(outputs))

    def done_parts(self, batch_id: str) -> set[int]:
        """The parts of a batch already written completely."""
        selector = pafs.FileSelector(f"{self.root}/batches/{batch_id}", allow_not_found=True)
        names = [Path(info.path).name for info in self.fs.get_file_info(selector)]
        return {int(n.split(".")[0]) for n in names if n.endswith(".jsonl")
                and not n.endswith(".errors.jsonl") and n.split(".")[0].isdigit()}

    def part_lines(self, batch_id: str, part: int, errors: bool) -> bytes:
        """A written part's output (or error) lines."""
        return self._read(f"batches/{batch_id}/{part:06d}{'.errors' if errors else ''}.jsonl")

    # Plumbing

    def _write(self, relative: str, data: bytes) -> None:
        path = f"{self.root}/{relative}"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        partial = f"{path}.{uuid.uuid4().hex[:8]}.partial"
        with self.fs.open_output_stream(partial) as out:
            out.write(data)
        self.fs.move(partial, path)

    def _read(self, relative: str) -> bytes:
        with self.fs.open_input_stream(f"{self.root}/{relative}") as stream:
            return stream.read()

    def _read_json(self, relative: str, missing: str) -> dict[str, Any]:
        # An object store's reader asks an object's size, then reads that many bytes: a
        # batch object replaced in between reads torn (never valid JSON), so read it again.
        for attempt in range(TORN_READ_ATTEMPTS):
            try:
                return json.loads(self._read(relative))
            except FileNotFoundError:
                raise EmbeddingError(ErrorKind.NOT_FOUND, missing,
                                     code="not_found") from None
            except (ValueError, OSError):
                if attempt == TORN_READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _list_json(self, folder: str) -> list[dict[str, Any]]:
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{folder}"))
        out = []
        for info in infos:
            if info.type == pafs.FileType.File and info.path.endswith(".json"):
                try:
                    out.append(self._read_json(f"{folder}/{Path(info.path).name}", ""))
                except EmbeddingError:  # deleted meanwhile
                    continue
        return out


def _present(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without null fields: OpenAI's schemas type them and allow no null, except
    a batch's ``metadata``."""
    return {k: v for k, v in record.items() if v is not None or k == "metadata"}


def _page(items: list[dict[str, Any]], after: str | None, limit: int,
          kind: str) -> dict[str, Any]:
    """OpenAI's cursor page of ``items`` (already ordered): up to ``limit`` after the one
    whose id is ``after``. ``first_id``/``last_id`` are strings (OpenAI's list schemas type
    them so): empty for an empty page."""
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise invalid(f"no {kind} {after!r} to list after", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else "",
            "last_id": page[-1]["id"] if page else "", "has_more": len(items) > limit}


def _time_ordered() -> str:
    """A unique id part that sorts by creation time (newest last), to the nanosecond."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


def _safe(object_id: str, kind: str) -> str:
    """An id as a file name: a 404 naming ``kind`` for any id this store cannot have made
    (too long, outside ``[A-Za-z0-9_-]``: a NUL byte, a path), before it reaches a path."""
    if not VALID_ID.fullmatch(object_id):
        shown = object_id if len(object_id) <= 80 else f"{object_id[:80]}..."
        raise EmbeddingError(ErrorKind.NOT_FOUND, f"No such {kind} object: {shown!r}",
                             code="not_found")
    return object_id
