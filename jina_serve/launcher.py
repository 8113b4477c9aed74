"""Run the service with a graceful stop that leaves nothing behind: Ray started lean,
``serve run``, a bounded drain on a signal, then every process of the run ended.

``serve run`` alone kills the HTTP proxy at once on shutdown, cutting requests in flight,
and blocks forever when the application fails to deploy. The launcher is two processes:

- the front (what ``jina-serve`` runs, PID 1 in Docker) waits until the service's port is
  free (a stopping instance may still hold it), then forwards SIGTERM or SIGINT to
- the session, its child in a process session of its own (so a terminal's Ctrl-C reaches
  only the front), which starts a local Ray without its dashboard (or joins
  ``RAY_ADDRESS``), runs ``serve run <config>`` against it, and watches the application
  until it runs. On the signal, or when the front dies (even by SIGKILL: the kernel tells
  it), it deletes the applications: Serve stops each replica only after its requests in
  flight have finished (``graceful_shutdown_timeout_s``) while the proxy still delivers
  their responses. Then ``serve run`` shuts Serve down and ``ray.shutdown()`` stops the Ray
  processes this session started (none of a cluster it joined). Each step has a deadline,
  and whatever of the session is still alive at the end is ended, so the stop takes at most
  ``graceful_shutdown_timeout_s`` plus ``STOP_MARGIN_S`` on any host.

HAProxy comes from ``jina-haproxy`` (``haproxy.py``): no side listeners, and it dies with
its manager. Ray's public APIs only: ``ray.init``, ``serve.status``/``delete``, the ``serve``
CLI. Why each Ray setting: docs/decisions/ray-settings.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from jina_serve.processes import die_with_parent, end_session, port_free, port_taken

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
# Ray's graceful_shutdown_timeout_s when a deployment sets none.
RAY_GRACEFUL_S = 20.0
# The stop's steps after the drain: serve run's shutdown, ray.shutdown(), the last sweep.
SERVE_RUN_STOP_S = 10.0
RAY_STOP_S = 10.0
SWEEP_S = 3.0
STOP_MARGIN_S = 10.0 + SERVE_RUN_STOP_S + RAY_STOP_S + 2 * SWEEP_S
# Ports Ray fixes per host: its direct ingress ranges (30000-31000 HTTP, 40000-41000 gRPC)
# and its fallback proxy's 8500 and 9500. A second instance on the host then finds them
# taken, and its HAProxy sends its requests to the first instance. Each instance takes a
# block of its own instead, above Ray's HTTP range and below the kernel's ephemeral ports.
BLOCKS_FROM, BLOCKS_TO, BLOCK = 31000, 32768, 32
PORT_SETTINGS = ("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT",
                 "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT",
                 "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT",
                 "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


def stop_budget_s(config: dict) -> float:
    """Longest a stop may take: the deployments' longest graceful shutdown, then the rest."""
    deployments = [d for app in config.get("applications", [])
                   for d in app.get("deployments", [])]
    graceful = max([float(d.get("graceful_shutdown_timeout_s", RAY_GRACEFUL_S))
                    for d in deployments] or [RAY_GRACEFUL_S])
    return graceful + STOP_MARGIN_S


def instance_ports_env(port: int) -> dict[str, str]:
    """Ray's per-host ports for the instance serving ``port``, from a block of ``BLOCK``
    ports all free now (14 for direct ingress over HTTP, 14 over gRPC, the fallback proxy's
    two), starting from one the service's port picks; nothing if the environment sets any."""
    if any(name in os.environ for name in PORT_SETTINGS):
        return {}
    blocks = (BLOCKS_TO - BLOCKS_FROM) // BLOCK
    for step in range(blocks):
        start = BLOCKS_FROM + ((port + step) % blocks) * BLOCK
        if all(port_free(p) for p in range(start, start + BLOCK)):
            values = (start, start + 13, start + 14, start + 27, start + 28, start + 29)
            return dict(zip(PORT_SETTINGS, map(str, values), strict=True))
    return {}


