"""Tokenization with the model's own fast tokenizer, and the per-input token limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from encoder.errors import EmbeddingError, invalid

T = TypeVar("T")
# Below this many characters tokenizing inline is cheaper than a hop to a worker thread.
_INLINE_TOKENIZE_CHARS = 4096


class TextTokenizer:
    """The model's own ``tokenizer.json``, loaded once, exactly as the file defines it.

    Loaded with ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``, which keeps the
    file's pipeline. ``AutoTokenizer`` is not used: transformers 5 rebuilds XLM-R tokenizers
    from their class (WhitespaceSplit, no space-collapsing normaliser), which drops jina's
    trailing "▁" tokens and so changes vectors. The hot path calls the Rust backend's
    ``encode_batch``, which tokenizes a whole request without a Python loop per text.
    """

    def __init__(self, root: Path) -> None:
        from transformers import PreTrainedTokenizerFast

        tokenizer_file = root / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"{root} has no tokenizer.json (a fast tokenizer)")
        backend = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file)).backend_tokenizer
        # Truncation and padding are decided per request here and padding per ONNX run in
        # the encoder; the backend must do neither on its own.
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        self.special_tokens: int = backend.num_special_tokens_to_add(False)
        self.lead_ids, self.tail_ids = _special_ids_around(backend)
        self.pair = _pair_template(backend)

    def encode(self, texts: Sequence[str], limit: int, truncate: bool) -> list[list[int]]:
        """Token ids (special tokens included) of each text, at most ``limit`` long.

        An input over ``limit`` is cut to it when ``truncate`` is set (the special tokens
        stay), otherwise it is a 400 naming the input's index and length.
        """
        try:
            encodings = self._backend.encode_batch(list(texts))
        except (TypeError, ValueError, UnicodeError) as exc:
            raise _unencodable(texts) from exc
        return [self._limited(e, texts[i], i, limit, truncate) for i, e in enumerate(encodings)]

    def encode_each(self, texts: Sequence[object], limit: int, truncate: bool,
                    prefix: str = "") -> list[list[int] | EmbeddingError]:
        """``encode`` of ``prefix`` + each text, but each text's own result: its ids, or the
        400 it would get alone (not a string, empty, not valid Unicode, over the limit). For
        bulk jobs, where a bad row must not fail its neighbours."""
        out: list[list[int] | EmbeddingError] = [
            invalid(f"input[{i}] is {'empty' if t == '' else 'not a string'}", param="input")
            if not isinstance(t, str) or not t else [] for i, t in enumerate(texts)]
        good = [i for i, result in enumerate(out) if result == []]
        try:
            encodings = self._backend.encode_batch([prefix + texts[i] for i in good])
        except (TypeError, ValueError, UnicodeError):  # one bad text: find it alone
            encodings = None
        for k, i in enumerate(good):
            try:
                encoding = (encodings[k] if encodings is not None
                            else self._backend.encode_batch([prefix + texts[i]])[0])
                out[i] = self._limited(encoding, prefix + texts[i], i, limit, truncate)
            except EmbeddingError as exc:
                out[i] = exc
            except (TypeError, ValueError, UnicodeError):
                out[i] = _unencodable([texts[i]], first=i)
        return out

    def _limited(self, encoding, text: str, index: int, limit: int, truncate: bool) -> list[int]:
        # len() first: converting an over-long input's ids to a list only to drop them holds
        # the GIL (a tenth of a second for 360k tokens).
        if len(encoding) <= limit:
            return encoding.ids
        if not truncate:
            raise too_long(index, len(encoding), limit)
        return self._truncated(encoding, text, limit)

    def _truncated(self, encoding, text: str, limit: int) -> list[int]:
        # Same as the tokenizer's own truncation: the text's tokens cut, the specials kept.
        # The encoding already holds lead + text + tail: cutting it before the tail and adding
        # the tail back gives that without tokenizing the (long) text a second time.
        keep = limit - len(self.tail_ids)
        if keep > len(self.lead_ids):
            encoding.truncate(keep)
            return encoding.ids + self.tail_ids
        encoding = self._encode_one(text)  # a limit at or below the specials' own length
        encoding.truncate(max(limit - self.special_tokens, 0))
        return self._backend.post_process(encoding).ids

    def check_ids(
        self, sequences: Sequence[Sequence[int]], limit: int, truncate: bool
    ) -> list[list[int]]:
        """Validate client-sent token ids: non-empty, inside the vocabulary, within ``limit``."""
        out = []
        for index, ids in enumerate(sequences):
            if not ids:
                raise invalid(f"input[{index}] is an empty list of token ids", param="input")
            low, high = min(ids), max(ids)
            if low < 0 or high >= self.vocab_size:
                bad = low if low < 0 else high
                raise invalid(
                    f"input[{index}] has token id {bad}, outside this model's vocabulary "
                    f"[0, {self.vocab_size - 1}]",
                    param="input",
                )
            if len(ids) > limit:
                if not truncate:
                    raise too_long(index, len(ids), limit)
                ids = ids[:limit]
            out.append(list(ids))
        return out

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids without special tokens (a rerank query's, a document's)."""
        try:
            encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
        except (TypeError, ValueError, UnicodeError) as exc:
            raise _unencodable(texts) from exc
        return [e.ids for e in encodings]

    def _encode_one(self, text: str):
        # encode_batch, not encode: only the batch call releases the GIL while Rust works,
        # and a single encode of 1.8 MB held the event loop of its caller's thread for 1 s.
        return self._backend.encode_batch([text], add_special_tokens=False)[0]

    def min_tokens(self, texts: Sequence[str]) -> int:
        """A cheap lower bound on the tokens of ``texts`` joined by spaces: their words
        after normalisation.

        Every pre-tokenizer in use (Metaspace, BERT, byte-level) splits at whitespace and
        each word becomes at least one token, so this can refuse an oversized document
        in a fifth of the time tokenizing it takes. Without a pre-tokenizer it is 0.
        ``normalize_str`` holds the GIL; one call per text lets other threads run between.
        """
        if self._backend.pre_tokenizer is None:
            return 0
        normalizer = self._backend.normalizer
        return sum(len((normalizer.normalize_str(t) if normalizer else t).split())
                   for t in texts)

    def content_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Ids (no special tokens) of ``text`` and each token's ``[start, end)`` characters.

        Used by late chunking, which maps tokens to chunks by where their characters fall.
        """
        try:
            encoding = self._encode_one(text)
        except (TypeError, ValueError, UnicodeError) as exc:
            raise _unencodable([text]) from exc
        ids = np.asarray(encoding.ids, dtype=np.int64)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        return ids, offsets

    def tokens(
        self, texts: Sequence[str], add_special_tokens: bool, prefix: str = ""
    ) -> list[list[dict]]:
        """Each text's tokens as TEI's ``/tokenize`` reports them: id, text, special, offsets.

        ``start``/``stop`` are character offsets into the client's text; tokens that come
        from no character of it (special tokens, the ``prefix`` instruction) have none.
        """
        try:
            encodings = self._backend.encode_batch(
                [prefix + text for text in texts], add_special_tokens=add_special_tokens
            )
        except (TypeError, ValueError, UnicodeError) as exc:
            raise _unencodable(texts) from exc
        shift = len(prefix)
        out = []
        for encoding in encodings:
            rows = []
            for token_id, token, special, (start, stop) in zip(
                encoding.ids, encoding.tokens, encoding.special_tokens_mask, encoding.offsets,
                strict=True,
            ):
                own = not special and stop > shift
                rows.append({"id": token_id, "text": token, "special": bool(special),
                             "start": max(start - shift, 0) if own else None,
                             "stop": stop - shift if own else None})
            out.append(rows)
        return out


def _special_ids_around(backend) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after one text (``<s>``, ``</s>``)."""
    bare = backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a").ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []


