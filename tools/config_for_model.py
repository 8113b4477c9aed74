"""Write a copy of a Serve config with another model (and optionally port and CPU shares).

Usage: ``python -m tools.config_for_model serve_config.yaml MODEL OUT.yaml``
"""

from __future__ import annotations

import sys
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


def main() -> None:
    source, model, out = sys.argv[1:4]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(yaml.safe_dump(derive_config(Path(source), model), sort_keys=False))
    print(out)


if __name__ == "__main__":
    main()
