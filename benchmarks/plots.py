"""A benchmark run's rows as CSV and PNG plots (matplotlib, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.host import describe_host

RESULTS = Path(__file__).parent / "results"  # every script's CSV and plot


def write_csv(rows: list[dict], out: Path) -> Path:
    """``rows`` (dicts with the same keys) as a CSV file with a header, each row naming the
    host and commit it was measured on (``host.describe_host``)."""
    rows = [{**row, "host": describe_host()} for row in rows]
    print(f"host: {describe_host()}")
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def plot_throughput(rows: list[dict], title: str, out: Path) -> Path:
    """Texts/s per mode, one panel per workload, one bar colour per precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({r["workload"] for r in rows})
    precisions = sorted({r["precision"] for r in rows})
    fig, axes = plt.subplots(1, len(workloads), figsize=(7 * len(workloads), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        modes = list(dict.fromkeys(r["mode"] for r in rows if r["workload"] == workload))
        width = 0.8 / len(precisions)
        for p, precision in enumerate(precisions):
            values = [next((r["texts_per_s"] for r in rows if r["workload"] == workload
                            and r["mode"] == m and r["precision"] == precision), 0)
                      for m in modes]
            ax.bar([i + p * width for i in range(len(modes))], values, width, label=precision)
        ax.set_xticks([i + width * (len(precisions) - 1) / 2 for i in range(len(modes))])
        ax.set_xticklabels(modes, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("texts/s")
        ax.set_title(f"{title}: {workload}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
