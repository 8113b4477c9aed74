"""Where a figure was measured: the CPU, its flags that matter here, the code's commit.

Hosts change between sessions (Zen 3 with AVX2, Zen 4 with AVX-512 VNNI, Intel): every
benchmark prints this and writes it into each row of its CSV, so a figure names its host.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from encoder.model.quantize import cpu_flags_of_host

# The flags that change ONNX Runtime's kernels (fp32 and int8) on x86.
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


@cache
def describe_host() -> str:
    """``"<CPU model>, <n> CPUs, flags <...>, commit <sha>[+changes]"``."""
    model = next((line.split(":", 1)[1].strip() for line in
                  _read("/proc/cpuinfo").splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = " ".join(f for f in FLAGS if f in cpu_flags_of_host()) or "none known"
    return f"{model}, {_cpus()} CPUs, flags {flags}, commit {commit()}"


def commit() -> str:
    """The checkout's commit, with ``+changes`` when its tracked files differ from it."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=False).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
