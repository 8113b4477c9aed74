"""Reading a request body: its media type, its size limit and its Content-Encoding."""

from __future__ import annotations

import asyncio
import zlib

from starlette.requests import Request

from encoder.errors import EmbeddingError, ErrorKind, invalid

# HTTP "deflate" is meant to be zlib-wrapped, but some clients send raw deflate; gzip has
# its own header. wbits picks the wrapper (see zlib.decompressobj).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
          "deflate": zlib.MAX_WBITS}
# Small bodies decode faster than a thread hop costs; big ones would hold up the event loop.
_INLINE_BYTES = 64 * 1024


async def read_json_body(request: Request, limit: int) -> bytes:
    """The body of a JSON request, decoded from gzip/deflate, at most ``limit`` bytes.

    ``limit`` bounds the body both as sent and as decoded, so a small compressed body cannot
    expand past it. Raises 415 for a media type or encoding this API does not take, 413 over
    the limit, 400 for a body its encoding cannot decode.
    """
    _check_content_type(request.headers.get("content-type"))
    codings = _content_codings(request.headers.get("content-encoding"))
    body = await _read_raw(request, limit)
    if not codings:
        return body
    if len(body) <= _INLINE_BYTES:
        return _decode(body, codings, limit)
    return await asyncio.to_thread(_decode, body, codings, limit)


def _check_content_type(content_type: str | None) -> None:
    """415 unless the media type is JSON, absent, or curl ``-d``'s form default."""
    # The old README's users sent JSON with curl -d and no header, which curl labels as a
    # form; anything else is a client mistake worth naming.
    media = (content_type or "").split(";")[0].strip().lower()
    if media and "json" not in media and media != "application/x-www-form-urlencoded":
        raise EmbeddingError(ErrorKind.UNSUPPORTED_MEDIA, f"Content-Type {media!r} is not "
                             "supported; send application/json", code="unsupported_media_type")


def _content_codings(header: str | None) -> list[str]:
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in codings:
        if coding not in _WBITS:
            raise EmbeddingError(
                ErrorKind.UNSUPPORTED_MEDIA,
                f"Content-Encoding {coding!r} is not supported; send gzip, deflate or none",
                code="unsupported_content_encoding")
    return codings


async def _read_raw(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, codings: list[str], limit: int) -> bytes:
    # Codings are listed in the order they were applied, so they are undone last first.
    for coding in reversed(codings):
        body = _inflate(body, coding, limit)
    return body


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    attempts = [_WBITS[coding]] + ([-zlib.MAX_WBITS] if coding == "deflate" else [])
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise _too_large(limit, decoded=True)
        if inflater.eof and not inflater.unused_data:
            return out
    raise invalid(f"request body is not valid {coding} data", code="invalid_content_encoding")


def _too_large(limit: int, decoded: bool = False) -> EmbeddingError:
    """The 413 for a body over ``limit`` bytes."""
    what = "decoded request body" if decoded else "request body"
    return EmbeddingError(ErrorKind.TOO_LARGE, f"{what} is larger than {limit} bytes",
                          code="request_too_large")
