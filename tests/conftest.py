"""Shared fixtures: isolated environment, a tenants file, a running `driftnet up`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.tenants import Tenants, load_tenants
from tests.support import TEST_TENANTS, Server

pytest_plugins = ["tests.kafka_broker", "tests.s3"]  # test Kafka broker and S3 server


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DRIFTNET_* setting of the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("DRIFTNET_") and name != "DRIFTNET_TEST_KAFKA":
            monkeypatch.delenv(name)


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(TEST_TENANTS)
    return path


@pytest.fixture
def tenants(tenants_file: Path) -> Tenants:
    return load_tenants(tenants_file)


@pytest.fixture
def server(tmp_path: Path, tenants_file: Path) -> Iterator[Server]:
    """A fresh `driftnet up` on a loopback port with its own lake and log."""
    srv = Server(tmp_path, tenants_file).start()
    yield srv
    code = srv.stop()
    assert code == 0, f"driftnet up exited {code}:\n{srv.logs()[-3000:]}"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `driftnet up` for a whole module (tests must not assume an empty lake)."""
    workdir = tmp_path_factory.mktemp("shared-server")
    tenants_path = workdir / "tenants.toml"
    tenants_path.write_text(TEST_TENANTS)
    srv = Server(workdir, tenants_path).start()
    yield srv
    code = srv.stop()
    assert code == 0, f"driftnet up exited {code}:\n{srv.logs()[-3000:]}"
