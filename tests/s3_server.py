"""An S3 server (moto in server mode) on 127.0.0.1, reached over HTTP as any S3 would be:
for the tests of the Batch API's and ``jina-embed``'s object-store storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.serve_process import free_port

BUCKET = "embeddings"
# Any credentials do for moto; the service's replicas get them through their environment.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3:
    """A running server: its ``host:port`` and a boto3 client to check objects with."""

    endpoint: str
    client: Any

    def uri(self, path: str) -> str:
        """The ``s3://`` URI of ``path`` in the bucket, as pyarrow reaches this server."""
        return f"s3://{BUCKET}/{path}?endpoint_override={self.endpoint}&scheme=http"


@contextmanager
def s3_server() -> Iterator[S3]:
    """Start the server with an empty ``BUCKET``; this process's environment holds
    ``CREDENTIALS`` meanwhile (pyarrow here reads the bucket too)."""
    endpoint = f"127.0.0.1:{free_port()}"
    host, port = endpoint.split(":")
    server = ThreadedMotoServer(ip_address=host, port=int(port), verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in CREDENTIALS.items():
                patch.setenv(name, value)
            client = boto3.client("s3", endpoint_url=f"http://{endpoint}")
            client.create_bucket(Bucket=BUCKET)
            yield S3(endpoint, client)
    finally:
        server.stop()
