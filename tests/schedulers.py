"""Building schedulers and parcels for the scheduler's tests."""

import copy
from pathlib import Path

from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.parcels import Parcel
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import SchedulerSettings

# One-thread sessions by (file, role), opened once per test run: opening one costs ~0.5 s.
_SESSIONS: dict[tuple[Path, str], OnnxModel] = {}


def one_thread_session(path: Path, role: str) -> OnnxModel:
    """A one-thread session of ``path`` for ``role`` ("full", "parallel"): a copy of the
    wrapper around a session opened once, so a test may replace its attributes (its
    ``session``, its ``token_states``) without touching another test's."""
    if (path, role) not in _SESSIONS:
        _SESSIONS[path, role] = OnnxModel(path, threads=1)
    return copy.copy(_SESSIONS[path, role])


def make_scheduler(folder, budget=16_384, parallel=1, window=None, **options) -> Scheduler:
    """A scheduler on one-thread sessions, with a parallel session for ``parallel`` runs at
    once if above 1; ``options``: observers, ``memory``."""
    card = ModelCard.from_folder(folder)
    path = served_onnx(folder / "onnx/model.onnx", card)
    settings = SchedulerSettings(max_run_tokens=budget, parallel_runs=parallel,
                                 sort_window_tokens=window or max(budget, 4096))
    return Scheduler(one_thread_session(path, "full"), card, settings,
                     one_thread_session(path, "parallel") if parallel > 1 else None, **options)


def parcel(task, sequences) -> Parcel:
    return Parcel.from_lists(task, sequences)


def tokens(*lengths):
    return [[0] + [100] * (n - 2) + [2] for n in lengths]
