"""Building schedulers and token batches for the scheduler's tests."""

from encoder.batching import TokenBatch
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.scheduler import Scheduler
from encoder.settings import BatchingSettings


def make_scheduler(folder, budget=16_384, lanes=1, window=None, **options) -> Scheduler:
    """A scheduler of ``lanes`` one-thread sessions; ``options``: observers, ``memory``."""
    card = ModelCard.from_folder(folder)
    path = served_onnx(folder / "onnx/model.onnx", card)
    batching = BatchingSettings(max_batch_tokens=budget, parallel_runs=lanes,
                                sort_window_tokens=window or max(budget, 4096))
    return Scheduler(OnnxModel(path, threads=1), card, batching,
                     OnnxModel(path, threads=1) if lanes > 1 else None, **options)


def batch(task, sequences) -> TokenBatch:
    return TokenBatch.from_lists(task, sequences)


def tokens(*lengths):
    return [[0] + [100] * (n - 2) + [2] for n in lengths]
