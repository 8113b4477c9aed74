"""Served texts/s for several values of one setting, or for several git revisions, alternated.

Each round starts the application once per value (or revision) and drives the same loads,
in A B, B A order, so host drift lands on every contender alike: on a shared 2-core VM it is
larger than most effects. A value replaces one ``args`` key of ``serve_config.yaml`` (dots
reach into groups: ``scheduler.parallel_runs``). A revision is checked out into a temporary
worktree and started with its own launcher and its own ``serve_config.yaml`` (model
replaced): what a user of that revision ran.

    python -m benchmarks.served_ab --setting scheduler.sort_window_tokens --values 512 4096
    python -m benchmarks.served_ab --revisions 153f1ef HEAD \\
        --load short:32x1 short:8x16 long:4x16 short:1x1
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.throughput import model_folder
from benchmarks.workloads import benchmark_texts, parse_load, served
from tests.serve_process import ROOT, serve_run


def parse_value(text: str) -> int | float | str:
    """A YAML-like scalar from the command line: int, then float, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def setting_args(setting: str, value: object) -> dict:
    """``{"a": {"b": value}}`` for ``a.b``."""
    *groups, key = setting.split(".")
    args: dict = {key: value}
    for group in reversed(groups):
        args = {group: args}
    return args


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A detached checkout of ``revision``, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="rev-")) / revision.replace("/", "_")
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), revision], cwd=ROOT,
                   check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT,
                       check=False, capture_output=True)


def launcher(root: Path) -> list[str]:
    """The revision's own start command: ``jina-serve``, or the launcher before it."""
    module = "jina_serve" if (root / "jina_serve").is_dir() else "tools.serve_main"
    return [sys.executable, "-m", module]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-sized")
    parser.add_argument("--setting", default="scheduler.sort_window_tokens",
                        help="an args key (dots for groups)")
    parser.add_argument("--values", type=parse_value, nargs="+", default=[512, 4096])
    parser.add_argument("--revisions", nargs="+", help="compare these commits instead")
    parser.add_argument("--load", nargs="+", default=["short:8x16"],
                        help="workload:CLIENTSxTEXTS, workload short or long")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    folder = model_folder(args.model).resolve()
    texts = benchmark_texts()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    contenders = args.revisions or args.values
    for round_ in range(args.rounds):
        # A B, then B A: whichever starts second in a round ran up to 17% faster here with
        # identical code paths (docs/decisions/scheduler.md), so order must not favour one.
        for contender in contenders if round_ % 2 == 0 else contenders[::-1]:
            with _started(args, contender, folder, workdir) as service:
                for load in args.load:
                    workload, clients, per_request = parse_load(load)
                    result = asyncio.run(served(service.url, texts[workload], clients,
                                                per_request, args.seconds))
                    name = contender if args.revisions else f"{args.setting}={contender}"
                    print(f"round {round_} {name} {load}: "
                          f"{result.texts_per_s:7.2f} texts/s  p50 {result.p50_ms:8.1f} ms  "
                          f"p99 {result.p99_ms:8.1f} ms {result.detail}", flush=True)


@contextmanager
def _started(args: argparse.Namespace, contender, folder: Path, workdir: Path):
    if not args.revisions:
        with serve_run(folder, workdir, args=setting_args(args.setting, contender), cpus=None,
                       timeout_s=900) as service:
            yield service
        return
    with worktree(contender) as root, serve_run(
            folder, workdir, cpus=None, timeout_s=900, command=launcher(root), root=root,
            own_batches=any((root / p).is_file() for p in (
                           "encoder/batch_store.py", "encoder/batches/store.py"))) as service:
        yield service


if __name__ == "__main__":
    main()