def session_env(haproxy_folder: Path, port: int) -> dict[str, str]:
    """The environment Ray starts with: the Serve defaults under the caller's own, HAProxy
    from ``jina-haproxy`` with its files in ``haproxy_folder``, Ray's per-host ports of
    this instance's own (it serves ``port``), and the folder this code imports
    ``deployment`` from on ``PYTHONPATH``, so Ray's workers (which build the application
    from ``import_path``) load the same code from any working folder."""
    spec = importlib.util.find_spec("deployment")
    paths = [str(Path(spec.origin).parent)] if spec and spec.origin else []
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    haproxy = {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{haproxy_folder}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{haproxy_folder}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy_folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{haproxy_folder}/server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{haproxy_folder}/metrics.sock"}
    wrapper = Path(sys.executable).with_name("jina-haproxy")
    if wrapper.is_file() or shutil.which("jina-haproxy"):
        haproxy["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(
            wrapper if wrapper.is_file() else shutil.which("jina-haproxy"))
    return {**SERVE_ENV_DEFAULTS, **haproxy, **instance_ports_env(port), **os.environ,
            "PYTHONPATH": os.pathsep.join(paths)}


def launch(config: Path, dashboard: bool = False) -> int:
    """Wait for the port, run the session as a child in its own process session, forward
    stop signals to it, and end what is left of the session after it. Returns the exit
    code: 0 after a signalled, drained stop."""
    loaded = yaml.safe_load(config.read_text(encoding="utf-8"))
    budget = stop_budget_s(loaded)
    http = loaded.get("http_options", {})
    port = int(http.get("port", 8000))
    if not _wait_for_port(http.get("host", "0.0.0.0"), port, budget):
        return 1
    # Short: HAProxy's unix socket paths (under a Ray node id) are capped at 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="jina-hap-", dir="/tmp" if Path("/tmp").is_dir()
                                   else None))
    command = [sys.executable, "-m", "jina_serve.launcher", str(config), str(budget)]
    if dashboard:
        command.append("--dashboard")
    child = subprocess.Popen(command, env=session_env(folder, port), start_new_session=True)
    stopping = threading.Event()

    def forward(signum: int, frame: object) -> None:
        stopping.set()
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while child.poll() is None:
        if stopping.wait(0.5):
            try:
                child.wait(timeout=budget + SWEEP_S)
            except subprocess.TimeoutExpired:  # its own deadlines failed: end it here
                child.kill()
                child.wait()
    end_session(child.pid, SWEEP_S)
    shutil.rmtree(folder, ignore_errors=True)
    return child.returncode


def _wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """Whether ``port`` is free, waiting up to ``timeout_s`` for a stopping instance."""
    if not port_taken(host, port):
        return True
    print(f"jina-serve: port {port} is taken; waiting up to {timeout_s:.0f} s for it (a "
          "stopping instance drains first)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if not port_taken(host, port):
            return True
    print(f"jina-serve: port {port} is still taken; stop what holds it or pass --port",
          file=sys.stderr, flush=True)
    return False


def run_session(config: Path, budget_s: float, dashboard: bool = False) -> int:
    """The child: Ray, ``serve run`` and the bounded drain. Returns its exit code."""
    import ray

    die_with_parent(signal.SIGTERM)  # a front killed outright still stops the service
    address = os.environ.get("RAY_ADDRESS") or "local"
    started = address == "local"
    # A cluster being joined keeps its own dashboard: Ray refuses the option then.
    options = {"include_dashboard": dashboard} if started else {}
    context = ray.init(address=address, namespace="serve", logging_level="WARNING",
                       log_to_driver=False, **options)
    # After ray.init, which installs a SIGTERM handler of its own that exits at once.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if started and not dashboard:  # the dashboard would keep Prometheus's file itself
        discovery = Path(context.address_info["session_dir"]) / DISCOVERY_FILE
        threading.Thread(target=write_discovery, args=(discovery,), daemon=True).start()
    serve_cli = str(Path(sys.executable).with_name("serve"))
    env = {**os.environ, "RAY_ADDRESS": context.address_info["gcs_address"]}
    child = subprocess.Popen([serve_cli, "run", str(config)], env=env)
    code = 0
    try:
        code = _serve_until_stopped(child, stop, budget_s - STOP_MARGIN_S + 10.0)
    finally:
        _stop(child, started)
    return code


def _stop(child: subprocess.Popen, started: bool) -> None:
    """``serve run``'s shutdown, Ray's, then the rest of this session: each with a deadline."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)  # serve run shuts Serve down, then exits
        try:
            child.wait(timeout=SERVE_RUN_STOP_S)
        except subprocess.TimeoutExpired:
            child.kill()
    import ray

    _with_deadline(ray.shutdown, RAY_STOP_S)  # the processes ray.init started, if any
    if started:
        end_session(os.getsid(0), SWEEP_S)


def _with_deadline(work, timeout_s: float) -> bool:
    """Run ``work()`` on a daemon thread; whether it ended within ``timeout_s``."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def _serve_until_stopped(child: subprocess.Popen, stop: threading.Event,
                         drain_s: float) -> int:
    """Wait for a stop signal (then drain, for at most ``drain_s``), the child's exit, or a
    failed deployment."""
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

    def drain() -> None:
        for name in list(serve.status().applications):
            print(f"draining application {name!r}", flush=True)
            serve.delete(name)

    try:
        if not _with_deadline(drain, drain_s):
            print(f"jina-serve: the drain took over {drain_s:.0f} s; stopping anyway",
                  file=sys.stderr, flush=True)
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
    sys.exit(run_session(Path(sys.argv[1]), float(sys.argv[2]),
                         dashboard="--dashboard" in sys.argv[3:]))
