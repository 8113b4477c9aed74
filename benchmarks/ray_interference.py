"""How much does an idle Ray Serve instance slow ONNX runs on the same cores?

Starts the application (serve_config.yaml's layout, idle: no requests) and times one-text
ONNX runs with 2 ORT threads in this process, in interleaved slices: with every process of
the Ray session frozen (SIGSTOP, as if Ray were not on the machine) and with it running.
Interleaving cancels the host's drift, which on a shared 2-core VM is larger than the effect.
It also counts the idle session's wake-ups and CPU time per second, by process, and, in the
same interleaved rounds, times one-text HTTP requests to the service: a lone query's served
latency split into Ray's tax on the run (idle - frozen) and the request path (served - idle).
throughput.py measures raw and served minutes apart, and there host drift swamps the gap.

Where real-time scheduling is permitted it also times the raw run on real-time ORT threads
(``realtime_runs``, as the served encoder runs by default) with Ray idle: the in-process
figure a user could get with the same trick.

``--threads NAME`` also lists that process's idle CPU by thread name (threads Python and
ORT start inherit their creator's name, e.g. ``ray::IDLE``; ``py-spy dump`` maps the ids).

The served encoder pays this tax on every run: MLAS splits each matrix product statically
over the ORT threads, so when a Ray process wakes on one core the other thread waits for it.

Usage: python -m benchmarks.ray_interference [--model jina-sized] [--rounds 6]
           [--env RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5 ...] [--args parallel_runs=1 ...]
           [--threads Encoder]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from benchmarks.throughput import model_folder
from benchmarks.workloads import raw_best_batch, short_queries, single_run_ms
from encoder.model_card import ModelCard
from encoder.runtime import OnnxModel
from encoder.tokenize import TextTokenizer
from tools.serve_main import session_members
from tools.serve_process import serve_run


def cpu_and_slices(pids: list[int]) -> dict[str, tuple[int, int]]:
    """CPU nanoseconds and scheduler time slices so far, summed per process name."""
    totals: dict[str, tuple[int, int]] = {}
    for pid in pids:
        name = _name(pid)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                fields = Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()
                cpu, slices = totals.get(name, (0, 0))
                totals[name] = (cpu + int(fields[0]), slices + int(fields[2]))
    return totals


def cpu_by_thread(pids: list[int], process: str) -> dict[str, int]:
    """CPU nanoseconds so far of each thread name in the processes whose name holds ``process``."""
    totals: dict[str, int] = {}
    for pid in pids:
        if process not in _name(pid):
            continue
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                comm = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
                cpu = int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
                totals[comm] = totals.get(comm, 0) + cpu
    return totals


def _name(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    first = words[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split(".")[0]
    if first.startswith("ray-dashboard-"):  # the dashboard's module processes
        return "ray-dashboard-* modules"
    script = next((w.decode() for w in words[1:3] if w.endswith(b".py")), "")
    if script or not first.endswith("python3"):
        return Path(script or first).name
    return Path(f"/proc/{pid}/comm").read_text().strip()


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jina-sized")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--texts", type=int, default=30, help="ONNX runs per slice")
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for the Ray session")
    parser.add_argument("--args", nargs="*", default=[],
                        help="KEY=VALUE application args (YAML values), e.g. parallel_runs=1")
    parser.add_argument("--threads", default="Encoder",
                        help="list this process's idle CPU per thread name")
    args = parser.parse_args()

    folder = model_folder(args.model)
    card = ModelCard.from_folder(folder)
    task = card.task_id("text-matching") if card.tasks else None
    texts = short_queries(args.texts)  # the raw runs' texts are also the served requests'
    ids = TextTokenizer(folder).encode(texts, card.max_tokens, True)
    model = OnnxModel(folder / "onnx/model.onnx", threads=2)
    realtime = OnnxModel(folder / "onnx/model.onnx", threads=2, realtime=True)
    raw_best_batch(model, card, ids, task, sizes=(8,))  # warm-up
    raw_best_batch(realtime, card, ids, task, sizes=(8,))

    env = dict(item.split("=", 1) for item in args.env)
    app_args = {key: yaml.safe_load(value)
                for key, value in (item.split("=", 1) for item in args.args)}
    with serve_run(folder, Path(tempfile.mkdtemp(prefix="bench-")), args=app_args, cpus=None,
                   timeout_s=900, env=env) as service:
        time.sleep(20)  # let start-up work (first health checks, metrics) settle
        pids = session_members(service.process.pid)  # `serve run` leads its own session
        before, threads0 = cpu_and_slices(pids), cpu_by_thread(pids, args.threads)
        start = time.perf_counter()
        time.sleep(10)
        after, seconds = cpu_and_slices(pids), time.perf_counter() - start
        threads = cpu_by_thread(pids, args.threads)
        wakeups = 0.0
        print(f"idle Ray session ({len(pids)} processes), per second:")
        for name, (cpu, slices) in after.items():
            cpu0, slices0 = before.get(name, (cpu, slices))
            wakeups += (slices - slices0) / seconds
            print(f"  {(slices - slices0) / seconds:6.0f} wake-ups "
                  f"{(cpu - cpu0) / 1e6 / seconds:6.1f} ms CPU  {name}")
        print(f"  {wakeups:6.0f} wake-ups in all")
        print(f"{args.threads} threads, ms CPU per second:")
        used = {comm: (cpu - threads0.get(comm, 0)) / 1e6 / seconds
                for comm, cpu in threads.items()}
        for comm, ms in sorted(used.items(), key=lambda item: -item[1]):
            if ms >= 0.1:
                print(f"  {ms:6.1f}  {comm}")
        frozen, running, running_rt, served = [], [], [], []
        with httpx.Client(timeout=60) as http:
            served_ms(http, service.url, texts[:3])  # warm
            try:
                for _ in range(args.rounds):
                    signal_all(pids, signal.SIGSTOP)
                    frozen.append(single_run_ms(model, card, ids, task))
                    signal_all(pids, signal.SIGCONT)
                    running.append(single_run_ms(model, card, ids, task))
                    if realtime.realtime:
                        running_rt.append(single_run_ms(realtime, card, ids, task))
                    served.append(served_ms(http, service.url, texts))
            finally:
                signal_all(pids, signal.SIGCONT)
    p50_frozen, p50_running, p50_served = (float(np.median(np.concatenate(x)))
                                           for x in (frozen, running, served))
    print(f"one-text ONNX run, p50 over {args.rounds} interleaved rounds: Ray frozen "
          f"{p50_frozen:.1f} ms, Ray idle {p50_running:.1f} ms: +{p50_running - p50_frozen:.1f} "
          f"ms ({p50_running / p50_frozen - 1:+.0%})")
    print(f"one-text request served {p50_served:.1f} ms: {p50_served - p50_frozen:+.1f} ms over "
          f"the raw run (Ray's tax {p50_running - p50_frozen:+.1f}, the request path "
          f"{p50_served - p50_running:+.1f})")
    if running_rt:
        p50_rt = float(np.median(np.concatenate(running_rt)))
        print(f"one-text ONNX run on real-time threads, Ray idle: {p50_rt:.1f} ms; the served "
              f"request {p50_served - p50_rt:+.1f} ms over it")


def served_ms(http: httpx.Client, url: str, texts: list[str]) -> np.ndarray:
    """Milliseconds of one-text requests to the service, one at a time."""
    latencies = []
    for text in texts:
        start = time.perf_counter()
        http.post(f"{url}/v1/embeddings", json={"input": text}).raise_for_status()
        latencies.append(time.perf_counter() - start)
    return np.array(latencies) * 1000


if __name__ == "__main__":
    main()
