"""``serve run <config>``, with a Ray instance it starts itself left without the dashboard.

Ray's dashboard is a head process plus about ten module processes. On an idle 2-core
machine the whole session used 140-155 ms of CPU per second, of which the dashboard took
about 45 (benchmarks/ray_interference.py lists it per process). Every millisecond of it
lands inside the encoder's ONNX runs, which split each matrix product over both cores.
The service does not need the dashboard: the launcher drains and stops Serve through the
controller, and metrics are exported by each node's metrics agent, which still runs.

``serve run`` calls ``ray.init`` only if Ray is not initialized yet (ray/serve/scripts.py),
so initializing it here first chooses how the local instance starts. Its own ``ray.init``
options (``--address``, ``--runtime-env``, ``--working-dir``) are therefore not applied; the
launcher passes none. When ``RAY_ADDRESS`` names a running cluster, ``include_dashboard``
is ignored and that cluster's dashboard stays as it is.

Usage: ``python -m tools.ray_serve_run <config> [serve run options]``
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

# Ray's name for it: <session dir>/prom_metrics_service_discovery.json.
DISCOVERY_FILE = "prom_metrics_service_discovery.json"


def main(argv: list[str]) -> None:
    """Start (or join) Ray without a dashboard, then hand over to ``serve run``."""
    import ray
    from ray.serve.scripts import cli

    ray.init(namespace="serve", include_dashboard=False)
    # Ray has no public call for "did this driver start the node" or its session folder.
    node = ray._private.worker._global_node
    if node is not None and node.is_head():  # we started it, so no dashboard writes the file
        target = Path(node.get_session_dir_path()) / DISCOVERY_FILE
        threading.Thread(target=write_discovery, args=(target,), daemon=True).start()
    cli.main(["run", *argv], prog_name="serve")


def write_discovery(path: Path, period_s: float = 5.0) -> None:
    """Keep Prometheus's file-based discovery list of metrics agents, as the dashboard does.

    The README points Prometheus's ``file_sd_configs`` at this file; without the dashboard
    nobody else writes it. Atomic replace: Prometheus may read it at any moment.
    """
    import ray

    while True:
        try:
            targets = [f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}"
                       for n in ray.nodes() if n["Alive"]]
        except Exception:  # Ray is shutting down: nothing left to list
            return
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))
        os.replace(partial, path)
        time.sleep(period_s)


if __name__ == "__main__":
    main(sys.argv[1:])
