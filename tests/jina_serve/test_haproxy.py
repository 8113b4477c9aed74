"""``jina-haproxy`` on the config Ray itself writes: side listeners gone (or on loopback),
request splicing off, a valid config for Ray's bundled HAProxy, and a HAProxy that dies with
its parent. These tests fail when Ray changes what the wrapper relies on."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jina_serve.haproxy import (
    METRICS_SECTION,
    SPLICE_REQUEST,
    STATS_SECTION,
    bundled_haproxy,
    rewrite,
)
from tests.clients import wait_until

SIDE_PORTS = {"RAY_SERVE_HAPROXY_STATS_PORT": "18404", "RAY_SERVE_HAPROXY_METRICS_PORT": "19101"}


@pytest.fixture(scope="module")
def ray_config(tmp_path_factory) -> str:
    """The HAProxy config Ray's own code writes for a Serve instance on port 18888."""
    from ray.serve._private.haproxy import HAProxyApi, HAProxyConfig
    from ray.serve.config import HTTPOptions

    folder = tmp_path_factory.mktemp("haproxy")
    config = HAProxyConfig(http_options=HTTPOptions(host="0.0.0.0", port=18888),
                           socket_path=f"{folder}/admin.sock", server_state_base=str(folder),
                           server_state_file=f"{folder}/state",
                           metrics_socket_path=f"{folder}/metrics.sock")
    api = HAProxyApi(cfg=config, config_file_path=f"{folder}/haproxy.cfg")
    api._generate_config_file_internal()
    return (folder / "haproxy.cfg").read_text()


def haproxy_accepts(config: str, folder: Path) -> None:
    path = folder / "check.cfg"
    path.write_text(config)
    done = subprocess.run([bundled_haproxy(), "-c", "-f", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rays_config_still_has_what_the_wrapper_rewrites(ray_config):
    lines = [line.strip() for line in ray_config.splitlines()]
    assert STATS_SECTION in lines and METRICS_SECTION in lines and SPLICE_REQUEST in lines
    assert "bind :9101" in lines and "bind *:8404" in lines  # every address, fixed ports


def test_side_listeners_and_splicing_are_gone_and_haproxy_takes_the_rest(ray_config, tmp_path):
    rewritten = rewrite(ray_config, {})
    lines = [line.strip() for line in rewritten.splitlines()]
    assert STATS_SECTION not in lines and METRICS_SECTION not in lines
    assert SPLICE_REQUEST not in lines
    assert [line for line in lines if line.startswith("bind ")] == ["bind *:18888"]
    assert rewrite(rewritten, {}) == rewritten
    haproxy_accepts(rewritten, tmp_path)


def test_side_listeners_with_ports_set_listen_on_loopback(ray_config, tmp_path):
    rewritten = rewrite(ray_config, SIDE_PORTS)
    binds = sorted(line.strip() for line in rewritten.splitlines()
                   if line.strip().startswith("bind "))
    assert binds == ["bind *:18888", "bind 127.0.0.1:18404", "bind 127.0.0.1:19101"]
    haproxy_accepts(rewritten, tmp_path)


def test_ray_starts_the_binary_it_is_given_and_locks_the_config_it_writes(monkeypatch):
    from ray.serve._private import haproxy

    monkeypatch.setattr(haproxy, "RAY_SERVE_HAPROXY_BINARY_PATH", sys.executable)
    assert haproxy.get_haproxy_binary() == sys.executable
    writer = inspect.getsource(haproxy.HAProxyApi._generate_config_file_internal)
    assert 'self.config_file_path + ".lock"' in writer and "fcntl.LOCK_EX" in writer
    starter = inspect.getsource(haproxy.HAProxyApi._start_and_wait_for_haproxy)
    assert '"-f", self.config_file_path' in starter


def test_what_the_wrapper_execs_dies_with_its_parent(tmp_path):
    """A parent that starts the wrapper's child and is then killed with SIGKILL takes the
    child with it (the kernel's parent-death signal, kept across exec)."""
    pid_file = tmp_path / "child.pid"
    child = ("import os, time; from jina_serve.processes import die_with_parent; "
             f"die_with_parent(9); open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
             "time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"subprocess.Popen([sys.executable, '-c', {child!r}]); "
                               "time.sleep(120)"], env={**os.environ, "PYTHONPATH": os.getcwd()})
    grandchild = int(wait_until(lambda: pid_file.is_file() and pid_file.read_text(), 30,
                                "the child to start"))
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def gone() -> bool:
        try:
            state = Path(f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state == "Z"

    wait_until(gone, 10, "the child to die with its parent", every_s=0.1)


def test_the_haproxy_it_execs_is_never_itself(monkeypatch):
    wrapper = Path(sys.executable).with_name("jina-haproxy")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(wrapper))
    binary = bundled_haproxy()
    assert Path(binary).name == "haproxy" and Path(binary) != wrapper
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "HAProxy version" in done.stdout
