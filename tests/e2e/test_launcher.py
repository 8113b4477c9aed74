"""Graceful shutdown: requests in flight when the service is told to stop still complete."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tools.serve_main import session_members
from tools.serve_process import serve_run

pytestmark = pytest.mark.e2e

# MiniLM (real attention) on half a core: one request of these takes seconds, so requests
# are surely in flight when the signal comes.
TEXTS = [f"passage {i} " + "about a graceful shutdown of the service " * 15 for i in range(160)]


def _stop_under_load(service, sig: int) -> tuple[list, float]:
    """Two clients send requests; ``sig`` goes to the launcher mid-stream."""
    outcomes: list[tuple[float, int | str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = client.post(f"{service.url}/v1/embeddings",
                                         json={"input": TEXTS}).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                outcomes.append((sent, status))
                if status != 200:
                    time.sleep(0.1)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    signalled = time.monotonic()
    returncode = service.stop(sig)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    after = [s for t, s in outcomes if t >= signalled]
    print(f"{signal.Signals(sig).name}: exit {returncode}, "
          f"{sum(s == 200 for _, s in outcomes)} completed, after the signal: "
          f"{ {s: after.count(s) for s in set(after)} }, before: "
          f"{ {s: [x for _, x in outcomes if _ < signalled].count(s) for s in set(after)} }")
    return outcomes, signalled


def _assert_in_flight_completed(outcomes, signalled) -> None:
    before = [status for sent, status in outcomes if sent < signalled]
    assert len(before) >= 2
    assert all(status == 200 for status in before), before


LAUNCHER = [sys.executable, "-m", "tools.serve_main"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_launcher_drains_in_flight_requests(minilm_dir, tmp_path, sig):
    with serve_run(minilm_dir, tmp_path, graceful_s=30, command=LAUNCHER) as service:
        outcomes, signalled = _stop_under_load(service, sig)
        assert service.process.returncode == 0, service.log()
    _assert_in_flight_completed(outcomes, signalled)


def test_launcher_starts_ray_lean(jina_dir, tmp_path):
    """No dashboard modules in the session, and the controller got the slower loop: the
    idle background work that lands inside the encoder's ONNX runs (tools/serve_main.py)."""
    with serve_run(jina_dir, tmp_path, command=LAUNCHER) as service:
        launcher = service.process.pid
        # The launcher starts `serve run` in a session of its own (see tools/serve_main.py).
        child = int(Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()[0])
        commands = {pid: _command(pid) for pid in session_members(child)}
        assert any("raylet" in c for c in commands.values()), commands
        # Without the dashboard Ray keeps only a minimal API server: no frontend, no modules.
        assert not [c for c in commands.values() if c.startswith("ray-dashboard-")], commands
        assert all("--disable-frontend" in c for c in commands.values()
                   if "dashboard/dashboard.py" in c), commands
        controller = next(pid for pid, c in commands.items() if c.startswith("ray::ServeCon"))
        environ = Path(f"/proc/{controller}/environ").read_bytes().split(b"\0")
        assert b"RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5" in environ
        assert httpx.post(f"{service.url}/v1/embeddings", json={"input": "hi"}).status_code == 200


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
