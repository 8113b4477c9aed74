"""ONNX sessions: real-time runs give the same states and leave the caller's thread as it was."""

import logging
import os
import threading

import numpy as np
import pytest

import encoder.runtime
from encoder.runtime import OnnxModel

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"),
                                reason="scheduling policies are Linux-only")


def _thread_ids() -> set[int]:
    return {int(tid) for tid in os.listdir("/proc/self/task")}


def _batch() -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([[0, 17, 230, 41, 2, 1], [0, 99, 5, 2, 1, 1]], dtype=np.int64)
    return ids, (ids != 1).astype(np.int64)


def test_realtime_session_matches_and_only_its_own_threads_run_realtime(jina_dir):
    path = jina_dir / "onnx/model.onnx"
    plain = OnnxModel(path, threads=2)
    existing = _thread_ids()
    realtime = OnnxModel(path, threads=2, realtime=True)
    if not realtime.realtime:
        pytest.skip("SCHED_RR is not permitted on this machine")
    pool = _thread_ids() - existing  # ORT's intra-op pool: threads - 1 of them
    assert pool and all(os.sched_getscheduler(tid) == os.SCHED_RR for tid in pool)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the creating thread went back
    np.testing.assert_array_equal(realtime.token_states(*_batch(), 1),
                                  plain.token_states(*_batch(), 1))


def test_a_realtime_run_restores_the_callers_policy_and_nice(jina_dir):
    realtime = OnnxModel(jina_dir / "onnx/model.onnx", threads=1, realtime=True)
    if not realtime.realtime:
        pytest.skip("SCHED_RR is not permitted on this machine")
    seen = {}

    def caller() -> None:  # a thread of its own, so this test's nice stays with it
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 7)
        realtime.token_states(*_batch(), 0)
        seen["policy"] = os.sched_getscheduler(0)
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert seen == {"policy": os.SCHED_OTHER, "nice": 7}


def test_realtime_falls_back_to_normal_priority_where_not_permitted(jina_dir, monkeypatch,
                                                                    caplog):
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        if policy == os.SCHED_RR:  # what the kernel says without CAP_SYS_NICE
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(encoder.runtime.os, "sched_setscheduler", refuse)
    with caplog.at_level(logging.WARNING, logger="encoder.runtime"):
        model = OnnxModel(jina_dir / "onnx/model.onnx", threads=1, realtime=True)
    assert not model.realtime
    assert "CAP_SYS_NICE" in caplog.text
    assert model.token_states(*_batch(), 0).shape[:2] == (2, 6)
