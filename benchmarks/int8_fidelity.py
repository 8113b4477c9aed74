"""int8 fidelity: cosine of each variant's pooled, normalised vectors to fp32's on real text.

``benchmarks/int8.py --fidelity`` runs it (no timing): the corpus (``tests/corpus.py``) in
length-sorted batches, as the service groups texts, since a dynamically quantized run's
activation scale spans its whole batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.plots import RESULTS, write_csv
from benchmarks.workloads import reopened
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, pad
from encoder.pooling import POOLERS, l2_normalize
from tests.corpus import SENTENCES


def batched(tokenizer: TextTokenizer, card: ModelCard, texts: list[str], size: int,
            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``texts`` tokenized, sorted by length (a stable sort) and padded in batches of ``size``."""
    ids = sorted(tokenizer.encode(texts, card.max_tokens, truncate=True), key=len)
    return [pad([np.asarray(s) for s in ids[i : i + size]], card.pad_token_id)
            for i in range(0, len(ids), size)]


def opened(path: Path, threads: int, variant: str) -> OnnxModel:
    """``variant``'s session: the service's options; ORT's exact U8U8 int8 kernels for an
    ``x64quantprecision`` variant."""
    if "x64quantprecision" not in variant:
        return OnnxModel(path, threads)
    return reopened(path, threads, entries={"session.x64quantprecision": "1"})


def pooled(model: OnnxModel, card: ModelCard, batches: list[tuple[np.ndarray, np.ndarray]],
           ) -> np.ndarray:
    """The pooled, normalised vectors of ``batches`` (padded ids and masks), in order."""
    task = 0 if model.has_task_id else None
    return np.concatenate([l2_normalize(POOLERS[card.pooling](
        model.token_states(ids, mask, task), mask)) for ids, mask in batches])


def fidelity(args: argparse.Namespace, paths: dict[str, Path], sizes: list[int]) -> None:
    """Each variant's cosine to fp32 on ``SENTENCES``, in length-sorted batches of each of
    ``sizes`` (a dynamic quantizer's activation scale spans its batch); printed and written
    to benchmarks/results/int8-fidelity-<model>.csv."""
    card, tokenizer = ModelCard.from_folder(args.model), TextTokenizer(args.model)
    lengths = [len(s) for s in tokenizer.encode(SENTENCES, card.max_tokens, truncate=True)]
    order = sorted(range(len(SENTENCES)), key=lengths.__getitem__)  # batched()'s order
    batches = {n: batched(tokenizer, card, SENTENCES, n) for n in sizes}
    print(f"{'variant':<44} {'batch':>5} {'cos mean':>9} {'cos min':>9}  worst text")
    vectors, rows = {}, []
    for name, path in paths.items():
        model = opened(path, args.threads, name)
        for n in sizes:
            vectors[name, n] = pooled(model, card, batches[n])
            cosine = (vectors[name, n] * vectors["fp32", n]).sum(axis=1)
            worst = SENTENCES[order[int(cosine.argmin())]][:40]
            rows.append({"model": args.model.name, "variant": name, "batch": n,
                         "texts": len(order), "cos_mean": f"{cosine.mean():.5f}",
                         "cos_min": f"{cosine.min():.5f}", "worst": worst})
            print(f"{name:<44} {n:>5} {cosine.mean():9.5f} {cosine.min():9.5f}  {worst!r}")
    print(write_csv(rows, RESULTS / f"int8-fidelity-{args.model.name}.csv"))
