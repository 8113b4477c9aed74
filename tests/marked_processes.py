"""The processes of a test run and of its Serve instances, found by the marker every one of
them carries in its environment; a process's memory and CPU time, from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from jina_serve.processes import Process, environment, process, processes

# In the environment of every process of one Serve instance (and, with the run's own value,
# of every process the test run starts): what outlives its stop is found by it.
SERVICE_MARKER = "JINA_TEST_SERVICE"
RUN_MARKER = "JINA_TEST_RUN"


def marked(marker: str, name: str = SERVICE_MARKER) -> list[Process]:
    """The live processes whose environment carries ``name=marker``: one Serve instance's
    (its launcher, Ray, replicas, HAProxy), or with ``RUN_MARKER`` the whole test run's."""
    own = os.getpid()
    return [p for p in processes() if p.alive and p.pid != own
            and environment(p.pid).get(name) == marker]


def kill_marked(marker: str, name: str = SERVICE_MARKER, rounds: int = 20) -> None:
    """SIGKILL every process marked ``name=marker``, again until none is left: a process
    manager killed mid-sweep may have started a child (HAProxy's reload) after the list."""
    for _ in range(rounds):
        left = marked(marker, name)
        if not left:
            return
        for leftover in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover.pid, signal.SIGKILL)
        time.sleep(0.2)


def end_marked(name: str, marker: str, grace_s: float = 5.0) -> list[Process]:
    """End the processes marked ``name=marker``: SIGTERM, then (after ``grace_s``)
    ``kill_marked``'s sweep. Returns those that were alive."""
    left = marked(marker, name)
    for leftover in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while marked(marker, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_marked(marker, name)
    return left


def replica_pid(deployment: str = "Encoder", marker: str | None = None) -> int:
    """The process of a deployment's replica on this machine (of the instance whose
    processes carry ``marker``, if given)."""
    name = f"ServeReplica:embeddings:{deployment}"
    for candidate in processes():
        if name in candidate.command and (
                marker is None or environment(candidate.pid).get(SERVICE_MARKER) == marker):
            return candidate.pid
    raise RuntimeError(f"no {deployment} replica found")


def memory_mb(pid: int) -> dict[str, float]:
    """A process's RSS, its peak (VmHWM, since the last ``reset_peak``) and PSS, in MB."""
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return {"rss": _kb(status["VmRSS"]) / 1024, "peak_rss": _kb(status["VmHWM"]) / 1024,
            "pss": _kb(rollup["Pss"]) / 1024}


def reset_peak(pid: int) -> None:
    """Start ``memory_mb``'s peak afresh (needs root or the process's owner)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _kb(text: str) -> int:
    return int(text.split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    found = process(pid)
    if found is None:
        raise ProcessLookupError(pid)
    return found.cpu_s


def idle_after(pid: int, start: float, limit_s: float, busy_cpu_s: float = 0.15,
               every_s: float = 0.5) -> float:
    """Seconds from ``start`` (``time.monotonic``) until ``pid`` uses less than
    ``busy_cpu_s`` CPU seconds in ``every_s``; ``limit_s`` if it never does by then."""
    last = cpu_seconds(pid)
    while time.monotonic() - start < limit_s:
        time.sleep(every_s)
        now = cpu_seconds(pid)
        if now - last < busy_cpu_s * every_s / 0.5:
            return time.monotonic() - start - every_s
        last = now
    return limit_s
