"""Start the real application (``jina-serve`` on a copy of ``serve_config.yaml``) for tests."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from jina_serve.config import derive_config, load_config
from jina_serve.launcher import instance_ports_env, stop_budget_s
from tests.marked_processes import SERVICE_MARKER, kill_marked, marked, replica_pid

ROOT = Path(__file__).resolve().parents[1]
# A stopping instance's HAProxy keeps a replica this long before it is stopped: 1 s keeps
# each of the suite's stops short (Ray's default is 30 s, jina-serve's 5 s: the drain tests
# pass those).
TEST_SERVE_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}
# Fractions of the 2-core test machine, so a test Serve never starves pytest itself.
TEST_CPUS = {"Ingress": 0.1, "Encoder": 0.5}
# What users run: the console script's module, which starts Ray itself.
LAUNCHER = [sys.executable, "-m", "jina_serve"]


# Ports come from below the kernel's ephemeral range and above Ray's worker ports
# (10002-19999) and local_cluster's (20000-21999). A port the kernel hands out (bind to 0)
# can be given again, to any outgoing connection, before the service binds it: CI once lost
# a HAProxy metrics port that way.
_PORTS_FROM = 22000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free on every address now, outside the range the kernel picks from itself."""
    candidates = [p for p in range(_PORTS_FROM, _ephemeral_low()) if p not in _handed_out]
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no such range on this host: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_env() -> dict[str, str]:
    """Variables that give a Serve instance not started by ``jina-serve`` (plain ``serve
    run``, ``ray start`` nodes) HAProxy files and side ports of its own, so it never meets
    another instance's. Short: unix socket paths are capped at 107 bytes."""
    folder = tempfile.mkdtemp(prefix="hap-")
    return {"RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{folder}/haproxy.cfg",
            "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{folder}/admin.sock",
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{folder}/server-state",
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{folder}/metrics.sock"}


@contextmanager
def serve_run(model: Path, workdir: Path, **options) -> Iterator[ServeProcess]:
    """``start_service``, yielding the running service; on the way out it is stopped (a
    signal to its launcher) and none of its processes may outlive it."""
    service = start_service(model, workdir, **options)
    try:
        yield service
    finally:
        service.stop()
        service.assert_nothing_left()


def restore_sigint() -> None:
    """Ctrl-C as a terminal delivers it. A process started in the background (nohup, `&`, some
    CI runners) inherits SIGINT ignored, and so would every `serve run` it starts, which then
    never stops on SIGINT; a handler set here is reset to the default in children at exec."""
    if (signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def start_service(model: Path, workdir: Path, args: dict | None = None,
                  cpus: dict[str, float] | None = TEST_CPUS, timeout_s: float = 180,
                  env: dict[str, str] | None = None, command: list[str] | None = None,
                  graceful_s: float = 2, deployments: dict[str, dict] | None = None,
                  root: Path = ROOT, own_batches: bool = True,
                  controller_env: dict[str, str] | None = None,
                  port: int | None = None,
                  config_file: str = "serve_config.yaml") -> ServeProcess:
    """Run ``jina-serve`` on serve_config.yaml pointed at ``model``; the service once healthy.

    ``cpus`` overrides deployments' ``num_cpus`` (None keeps serve_config.yaml's); ``env``
    adds environment variables; ``command`` replaces ``jina-serve`` (the config's path is
    passed as EMBEDDINGS_CONFIG, which both read, and appended to a plain ``serve run``);
    ``root`` is the checkout to run (its config, code and working folder); ``own_batches``
    gives the instance a Batch API folder of its own in ``workdir`` (off for checkouts
    older than the Batch API); ``controller_env`` replaces some of the config's
    ``controller_options`` environment (Ray's serving switches); ``port``: the HTTP port
    (default: a free one); ``config_file``: the shipped config to start from.
    """
    restore_sigint()
    port = port or free_port()
    if own_batches:
        args = {"batches": {"storage": str(workdir / "batches")}, **(args or {})}
    config = derive_config(load_config(root / config_file), model=str(model),
                           port=port, cpus=cpus, args=args, deployments=deployments)
    if controller_env:
        env_vars = config["controller_options"]["runtime_env"]["env_vars"]
        env_vars.update(controller_env)
    for deployment in config["applications"][0]["deployments"]:
        deployment["graceful_shutdown_timeout_s"] = graceful_s
        deployment["graceful_shutdown_wait_loop_s"] = 0.5
    config_path = workdir / "serve_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "serve.log"
    bin_dir = Path(sys.executable).parent
    marker = uuid.uuid4().hex
    plain = bool(command) and Path(command[0]).name == "serve"
    full_env = {**TEST_SERVE_ENV, **os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {}),
                **(haproxy_env() | instance_ports_env(port) if plain else {}),
                SERVICE_MARKER: marker,
                "PYTHONPATH": str(root), "EMBEDDINGS_CONFIG": str(config_path),
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env["RAY_ADDRESS"] = "local"  # always a Ray of its own
    if plain:
        command = [*command, str(config_path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command or LAUNCHER, cwd=root, env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    service = ServeProcess(f"http://127.0.0.1:{port}", process, log_path, marker,
                           stop_budget_s(config))
    try:
        wait_healthy(service.url, process, log_path, timeout_s, marker)
    except BaseException:
        service.stop()
        service.assert_nothing_left()
        raise
    return service


def wait_healthy(base: str, process: subprocess.Popen, log_path: Path, timeout_s: float,
                 marker: str | None = None) -> None:
    """Poll ``base``/health until 200; fail with the log's tail if ``process`` exits first.
    With ``marker``, the answer counts only once that instance's own proxy runs (a stopping
    instance on the same port may still answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited early:\n{_tail(log_path)}")
        try:
            if (httpx.get(f"{base}/health", timeout=2).status_code == 200
                    and (marker is None or _proxy_runs(marker))):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"service not healthy in {timeout_s}s:\n{_tail(log_path)}")


def _proxy_runs(marker: str) -> bool:
    return any(p.command.startswith(("ray::HAProxyManager", "ray::ProxyActor"))
               for p in marked(marker))


@dataclass
class ServeProcess:
    """A running Serve instance: its base URL, launcher process, log, the marker in every
    one of its processes' environment, and how long its stop may take."""

    url: str
    process: subprocess.Popen
    log_path: Path
    marker: str
    stop_budget_s: float

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Signal the launcher alone (it drains, stops Ray and ends its session); if it
        outlives its stop budget, kill it and everything it started, and fail."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=self.stop_budget_s + 15)
            except subprocess.TimeoutExpired:
                kill_marked(self.marker)
                self.process.wait()
                raise AssertionError(f"the launcher outlived its stop budget of "
                                     f"{self.stop_budget_s:.0f} s:\n{self.log()}") from None
        return self.process.returncode

    def assert_nothing_left(self, grace_s: float = 5.0) -> None:
        """Fail, after killing them, if any of this instance's processes outlive its stop
        (``grace_s`` for a plain ``serve run``'s own cleanup)."""
        deadline = time.monotonic() + grace_s
        while (left := marked(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        kill_marked(self.marker)
        assert not left, f"processes outlived the service: {[p.command for p in left]}"

    def session_dir(self) -> Path:
        """This instance's Ray session folder (logs, the metrics discovery file)."""
        return Path(self._ray_arg("--session-dir"))

    def gcs_address(self) -> str:
        """``host:port`` of this instance's Ray (``ray.init(address=...)``): with several
        instances up, ``address="auto"`` may join another's."""
        return self._ray_arg("--gcs-address")

    def _ray_arg(self, name: str) -> str:
        """A ``--name=value`` argument of one of this instance's Ray daemons."""
        for candidate in marked(self.marker):
            for arg in candidate.command.split():
                if arg.startswith(f"{name}="):
                    return arg.split("=", 1)[1]
        raise RuntimeError(f"no Ray process of this instance gives {name}")

    def replica_pid(self, deployment: str = "Encoder") -> int:
        """The process of one of this instance's replicas of ``deployment``."""
        return replica_pid(deployment, self.marker)

    def log(self) -> str:
        return _tail(self.log_path)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def abandon(url: str, body: bytes, give_up_s: float) -> str:
    """POST ``body`` to ``url``'s /v1/embeddings in one write, close the connection after
    ``give_up_s``; the status line's code, or "gave up"."""
    parts = urlsplit(url)
    head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: test\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head + body)
    await writer.drain()
    try:
        return (await asyncio.wait_for(reader.readline(), give_up_s)).decode().split()[1]
    except asyncio.TimeoutError:
        return "gave up"
    finally:
        writer.close()
