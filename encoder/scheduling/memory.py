"""The encoder replica's memory: what a run needs (estimated from the model's config), what
the replica may use, and which long inputs fit (``MemoryBudget``).

A long input is admitted only if its run fits the replica's memory beside the model.
Figures behind the constants: docs/decisions/long-documents.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from encoder.errors import EmbeddingError, ErrorKind
from encoder.model.card import ModelCard

# Float32 activations one token keeps alive at a run's peak, counted in hidden-state widths
# and feed-forward widths: fitted to jina-v3's real graph (1.42 GB more peak RSS at 8192 tokens
# than at 512, 1.52 GB with the 512-token run's own), rounded up so the estimate errs large.
_HIDDEN_COPIES = 30
_FFN_COPIES = 4


def activation_bytes(card: ModelCard, sequences: int, length: int, flash: bool) -> int:
    """Peak bytes of activations for one run of ``sequences`` padded to ``length`` tokens.

    ``flash``: an unpadded run takes an attention kernel that never holds the
    ``[heads, n, n]`` scores (the prepared graph's flash branch). A padded run, or any run of
    a graph without it, holds the scores and their softmax at once.
    """
    hidden = card.hidden_size or 768
    ffn = card.intermediate_size or 4 * hidden
    heads = card.attention_heads or max(1, hidden // 64)
    linear = sequences * length * (_HIDDEN_COPIES * hidden + _FFN_COPIES * ffn) * 4
    scores = 0 if flash and sequences == 1 else 2 * sequences * heads * length * length * 4
    return linear + scores


class MemoryBudget:
    """Which runs an encoder replica can start without outgrowing its memory.

    limit: bytes the replica may use (what it declared to Ray, else the machine's).
    held: bytes it held after loading its sessions (weights, arenas of their first runs).
    reserve: bytes kept for the short runs that go on beside a long one.
    """

    def __init__(self, card: ModelCard, limit: int, held: int, reserve: int,
                 flash: bool) -> None:
        self.card = card
        self.limit = limit
        self.held = held
        self.reserve = reserve
        self.flash = flash

    def fits(self, length: int) -> bool:
        """Whether one sequence of ``length`` tokens can run beside the reserve."""
        return self.held + self.reserve + activation_bytes(
            self.card, 1, length, self.flash) <= self.limit

    def longest(self, ceiling: int) -> int:
        """The longest sequence (at most ``ceiling`` tokens) that fits; 0 if none does."""
        low, high = 0, ceiling
        while low < high:
            middle = (low + high + 1) // 2
            if self.fits(middle):
                low = middle
            else:
                high = middle - 1
        return low

    def refusal(self, length: int, ceiling: int) -> EmbeddingError:
        """The 413 for an input of ``length`` tokens that does not fit."""
        need = activation_bytes(self.card, 1, length, self.flash)
        return EmbeddingError(
            ErrorKind.TOO_LARGE,
            f"an input of {length} tokens needs ~{need / 1e9:.2f} GB of activations, but this "
            f"encoder replica's {self.limit / 1e9:.2f} GB hold the model "
            f"({self.held / 1e9:.2f} GB) and short runs ({self.reserve / 1e9:.2f} GB): it "
            f"takes at most {self.longest(ceiling)} tokens per input. Send shorter inputs, or "
            "give the Encoder more memory (ray_actor_options.memory)",
            param="input", code="input_too_long")


def memory_limit(declared: float | None) -> int:
    """Bytes this process may use: ``declared`` (Ray's ``memory`` resource), else the
    cgroup's limit or the machine's memory, whichever is smaller."""
    if declared:
        return int(declared)
    limits = []
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw.isdigit():
            limits.append(int(raw))
    except OSError:
        pass
    limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(limits)


def resident_bytes() -> int:
    """This process's resident memory now (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
