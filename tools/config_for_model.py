"""A Serve config with another model (and optionally port, CPU shares, deployment keys).

Used by the launcher (tools/serve_main.py, EMBEDDINGS_MODEL) and the tests' `serve run`.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def derive_config(
    source: Path,
    model: str,
    *,
    port: int | None = None,
    cpus: dict[str, float] | None = None,
    args: dict | None = None,
    deployments: dict[str, dict] | None = None,
) -> dict:
    """The config in ``source`` with ``args.model`` (and the given overrides) replaced.

    ``deployments`` maps a deployment name to keys that replace its own (e.g. replicas).
    """
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    app = config["applications"][0]
    app["args"]["model"] = str(Path(model).resolve()) if Path(model).exists() else model
    app["args"].update(args or {})
    if port is not None:
        config["http_options"]["port"] = port
    for deployment in app["deployments"]:
        if cpus and deployment["name"] in cpus:
            deployment.setdefault("ray_actor_options", {})["num_cpus"] = cpus[deployment["name"]]
        deployment.update((deployments or {}).get(deployment["name"], {}))
    return config

