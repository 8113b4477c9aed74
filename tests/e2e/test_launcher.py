"""The launcher (``jina-serve``): graceful stop, Ray cleaned up, Ray started lean, fast failure
when the model cannot be found."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from jina_serve.config import derive_config, load_config
from jina_serve.processes import environment
from tests.clients import wait_until
from tests.marked_processes import marked
from tests.serve_process import ROOT, free_port, haproxy_env, serve_run, start_service

pytestmark = pytest.mark.e2e

# MiniLM (real attention) on half a core: one request of these takes seconds, so requests
# are surely in flight when the signal comes.
TEXTS = [f"passage {i} " + "about a graceful shutdown of the service " * 15 for i in range(80)]


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


def _listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its sockets in /proc/net/tcp, state LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _haproxies(service) -> list[int]:
    return [p.pid for p in marked(service.marker) if Path(p.command.split()[0]).name
            == "haproxy"]


def test_kill_9_then_a_restart_on_its_port_then_sigterm_under_load_leave_nothing(
        minilm_dir, tmp_path):
    """Every way a jina-serve instance ends leaves no process (each check is serve_run's or
    start_service's; every other module's teardown sends SIGINT and checks the same):

    - kill -9 of jina-serve: its session notices, drains and stops all it started;
    - a new jina-serve on the same port waits for the port and serves;
    - SIGTERM (docker stop) under load: requests in flight finish, the launcher exits 0
      within its stop budget, with the shipped 5 s draining period.
    """
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_service(minilm_dir, tmp_path / "a")
    port = int(first.url.rsplit(":", 1)[1])
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    killed = time.monotonic()
    with serve_run(minilm_dir, tmp_path / "b", graceful_s=30, port=port,
                   timeout_s=180 + first.stop_budget_s,
                   env={"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5"}) as second:
        wait_until(lambda: not marked(first.marker), first.stop_budget_s,
                   "the killed launcher's processes to end", every_s=0.5)
        print(f"the killed instance was gone {time.monotonic() - killed:.1f} s after kill -9")
        assert _haproxies(second)  # HAProxy ran, and ran as jina-haproxy configured it
        outcomes, signalled = _stop_under_load(second, signal.SIGTERM)
        assert second.process.returncode == 0, second.log()
        assert time.monotonic() - signalled <= second.stop_budget_s
    _assert_in_flight_completed(outcomes, signalled)


def test_plain_serve_run_takes_the_fast_path(jina_dir, tmp_path):
    """``serve run serve_config.yaml`` with nothing in the environment gets HAProxy, the
    throughput preset and the slower control loop from the config's controller_options, in
    every Serve process; stopped with Ctrl-C it leaves nothing (serve_run's check)."""
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    assert "RAY_SERVE_CONTROL_LOOP_INTERVAL_S" not in os.environ
    with serve_run(jina_dir, tmp_path, command=["serve", "run"]) as service:
        assert httpx.post(f"{service.url}/v1/embeddings", json={"input": "hi"}).status_code == 200
        # HAProxy takes the port (Ray may still be starting or reloading it: wait a little).
        wait_until(lambda: _haproxies(service), 15, "HAProxy to run", every_s=0.5)
        serve_processes = [p for p in marked(service.marker) if p.command.startswith((
            "ray::ServeController", "ray::ProxyActor", "ray::HAProxyManager",
            "ray::ServeReplica"))]
        assert len(serve_processes) >= 5, serve_processes  # controller, proxies, 3 replicas
        for process in serve_processes:
            environ = environment(process.pid)
            assert environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1", process.command
            assert environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1", process.command
            assert environ.get("RAY_SERVE_CONTROL_LOOP_INTERVAL_S") == "0.5", process.command


def test_launcher_starts_ray_lean_and_haproxy_on_the_service_port_alone(jina_service):
    """On a running jina-serve instance: no dashboard modules in the session, the
    controller got the slower loop (the idle background work that lands inside the
    encoder's ONNX runs), and HAProxy listens on the service's port only: no stats page, no
    Prometheus exporter on any address."""
    service = jina_service  # shared: it stops at the end of the run
    commands = {p.pid: p.command for p in marked(service.marker)}
    assert any("raylet" in c for c in commands.values()), commands
    # Without the dashboard Ray keeps only a minimal API server: no frontend, no modules.
    assert not [c for c in commands.values() if c.startswith("ray-dashboard-")], commands
    assert all("--disable-frontend" in c for c in commands.values()
               if "dashboard/dashboard.py" in c), commands
    controller = next(pid for pid, c in commands.items() if c.startswith("ray::ServeCon"))
    assert environment(controller)["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"
    port = int(service.url.rsplit(":", 1)[1])
    haproxies = _haproxies(service)
    assert haproxies and all(_listening_ports(pid) == {port} for pid in haproxies), [
        _listening_ports(pid) for pid in haproxies]
    assert httpx.post(f"{service.url}/v1/embeddings", json={"input": "hi"}).status_code == 200


def test_a_model_that_cannot_be_found_fails_in_seconds_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jina_serve", "--model", "jinaai/not-cached"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - start
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and seconds < 15, (seconds, done.stderr)
    assert len(lines) == 1, done.stderr
    assert "'jinaai/not-cached'" in lines[0] and str(tmp_path / "hf") in lines[0]
    assert "local folder" in lines[0]


def test_prepare_builds_what_the_encoders_serve_and_exits(jina_dir, reranker_dir, tmp_path):
    """``jina-serve --prepare`` (the Dockerfile's build step), on serve_config.rerank.yaml:
    the prepared copy is built beside the model, every model's served file printed (the
    reranker's export as it is), and no Ray is started."""
    model = shutil.copytree(jina_dir, tmp_path / "jina",
                            ignore=shutil.ignore_patterns("*.prep*"))
    config = load_config(ROOT / "serve_config.rerank.yaml")
    extra = config["applications"][0]["args"]["extra_models"][0]
    extra["model"] = str(reranker_dir)
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "jina_serve", "--prepare", "--config",
                           str(path), "--model", str(model)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    prepared, reranker = (Path(line) for line in done.stdout.strip().splitlines()[-2:])
    assert prepared.parent == model / "onnx" and prepared.name.startswith("model.prep2-")
    assert prepared.is_file() and "prepared" in done.stderr and "ray" not in done.stderr.lower()
    assert reranker == reranker_dir / "onnx/model.onnx"


def test_plain_serve_run_names_a_missing_model(tmp_path):
    """``serve run`` itself keeps running after a failed deploy (Ray's behaviour), but the
    builder's error reaches its output at once, instead of replicas failing in a loop."""
    config = derive_config(load_config(ROOT / "serve_config.yaml"), model="jinaai/not-cached",
                           port=free_port())
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "local", **haproxy_env()}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("serve")), "run",
                                    str(path)], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "not-cached" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(1)
        assert "local folder" in log.read_text(errors="replace")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
