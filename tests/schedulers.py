"""Building schedulers and parcels for the scheduler's tests."""

from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.parcels import Parcel
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import SchedulerSettings


def make_scheduler(folder, budget=16_384, parallel=1, window=None, **options) -> Scheduler:
    """A scheduler on one-thread sessions, with a parallel session for ``parallel`` runs at
    once if above 1; ``options``: observers, ``memory``."""
    card = ModelCard.from_folder(folder)
    path = served_onnx(folder / "onnx/model.onnx", card)
    settings = SchedulerSettings(max_run_tokens=budget, parallel_runs=parallel,
                                 sort_window_tokens=window or max(budget, 4096))
    return Scheduler(OnnxModel(path, threads=1), card, settings,
                     OnnxModel(path, threads=1) if parallel > 1 else None, **options)


def parcel(task, sequences) -> Parcel:
    return Parcel.from_lists(task, sequences)


def tokens(*lengths):
    return [[0] + [100] * (n - 2) + [2] for n in lengths]
