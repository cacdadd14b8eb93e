"""A real S3-compatible server for tests: moto's server (``moto[server]``), on loopback.

One server per test session; each test gets its own bucket. The credentials and endpoint go
to the environment the way a deployment sets them (``AWS_ACCESS_KEY_ID``...,
``AWS_ENDPOINT_URL``), for this process (delta-rs, pyarrow) and for driftnet subprocesses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import free_port


def s3_environment(endpoint: str) -> dict[str, str]:
    """What a driftnet process needs to reach the test server."""
    return {
        "AWS_ACCESS_KEY_ID": "driftnet-test", "AWS_SECRET_ACCESS_KEY": "driftnet-test-secret",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
    }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint of a moto S3 server started for the session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's environment for the server, also applied to this process."""
    env = s3_environment(s3_endpoint)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_lake(s3_env: dict[str, str]) -> str:
    """``s3://<a new bucket>/lake``."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"
