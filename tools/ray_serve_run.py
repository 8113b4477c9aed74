"""``serve run <config>``, with a Ray instance it starts itself left without the dashboard.

Ray's dashboard is a head process plus about ten module processes. On an idle 2-core
machine the whole session used 140-155 ms of CPU per second, of which the dashboard took
about 45 (benchmarks/ray_interference.py lists it per process). Every millisecond of it
lands inside the encoder's ONNX runs, which split each matrix product over both cores.
The service does not need the dashboard: the launcher drains and stops Serve through the
controller, and the service exports its own metrics.

``serve run`` calls ``ray.init`` only if Ray is not initialized yet, so initializing it
here first is the supported way to choose how the local instance starts. When
``RAY_ADDRESS`` names a running cluster, ``include_dashboard`` is ignored and that
cluster's dashboard stays as it is.

Usage: ``python -m tools.ray_serve_run <config> [serve run options]``
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Start (or join) Ray without a dashboard, then hand over to ``serve run``."""
    import ray
    from ray.serve.scripts import cli

    ray.init(namespace="serve", include_dashboard=False)
    cli.main(["run", *argv], prog_name="serve")


if __name__ == "__main__":
    main(sys.argv[1:])
