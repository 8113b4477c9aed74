"""The Encoder's autoscaling policy, on Ray's own context and config types (no Ray started).

Ray's custom policies and metrics are young APIs: these tests fail when the context, the
config's ``policy`` key or the default policy they build on change shape.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from deployment import HELD_PARCELS, Encoder, scale_on_held_parcels
from jina_serve.config import derive_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = yaml.safe_load((ROOT / "serve_config.yaml").read_text(encoding="utf-8"))


def _encoder_section(config: dict) -> dict:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == "Encoder")


def _context(held: dict[str, float] | None, replicas: int = 1, handle_calls: float = 0.0,
             queued: float = 0.0, target: float = 16) -> AutoscalingContext:
    # The policy reads ids only as keys: plain strings stand in for Ray's id types.
    deployment = "embeddings#Encoder"
    running = [f"replica-{i}" for i in range(replicas)]
    config = AutoscalingConfig(min_replicas=1, max_replicas=8, target_ongoing_requests=target)
    metrics = {} if held is None else {HELD_PARCELS: {running[i]: v for i, v in
                                                      enumerate(held.values())}}
    return AutoscalingContext(
        deployment_id=deployment, deployment_name="Encoder", app_name="embeddings",
        current_num_replicas=replicas, target_num_replicas=replicas, running_replicas=running,
        total_num_requests=handle_calls, total_queued_requests=queued,
        aggregated_metrics=lambda: metrics, raw_metrics=lambda: {},
        capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=8, policy_state={},
        last_scale_up_time=None, last_scale_down_time=None, current_time=0.0, config=config)


def test_held_batches_not_handle_calls_set_the_replicas() -> None:
    """Four grouped calls carrying 64 queries: 64 / 16 = 4 replicas, not 4 / 16."""
    replicas, _ = scale_on_held_parcels(_context({"a": 64}, handle_calls=4))
    assert replicas == 4


def test_calls_queued_at_handles_add_to_the_load() -> None:
    replicas, _ = scale_on_held_parcels(_context({"a": 16, "b": 16}, replicas=2, queued=32))
    assert replicas == 4


def test_idle_replicas_ask_for_none() -> None:
    replicas, _ = scale_on_held_parcels(_context({"a": 0, "b": 0}, replicas=2, handle_calls=0))
    assert replicas == 0  # Ray's wrapper then applies min_replicas and the downscale delay


def test_without_reports_ray_default_policy_decides() -> None:
    replicas, _ = scale_on_held_parcels(_context(None, handle_calls=48))
    assert replicas == 3


def test_shipped_config_names_the_policy_and_ray_imports_it() -> None:
    autoscaling = _encoder_section(SHIPPED)["autoscaling_config"]
    config = AutoscalingConfig(**autoscaling)
    assert config.policy.policy_function == "deployment:scale_on_held_parcels"
    assert config.policy.get_policy()(_context({"a": 32})) == (2, {})


def test_the_encoder_reports_the_metric_ray_looks_for() -> None:
    # Ray's replica looks up this method by name (custom autoscaling metrics).
    assert callable(Encoder.func_or_class.record_autoscaling_stats)


def test_overriding_autoscaling_bounds_keeps_the_policy() -> None:
    derived = derive_config(SHIPPED, deployments={"Encoder": {"autoscaling_config": {
        "max_replicas": 4}}})
    autoscaling = _encoder_section(derived)["autoscaling_config"]
    assert autoscaling["max_replicas"] == 4
    assert autoscaling["policy"] == _encoder_section(SHIPPED)["autoscaling_config"]["policy"]
