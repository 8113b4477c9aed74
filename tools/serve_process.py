"""Start the real application with ``serve run`` on a copy of ``serve_config.yaml``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from tools.config_for_model import derive_config

ROOT = Path(__file__).resolve().parents[1]
# Fractions of the 2-core test machine, so a test Serve never starves pytest itself.
TEST_CPUS = {"Ingress": 0.1, "Encoder": 0.5}
ENV = {"RAY_ADDRESS": "local", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_run(model: Path, workdir: Path, args: dict | None = None,
              cpus: dict[str, float] | None = TEST_CPUS, timeout_s: float = 180) -> Iterator[str]:
    """Run ``serve run`` on serve_config.yaml pointed at ``model``; yield the base URL.

    ``cpus`` overrides deployments' ``num_cpus`` (None keeps serve_config.yaml's).
    """
    port = free_port()
    config = derive_config(ROOT / "serve_config.yaml", str(model), port=port, cpus=cpus,
                           args=args)
    for deployment in config["applications"][0]["deployments"]:
        deployment["graceful_shutdown_timeout_s"] = 2
        deployment["graceful_shutdown_wait_loop_s"] = 0.5
    config_path = workdir / "serve_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "serve.log"
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    serve = str(Path(sys.executable).parent / "serve")
    with log_path.open("wb") as log:
        process = subprocess.Popen([serve, "run", str(config_path)], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log_path, timeout_s)
        yield base
    finally:
        _stop(process)


def _wait_healthy(base: str, process: subprocess.Popen, log_path: Path, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve run exited early:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"service not healthy in {timeout_s}s:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
