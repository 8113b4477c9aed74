"""deploy/rayservice.yaml stays in step with serve_config.yaml, the Dockerfile and Ray's pin.

No Ray, no cluster: the manifest and the files it copies are parsed and compared.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


MANIFEST = _load("deploy/rayservice.yaml")
CLUSTER = MANIFEST["spec"]["rayClusterConfig"]
SERVE = _load("serve_config.yaml")
DEPLOYMENTS = {d["name"]: d for d in SERVE["applications"][0]["deployments"]}
ENCODER_CPUS = DEPLOYMENTS["Encoder"]["ray_actor_options"]["num_cpus"]


def _cpus(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ("2", "1500m", 2) in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _groups() -> list[tuple[dict, dict]]:
    """(group spec, Ray container) for the head group, then every worker group."""
    groups = [CLUSTER["headGroupSpec"], *CLUSTER["workerGroupSpecs"]]
    return [(g, g["template"]["spec"]["containers"][0]) for g in groups]


def test_serve_config_v2_is_serve_config_yaml() -> None:
    """Same applications, deployments, args, proxy and HTTP options: no difference allowed.

    serve_config.yaml's ``http_options.host: 0.0.0.0`` is also what KubeRay needs, so the
    manifest carries the file unchanged (comments aside).
    """
    assert yaml.safe_load(MANIFEST["spec"]["serveConfigV2"]) == SERVE


def test_worker_groups_reserve_the_encoders_cpus() -> None:
    """Each worker pod fits an Encoder, Ray sees what Kubernetes reserved, and the groups
    can hold max_replicas encoders; the head's logical CPUs never fit one."""
    capacity = 0
    for group, container in _groups()[1:]:
        request = _cpus(container["resources"]["requests"]["cpu"])
        ray_cpus = int(group["rayStartParams"]["num-cpus"])
        assert request >= ENCODER_CPUS, group["groupName"]
        assert ray_cpus == request, group["groupName"]
        capacity += group["maxReplicas"] * math.floor(ray_cpus / ENCODER_CPUS)
    autoscaling = DEPLOYMENTS["Encoder"].get("autoscaling_config", {})
    wanted = autoscaling.get("max_replicas", DEPLOYMENTS["Encoder"].get("num_replicas", 1))
    assert capacity >= wanted
    head_cpus = int(CLUSTER["headGroupSpec"]["rayStartParams"]["num-cpus"])
    assert head_cpus < ENCODER_CPUS


def test_every_pod_exposes_the_serve_port() -> None:
    """KubeRay's Service and probes use the container port named "serve"."""
    port = SERVE["http_options"]["port"]
    for _, container in _groups():
        assert {"name": "serve", "containerPort": port} in container["ports"]
    assert MANIFEST["spec"]["serveService"]["spec"]["ports"][0]["port"] == port


def test_image_working_dir_and_ray_version_match_the_build() -> None:
    """The image is the Dockerfile's documented tag, run from its WORKDIR with the code on
    PYTHONPATH, and rayVersion is requirements.txt's pin (KubeRay picks probes by it)."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    tag = re.search(r"docker build -t (\S+) \.", dockerfile).group(1)
    workdir = re.search(r"^WORKDIR (\S+)$", dockerfile, re.MULTILINE).group(1)
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    pin = re.search(r"^ray\[[a-z,]+\]==(\S+)$", requirements, re.MULTILINE).group(1)
    assert CLUSTER["rayVersion"] == pin
    for _, container in _groups():
        assert container["image"].split(":")[0] == tag
        assert container["workingDir"] == workdir
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PYTHONPATH"] == workdir


def test_the_rerank_config_is_the_shipped_one_plus_a_reranker() -> None:
    """serve_config.rerank.yaml (which deploy/kubernetes.md swaps into serveConfigV2) keeps
    the shipped file's serving options and deployments; it adds the reranker, its
    deployment, and splits the cores between the two encoders."""
    rerank = _load("serve_config.rerank.yaml")
    for key in ("proxy_location", "controller_options", "http_options"):
        assert rerank[key] == SERVE[key], key
    app, shipped = rerank["applications"][0], SERVE["applications"][0]
    assert {k: v for k, v in app.items() if k != "deployments"} | {"args": None} == {
        k: v for k, v in shipped.items() if k != "deployments"} | {"args": None}
    assert app["args"]["model"] == shipped["args"]["model"]
    (extra,) = app["args"]["extra_models"]
    ours = {d["name"]: d for d in app["deployments"]}
    assert set(ours) == set(DEPLOYMENTS) | {extra["deployment"]}
    for name in ("Ingress", "BatchWorker"):
        assert ours[name] == DEPLOYMENTS[name], name

    def without_resources(deployment: dict) -> dict:
        options = {k: v for k, v in deployment["ray_actor_options"].items()
                   if k not in ("num_cpus", "memory")}
        return {**deployment, "name": None, "ray_actor_options": options}

    assert without_resources(ours["Encoder"]) == without_resources(DEPLOYMENTS["Encoder"])
    assert without_resources(ours[extra["deployment"]]) == without_resources(
        DEPLOYMENTS["Encoder"])
    cpus = sum(d["ray_actor_options"]["num_cpus"] for d in ours.values())
    assert cpus <= sum(d["ray_actor_options"]["num_cpus"] for d in DEPLOYMENTS.values())