@dataclass(frozen=True)
class PairTemplate:
    """How the tokenizer's own post-processor joins two texts: ``lead + a + mid + b + tail``
    (XLM-R: ``<s> a </s></s> b </s>``; BERT: ``[CLS] a [SEP] b [SEP]``), and whether ``b``'s
    tokens and what follows them are of token type 1 (BERT's are, RoBERTa's not)."""

    lead: list[int]
    mid: list[int]
    tail: list[int]
    second_type: bool

    @property
    def specials(self) -> int:
        return len(self.lead) + len(self.mid) + len(self.tail)

    def join(self, a: Sequence[int], b: Sequence[int]) -> tuple[list[int], int | None]:
        """The pair's ids, and where its second segment (type 1) starts, if it has one."""
        start = len(self.lead) + len(a) + len(self.mid)
        return [*self.lead, *a, *self.mid, *b, *self.tail], start if self.second_type else None


def _pair_template(backend) -> PairTemplate:
    """Read the pair template off the post-processor, with marker texts ``a`` and ``b``."""
    a, b = (backend.encode(text, add_special_tokens=False) for text in ("a", "b"))
    pair = backend.post_process(a, b, add_special_tokens=True)
    ids, types = pair.ids, pair.type_ids
    first = next(i for i in range(len(ids)) if ids[i : i + len(a.ids)] == a.ids)
    second = next(i for i in range(first + len(a.ids), len(ids))
                  if ids[i : i + len(b.ids)] == b.ids)
    return PairTemplate(lead=ids[:first], mid=ids[first + len(a.ids) : second],
                        tail=ids[second + len(b.ids):], second_type=bool(types[second]))


def too_long(index: int, tokens: int, limit: int):
    """The 400 for an input over the token limit."""
    return invalid(
        f"input[{index}] has {tokens} tokens, more than the limit of {limit}; shorten it or "
        'send "truncate": true to cut it to the limit',
        param="input",
        code="context_length_exceeded",
    )


def _unencodable(texts: Sequence[str], first: int = 0):
    for index, text in enumerate(texts, start=first):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return invalid(
                f"input[{index}] is not valid Unicode (it holds a lone surrogate)", param="input"
            )
    return invalid("input could not be tokenized", param="input")


async def off_loop(chars: int, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``: inline for up to ``_INLINE_TOKENIZE_CHARS`` characters of text, else
    on a worker thread so a big request does not hold the event loop."""
    if chars <= _INLINE_TOKENIZE_CHARS:
        return work(*args)
    return await asyncio.to_thread(work, *args)
