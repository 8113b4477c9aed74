"""The Serve config file: where it is, and a copy with a few keys replaced."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

CONFIG_NAME = "serve_config.yaml"
# Where `pip install` puts the shipped config (pyproject.toml's data-files).
INSTALLED_CONFIG = Path(sys.prefix) / "share" / "jina-embeddings-serve" / CONFIG_NAME


def default_config() -> Path:
    """``serve_config.yaml`` in the working folder, else the copy installed with the package."""
    local = Path(CONFIG_NAME)
    return local if local.is_file() or not INSTALLED_CONFIG.is_file() else INSTALLED_CONFIG


def load_config(path: Path) -> dict[str, Any]:
    """The config as a dict (a ``ServeDeploySchema`` document)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def derive_config(
    config: dict[str, Any],
    *,
    model: str | None = None,
    host: str | None = None,
    port: int | None = None,
    args: dict[str, Any] | None = None,
    cpus: dict[str, float] | None = None,
    deployments: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """A copy of ``config`` with the first application's ``args.model`` (a folder made
    absolute, as replicas may run elsewhere), other ``args``, the HTTP host/port, the
    deployments' ``num_cpus`` and any deployment keys (``deployments``: name -> keys)
    replaced; mappings (``autoscaling_config``) are updated, not replaced; a deployment the
    config does not list yet is added."""
    config = yaml.safe_load(yaml.safe_dump(config))  # a deep copy of plain YAML data
    app = config["applications"][0]
    app_args = app.setdefault("args", {})
    if model:
        app_args["model"] = str(Path(model).resolve()) if Path(model).exists() else model
    _update(app_args, args or {})
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    listed = app.setdefault("deployments", [])
    names = {d["name"] for d in listed}
    listed += [{"name": name} for name in [*(deployments or {}), *(cpus or {})]
               if name not in names and not names.add(name)]
    for deployment in listed:
        if cpus and deployment["name"] in cpus:
            deployment.setdefault("ray_actor_options", {})["num_cpus"] = cpus[deployment["name"]]
        _update(deployment, (deployments or {}).get(deployment["name"], {}))
    return config


def _update(mapping: dict[str, Any], changes: dict[str, Any]) -> None:
    """Set ``changes`` in ``mapping``, updating (not replacing) mappings one level down."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(mapping.get(key), dict):
            mapping[key] = {**mapping[key], **value}
        else:
            mapping[key] = value


def app_args(config: dict[str, Any]) -> dict[str, Any]:
    """The first application's ``args``."""
    return config["applications"][0].get("args", {})
