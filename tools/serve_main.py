"""Run the service with a graceful stop: ``serve run`` plus draining on SIGTERM or Ctrl-C.

``serve run`` on its own kills the HTTP proxy at once on shutdown, cutting requests in flight,
and a Python PID 1 ignores SIGTERM (``docker stop``, Kubernetes). This launcher runs
``serve run`` as a child and, on SIGTERM or SIGINT, first deletes the applications: Serve
then stops each replica only after its requests in flight have finished (within the
deployment's ``graceful_shutdown_timeout_s``) while the proxy still delivers their responses.
Only then is ``serve run`` told to shut down.

It also turns on, unless the environment says otherwise, the Ray Serve options measured
fastest here (benchmarks/overhead.py, 2 cores, one-text requests): HAProxy as the HTTP
ingress (with direct ingress to the replicas) and Ray's throughput-optimized preset. They cut
a one-text request from 8.9 to 2.4 ms and raised 32 clients from 190 to 415 requests/s.

Ray's idle background work lands inside the encoder's ONNX runs (both cores split every
matrix product), so the launcher also trims it: Ray starts without its dashboard (see
tools/ray_serve_run.py; EMBEDDINGS_RAY_DASHBOARD=1 keeps it) and Serve's controller
reconciles every 0.5 s instead of 0.1 s. Together they halved the idle session's CPU on
2 cores, from 140-155 to 65-84 ms per second (its threads' schedstat summed over 10 s
windows, jina-tiny; benchmarks/ray_interference.py prints the same per process).

EMBEDDINGS_CONFIG names the config (default serve_config.yaml); EMBEDDINGS_MODEL, if set,
replaces its ``args.model`` (a local folder or a hub id).

Usage: ``python -m tools.serve_main``
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tools.config_for_model import derive_config

# Read by Ray when Serve starts; set "0" in the environment to turn one off.
SERVE_ENV_DEFAULTS = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # A stopping replica keeps serving this long so HAProxy stops sending it traffic first.
    # Ray's 30 s default outlasts `docker stop`'s 10 s grace period; locally 5 s is plenty.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
    # The controller's reconcile loop was the busiest idle process (40 ms of CPU per second
    # at 0.1 s); at 0.5 s it reacts to a dead replica or a new config up to 0.4 s later.
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
}


def serve_run_command(config: Path) -> list[str]:
    """``serve run <config>``, through tools.ray_serve_run unless the dashboard is wanted."""
    if os.environ.get("EMBEDDINGS_RAY_DASHBOARD", "0") == "1":
        return [str(Path(sys.executable).with_name("serve")), "run", str(config)]
    return [sys.executable, "-m", "tools.ray_serve_run", str(config)]


def drain_applications() -> None:
    """Delete every Serve application on the local cluster, waiting for in-flight requests."""
    import ray
    from ray import serve

    ray.init(address="auto", namespace="serve", log_to_driver=False, logging_level="ERROR")
    try:
        for name in list(serve.status().applications):
            print(f"draining application {name!r}", flush=True)
            serve.delete(name)
    finally:
        ray.shutdown()


def reap_session(session_id: int) -> None:
    """Kill what is left of a process session once its leader has exited.

    Serve's HAProxy can outlive `serve run` (reparented to init), keeping ports 9101 and 8404
    bound so the next start fails; every process `serve run` started shares its session.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [pid for pid in session_members(session_id) if pid != os.getpid()]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if not left:
            return
        time.sleep(1)


def session_members(session_id: int) -> list[int]:
    """PIDs of every process in a session (what `serve run` and Ray started under it)."""
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                # Fields after the parenthesised command: state ppid pgrp session ...
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == session_id:
                members.append(int(proc.name))
    return members


def main() -> None:
    config = Path(os.environ.get("EMBEDDINGS_CONFIG", "serve_config.yaml"))
    model = os.environ.get("EMBEDDINGS_MODEL")
    if model:
        derived = Path(tempfile.mkdtemp(prefix="serve-")) / "serve_config.yaml"
        derived.write_text(yaml.safe_dump(derive_config(config, model), sort_keys=False))
        config = derived
    # Its own session, so a terminal's Ctrl-C reaches only this launcher, which drains first.
    env = {**SERVE_ENV_DEFAULTS, **os.environ}
    child = subprocess.Popen(serve_run_command(config), env=env, start_new_session=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        try:
            drain_applications()
        except Exception as exc:  # never block the shutdown itself
            print(f"draining failed: {exc!r}", file=sys.stderr, flush=True)
        child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = child.wait()
    reap_session(child.pid)
    sys.exit(code)


if __name__ == "__main__":
    main()
