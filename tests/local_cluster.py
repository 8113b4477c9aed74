"""A 2-node Ray cluster on one machine, with the service deployed by ``serve deploy``.

What a multi-node deployment looks like, without a second machine: a head node and a worker
node (each its own raylet, temp dir, CPUs and metrics port), then ``serve deploy`` of
serve_config.yaml through the head's dashboard. Both nodes share this host's IP, so only the
head runs an HTTP proxy (``proxy_location: HeadOnly``); on real machines keep ``EveryNode``.

    python -m tests.local_cluster up [--model models/jina-tiny] [--encoder-cpus 1.2]
    python -m tests.local_cluster status
    python -m tests.local_cluster down

Ray's token authentication is on (``RAY_AUTH_MODE=token``; off by default): every node and the
``serve`` CLI read the token from ``~/.ray/auth_token``, which ``up`` creates if missing
(``ray start`` refuses to, unlike ``ray.init``: on a fresh machine it would fail).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from jina_serve.config import derive_config, load_config
from jina_serve.launcher import SERVE_ENV_DEFAULTS
from tests.marked_processes import end_marked

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER_MARKER = "JINA_LOCAL_CLUSTER"


@dataclass(frozen=True)
class ClusterPorts:
    """Ports of the two nodes: each raylet needs its own agent, metrics and worker ports."""

    gcs: int = 6390
    dashboard: int = 8265
    http: int = 10002
    metrics: tuple[int, int] = (18080, 18081)
    agent: tuple[int, int] = (52365, 52366)
    # Ray's default worker range (10002-19999) holds the service's own port 10002.
    workers: tuple[tuple[int, int], tuple[int, int]] = ((20000, 20999), (21000, 21999))


@dataclass
class LocalCluster:
    """Start, deploy to and stop the cluster; ``env`` is what every Ray process inherits."""

    ports: ClusterPorts = field(default_factory=ClusterPorts)
    cpus_per_node: int = 2
    temp_root: Path = Path(tempfile.gettempdir())
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        # The code is on every node's path, as in the Docker image; nothing is uploaded.
        # Every process of the cluster carries CLUSTER_MARKER: down() ends those alone.
        return {**SERVE_ENV_DEFAULTS, **os.environ, "PYTHONPATH": str(ROOT),
                "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                CLUSTER_MARKER: str(self.ports.gcs), **self.extra_env}

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    def up(self) -> None:
        """Start the head, then the second node with its own temp dir and resources."""
        p = self.ports
        subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=self.env,
                       cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        common = [f"--num-cpus={self.cpus_per_node}", "--object-store-memory=300000000",
                  "--disable-usage-stats"]
        self._ray("start", "--head", f"--port={p.gcs}", "--dashboard-host=127.0.0.1",
                  f"--dashboard-port={p.dashboard}", f"--metrics-export-port={p.metrics[0]}",
                  f"--dashboard-agent-listen-port={p.agent[0]}",
                  f"--min-worker-port={p.workers[0][0]}", f"--max-worker-port={p.workers[0][1]}",
                  f"--temp-dir={self.temp_root / 'ray-cluster-head'}", *common)
        self._ray("start", f"--address=127.0.0.1:{p.gcs}", '--resources={"second_node": 1}',
                  f"--metrics-export-port={p.metrics[1]}",
                  f"--dashboard-agent-listen-port={p.agent[1]}",
                  f"--min-worker-port={p.workers[1][0]}", f"--max-worker-port={p.workers[1][1]}",
                  f"--temp-dir={self.temp_root / 'ray-cluster-node2'}", *common)

    def deploy(self, config: dict) -> None:
        """``serve deploy`` a config dict through the head's dashboard."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        subprocess.run([str(BIN / "serve"), "deploy", handle.name, "--address",
                        self.dashboard_url], env=self.env, check=True, cwd=ROOT)

    def down(self) -> None:
        """End the cluster's processes, Serve's and HAProxy included: those carrying its
        marker (``ray stop`` would end every Ray on the host, other Serve instances' too)."""
        end_marked(CLUSTER_MARKER, str(self.ports.gcs))

    def status(self) -> str:
        """``serve status`` of the cluster."""
        return subprocess.run([str(BIN / "serve"), "status", "--address", self.dashboard_url],
                              env=self.env, capture_output=True, text=True, check=False).stdout

    def _ray(self, *args: str) -> None:
        subprocess.run([str(BIN / "ray"), *args], env=self.env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, start_new_session=True)


def cluster_config(model: str, encoder_cpus: float, http_port: int = 10002,
                   deployments: dict[str, dict] | None = None) -> dict:
    """serve_config.yaml for this cluster: one proxy on the head, encoders sized to nodes."""
    config = derive_config(load_config(ROOT / "serve_config.yaml"), model=model,
                           port=http_port, cpus={"Ingress": 0.1, "Encoder": encoder_cpus},
                           deployments=deployments)
    config["proxy_location"] = "HeadOnly"  # the nodes share one IP and port
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "status", "down"])
    parser.add_argument("--model", default="jinaai/jina-embeddings-v3")
    parser.add_argument("--encoder-cpus", type=float, default=1.2,
                        help="Encoder num_cpus: above half a node puts one replica per node")
    parser.add_argument("--max-replicas", type=int, default=2)
    args = parser.parse_args()
    cluster = LocalCluster()
    if args.command == "up":
        cluster.up()
        scaling = {"min_replicas": 1, "max_replicas": args.max_replicas,
                   "target_ongoing_requests": 16}
        cluster.deploy(cluster_config(args.model, args.encoder_cpus,
                                      deployments={"Encoder": {"autoscaling_config": scaling}}))
        print(json.dumps({"http": f"http://127.0.0.1:{cluster.ports.http}",
                          "dashboard": cluster.dashboard_url}))
    elif args.command == "status":
        print(cluster.status())
    else:
        cluster.down()


if __name__ == "__main__":
    main()
