"""Start the real application (``jina-serve`` on a copy of ``serve_config.yaml``) for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from jina_serve.config import derive_config, load_config

ROOT = Path(__file__).resolve().parents[1]
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


def haproxy_env() -> tuple[Path, dict[str, str]]:
    """A folder and the variables that give one Serve instance a HAProxy of its own.

    HAProxy's ports and files are fixed by default (/tmp/haproxy-serve): two instances at
    once would share a config or socket. Short: unix socket paths are capped at 107 bytes.
    """
    folder = tempfile.mkdtemp(prefix="hap-")
    return Path(folder), {
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{folder}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{folder}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{folder}/server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{folder}/metrics.sock"}


@contextmanager
def serve_run(model: Path, workdir: Path, args: dict | None = None,
              cpus: dict[str, float] | None = TEST_CPUS, timeout_s: float = 180,
              env: dict[str, str] | None = None, command: list[str] | None = None,
              graceful_s: float = 2, deployments: dict[str, dict] | None = None,
              root: Path = ROOT, own_batches: bool = True,
              controller_env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """Run ``jina-serve`` on serve_config.yaml pointed at ``model``; yield the running service.

    ``cpus`` overrides deployments' ``num_cpus`` (None keeps serve_config.yaml's); ``env``
    adds environment variables; ``command`` replaces ``jina-serve`` (the config's path is
    passed as EMBEDDINGS_CONFIG, which both read, and appended to a plain ``serve run``);
    ``root`` is the checkout to run (its config, code and working folder); ``own_batches``
    gives the instance a Batch API folder of its own in ``workdir`` (off for checkouts
    older than the Batch API); ``controller_env`` replaces some of the config's
    ``controller_options`` environment (Ray's serving switches).
    """
    port = free_port()
    if own_batches:
        args = {"batches": {"storage": str(workdir / "batches")}, **(args or {})}
    config = derive_config(load_config(root / "serve_config.yaml"), model=str(model),
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
    haproxy, ports = haproxy_env()
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **ports, **(env or {}),
                "PYTHONPATH": str(root), "EMBEDDINGS_CONFIG": str(config_path),
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env["RAY_ADDRESS"] = "local"  # always a Ray of its own
    if command and Path(command[0]).name == "serve":
        command = [*command, str(config_path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command or LAUNCHER, cwd=root, env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    service = ServeProcess(f"http://127.0.0.1:{port}", process, log_path, haproxy)
    try:
        wait_healthy(service.url, process, log_path, timeout_s)
        yield service
    finally:
        service.stop()


def wait_healthy(base: str, process: subprocess.Popen, log_path: Path, timeout_s: float,
                 ) -> None:
    """Poll ``base``/health until 200; fail with the log's tail if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited early:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"service not healthy in {timeout_s}s:\n{_tail(log_path)}")


@dataclass
class ServeProcess:
    """A running ``serve run``: its base URL, process and log."""

    url: str
    process: subprocess.Popen
    log_path: Path
    haproxy_dir: Path  # where this instance's HAProxy writes its config, if HAProxy runs

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 60) -> int:
        """Signal the launcher alone (it drains and stops Ray), kill the group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                for group in [self.process.pid, *_children(self.process.pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(group, signal.SIGKILL)  # the launcher's session child too
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return _tail(self.log_path)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def replica_pid(deployment: str = "Encoder") -> int:
    """The process of a deployment's (only) replica on this machine."""
    marker = f"ServeReplica:embeddings:{deployment}"
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    return int(proc.name)
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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def abandon(url: str, body: bytes, give_up_s: float, body_apart: bool = False) -> str:
    """POST ``body`` to ``url``'s /v1/embeddings, close the connection after ``give_up_s``;
    the status line's code, or "gave up". ``body_apart``: the body follows the headers in a
    write of its own, as httpx (the openai SDK's client) often sends it."""
    parts = urlsplit(url)
    head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: test\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    if body_apart:
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(body)
    else:
        writer.write(head + body)
    await writer.drain()
    try:
        return (await asyncio.wait_for(reader.readline(), give_up_s)).decode().split()[1]
    except asyncio.TimeoutError:
        return "gave up"
    finally:
        writer.close()
