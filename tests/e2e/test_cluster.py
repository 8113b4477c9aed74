"""A 2-node Ray cluster on this machine (tests/local_cluster.py), the service deployed with
``serve deploy``: load scales the encoders from 1 to 2 replicas, one per node, both serving,
and idleness scales them back to 1. Then a bulk job (``jina-embed`` with ``RAY_ADDRESS``)
runs its encoder actors on both nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jina_serve.launcher import instance_ports_env
from tests.clients import wait_until
from tests.local_cluster import ClusterPorts, LocalCluster, cluster_config
from tests.serve_process import free_port, haproxy_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Fast enough to watch in a test; the shipped defaults react in ~30 s instead.
SCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
           "upscale_delay_s": 2, "downscale_delay_s": 6, "look_back_period_s": 2}
# How often handles and replicas report load to the autoscaler (metrics_interval_s's successor).
PUSH_INTERVALS = {"RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
                  "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}
TEXT = "a passage long enough to keep the encoders busy for a little while " * 6


def _token() -> str:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", str(Path.home() / ".ray/auth_token"))
    return Path(path).read_text().strip()


class Cluster:
    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.url = f"http://127.0.0.1:{local.ports.http}"

    def replicas(self) -> list[tuple[str, str]]:
        """(node id, state) of each Encoder replica, from the dashboard's Serve API."""
        response = httpx.get(f"{self.local.dashboard_url}/api/serve/applications/",
                             headers={"Authorization": f"Bearer {_token()}"}, timeout=10)
        app = response.json()["applications"].get("embeddings") or {}
        encoder = app.get("deployments", {}).get("Encoder", {})
        return [(r.get("node_id") or "", r["state"]) for r in encoder.get("replicas", [])]

    def running(self) -> list[str]:
        return [node for node, state in self.replicas() if state == "RUNNING"]

    def runs_per_replica(self) -> Counter:
        """ONNX runs per Encoder replica, summed over both nodes' metrics agents."""
        runs: Counter = Counter()
        for port in self.local.ports.metrics:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("ray_embeddings_run_sequences_count{"):
                    replica = line.split('replica="', 1)[1].split('"', 1)[0]
                    runs[replica] += float(line.rsplit(" ", 1)[1])
        return runs


@pytest.fixture(scope="module")
def cluster(minilm_dir):
    # A model with real compute: with jina-tiny's ~0 the ingress, not the encoders, was the
    # bottleneck, the encoders held little work, and scaling out came after 13 s to over 90 s.
    ports = ClusterPorts(gcs=free_port(), dashboard=free_port(), http=free_port(),
                         metrics=(free_port(), free_port()), agent=(free_port(), free_port()))
    # Short: Ray's unix sockets live under the temp dir, and their paths are capped at 107.
    temp_root = Path(tempfile.mkdtemp(prefix="raycl-"))
    # 2 logical CPUs per node: an Encoder of 1.2 fits once per node, and a bulk job's file
    # listing (a whole CPU, Ray Data's fixed choice) still finds room beside it.
    local = LocalCluster(ports=ports, temp_root=temp_root, cpus_per_node=2,
                         extra_env={"RAY_metrics_report_interval_ms": "1000", **PUSH_INTERVALS,
                                    **haproxy_env(), **instance_ports_env(ports.http)})
    try:
        local.up()
        local.deploy(cluster_config(str(minilm_dir), encoder_cpus=1.2, http_port=ports.http,
                                    deployments={"Encoder": {"autoscaling_config": SCALING}}))
        running = Cluster(local)
        wait_until(lambda: _healthy(running.url), 180, "the service to answer /health")
        yield running
    finally:
        local.down()
        shutil.rmtree(temp_root, ignore_errors=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_nodes_and_one_encoder_at_rest(cluster):
    assert len(cluster.running()) == 1
    response = httpx.post(f"{cluster.url}/v1/embeddings", json={"input": "hello cluster"})
    assert response.status_code == 200


def test_a_bulk_job_runs_on_both_nodes(cluster, jina_dir, tmp_path):
    # Before the scaling test: its second Encoder would still be stopping, holding a node.
    corpus = tmp_path / "corpus.parquet"
    texts = [f"{TEXT} {i}" for i in range(1200)]
    pq.write_table(pa.table({"id": list(range(1200)), "text": texts}), corpus,
                   row_group_size=50)  # 24 blocks to share out
    env = {**cluster.local.env, "RAY_ADDRESS": f"127.0.0.1:{cluster.local.ports.gcs}"}
    done = subprocess.run([str(Path(sys.executable).with_name("jina-embed")), "--input",
                           str(corpus), "--output", str(tmp_path / "out"), "--model",
                           str(jina_dir), "--actors", "2", "--actor-cpus", "0.3",
                           "--batch-size", "25"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "_jina_embed_summary.json").read_text())
    assert summary["rows"] == 1200 and summary["failed_rows"] == 0
    assert pq.read_table(tmp_path / "out" / "corpus").num_rows == 1200
    # Which nodes ran the encoder actors' batches (Ray's state API, through the dashboard).
    listed = subprocess.run([str(Path(sys.executable).with_name("ray")), "list", "tasks",
                             "--address", cluster.local.dashboard_url, "--format", "json",
                             "--limit", "10000", "--detail"], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    nodes = {t["node_id"] for t in json.loads(listed.stdout)
             if "MapBatches(RowEncoder)" in t.get("name", "") and t.get("node_id")}
    actors = subprocess.run([str(Path(sys.executable).with_name("ray")), "list", "actors",
                             "--address", cluster.local.dashboard_url, "--format", "json",
                             "--limit", "1000", "--detail"], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    placed = [(a.get("class_name"), a.get("node_id"), a.get("state"))
              for a in json.loads(actors.stdout) if "MapWorker" in a.get("class_name", "")]
    assert len(nodes) == 2, (nodes, placed)


def test_load_scales_encoders_onto_both_nodes_and_idleness_back(cluster):
    stop, results = threading.Event(), Counter()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                response = http.post(f"{cluster.url}/v1/embeddings", json={"input": [TEXT] * 4})
                results[response.status_code] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(12)]
    for thread in threads:
        thread.start()
    try:
        nodes = wait_until(lambda: len(set(cluster.running())) == 2 and cluster.running(), 90,
                      "a second Encoder replica on the second node")
        assert len(set(nodes)) == 2  # one replica per node: 1.2 CPU each on 2-CPU nodes
        before = cluster.runs_per_replica()
        # Both replicas serve: each one's ONNX-run count keeps rising under load.
        wait_until(lambda: sum(1 for r, n in cluster.runs_per_replica().items()
                          if n > before.get(r, 0)) == 2, 60, "both replicas to run batches")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(results) == {200}, results
    wait_until(lambda: len(cluster.replicas()) == 1, 90, "the encoders to scale back to 1")
