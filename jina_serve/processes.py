"""The processes of this host as ``/proc`` shows them: who they are, which process session they
belong to, what they use, and ending a session's last ones.

The launcher runs Ray in a process session of its own and ends whatever of it is left when it
stops; the tests and benchmarks read the same records (CPU time, memory, command lines).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Process:
    """One process: ids, state, command line, CPU seconds so far, resident bytes."""

    pid: int
    ppid: int
    session: int
    state: str
    command: str
    cpu_s: float
    rss: int

    @property
    def alive(self) -> bool:
        """Running or sleeping, not a zombie waiting for its parent."""
        return self.state not in ("Z", "X")


def process(pid: int) -> Process | None:
    """The process ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return Process(pid=pid, ppid=int(fields[1]), session=int(fields[3]), state=fields[0],
                   command=command.replace(b"\0", b" ").decode(errors="replace").strip(),
                   cpu_s=(int(fields[11]) + int(fields[12])) / _TICKS,
                   rss=int(fields[21]) * _PAGE)


def processes() -> list[Process]:
    """Every process on the host now."""
    found = (process(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [p for p in found if p is not None]


def environment(pid: int) -> dict[str, str]:
    """A process's environment at its start (empty if unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                if "=" in item)


def session_members(session: int) -> list[Process]:
    """The live processes of a process session, its leader excepted."""
    return [p for p in processes() if p.session == session and p.pid != session and p.alive]


def end_session(session: int, grace_s: float = 3.0) -> list[Process]:
    """Stop what is left of a process session (its leader excepted): SIGTERM, then SIGKILL
    after ``grace_s``. Returns the processes that had to be stopped."""
    left = session_members(session)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for member in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, sig)
        deadline = time.monotonic() + grace_s
        while session_members(session) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not session_members(session):
            break
    return left


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on ``port`` (of ``host``, or of any address for 0.0.0.0)."""
    address = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((address, port)) == 0


def die_with_parent(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (kept across exec);
    exit at once if the parent is already gone."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(1)


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on every address now."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
