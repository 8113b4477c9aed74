"""Run the service with a graceful stop: Ray started lean, ``serve run``, drain on a signal.

``serve run`` alone kills the HTTP proxy at once on shutdown, cutting requests in flight,
and blocks forever when the application fails to deploy. The launcher is two processes:

- the front (what ``jina-serve`` runs, PID 1 in Docker) forwards SIGTERM or SIGINT to
- the session, its child in a process session of its own (so a terminal's Ctrl-C reaches
  only the front), which starts a local Ray without its dashboard (or joins
  ``RAY_ADDRESS``), runs ``serve run <config>`` against it, and watches the application
  until it runs. On the signal it first deletes the applications: Serve stops each replica
  only after its requests in flight have finished (``graceful_shutdown_timeout_s``) while
  the proxy still delivers their responses. Then ``serve run`` shuts Serve down, and
  ``ray.shutdown()`` stops the Ray processes this session started (none of a cluster it
  joined). Ray's public APIs only: ``ray.init``, ``serve.status``/``delete``, the ``serve``
  CLI. Why each Ray setting: docs/decisions/ray-settings.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Read by Ray when Serve starts; set in the environment to override one. The fast serving
# path (HAProxy, throughput preset) is in serve_config.yaml's controller_options, so plain
# `serve run` gets it too; these suit one local host and `docker stop`.
SERVE_ENV_DEFAULTS = {
    # A stopping replica keeps serving this long so HAProxy stops sending it traffic first;
    # Ray's 30 s outlasts `docker stop`'s 10 s grace period.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# Ray's name for it: <session dir>/prom_metrics_service_discovery.json.
DISCOVERY_FILE = "prom_metrics_service_discovery.json"


def session_env() -> dict[str, str]:
    """The environment Ray starts with: the Serve defaults under the caller's own, and the
    folder this code imports ``deployment`` from on ``PYTHONPATH``, so Ray's workers (which
    build the application from ``import_path``) load the same code from any working folder."""
    spec = importlib.util.find_spec("deployment")
    paths = [str(Path(spec.origin).parent)] if spec and spec.origin else []
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {**SERVE_ENV_DEFAULTS, **os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def launch(config: Path, dashboard: bool = False) -> int:
    """Run the session as a child in its own process session; forward stop signals to it.

    Returns the exit code: 0 after a signalled, drained stop.
    """
    command = [sys.executable, "-m", "jina_serve.launcher", str(config)]
    if dashboard:
        command.append("--dashboard")
    child = subprocess.Popen(command, env=session_env(), start_new_session=True)

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


def run_session(config: Path, dashboard: bool = False) -> int:
    """The child: Ray, ``serve run`` and the drain. Returns its exit code."""
    import ray

    address = os.environ.get("RAY_ADDRESS") or "local"
    started = address == "local"
    # A cluster being joined keeps its own dashboard: Ray refuses the option then.
    options = {"include_dashboard": dashboard} if started else {}
    context = ray.init(address=address, namespace="serve", logging_level="WARNING",
                       log_to_driver=False, **options)
    if started and not dashboard:  # the dashboard would keep Prometheus's file itself
        discovery = Path(context.address_info["session_dir"]) / DISCOVERY_FILE
        threading.Thread(target=write_discovery, args=(discovery,), daemon=True).start()
    serve_cli = str(Path(sys.executable).with_name("serve"))
    env = {**os.environ, "RAY_ADDRESS": context.address_info["gcs_address"]}
    child = subprocess.Popen([serve_cli, "run", str(config)], env=env)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    code = 0
    try:
        code = _serve_until_stopped(child, stop)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)  # serve run shuts Serve down, then exits
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        ray.shutdown()  # stops the processes ray.init started, if it started any
    return code


def _serve_until_stopped(child: subprocess.Popen, stop: threading.Event) -> int:
    """Wait for a stop signal (drain first), the child's exit, or a failed deployment."""
    from ray import serve

    deployed = False
    while not stop.wait(1.0):
        if child.poll() is not None:
            return child.returncode or 1
        if not deployed:
            deployed, failure = _deployment_state(serve)
            if failure:
                print(f"jina-serve: the application failed to deploy: {failure}",
                      file=sys.stderr, flush=True)
                return 1
    try:
        for name in list(serve.status().applications):
            print(f"draining application {name!r}", flush=True)
            serve.delete(name)
    except Exception as exc:  # never block the shutdown itself
        print(f"draining failed: {exc!r}", file=sys.stderr, flush=True)
    return 0


def _deployment_state(serve) -> tuple[bool, str | None]:
    """(every application runs, the first failure's message) from ``serve.status()``."""
    try:
        applications = serve.status().applications
    except Exception:  # Serve is still starting
        return False, None
    for app in applications.values():
        if str(app.status).endswith("DEPLOY_FAILED"):
            return False, app.message.strip().splitlines()[-1] if app.message else "unknown"
    running = bool(applications) and all(str(a.status).endswith("RUNNING")
                                         for a in applications.values())
    return running, None


def write_discovery(path: Path, period_s: float = 5.0) -> None:
    """Keep Prometheus's file-based discovery list of metrics agents, as the dashboard does.

    Atomic replace: Prometheus may read it at any moment.
    """
    import ray

    while True:
        try:
            targets = [f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}"
                       for n in ray.nodes() if n["Alive"]]
        except Exception:  # Ray is shutting down: nothing left to list
            return
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))
        os.replace(partial, path)
        time.sleep(period_s)


if __name__ == "__main__":
    sys.exit(run_session(Path(sys.argv[1]), dashboard="--dashboard" in sys.argv[2:]))
