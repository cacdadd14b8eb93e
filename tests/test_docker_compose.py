"""docker-compose.yml and the Dockerfile hold together (no Docker engine runs here).

Checked: the services the issue asks for, that every driftnet command in the file is one the
CLI accepts, that the environment is valid driftnet settings, that the advertised Kafka
listener is the one driftnet dials, and that volumes and mounts point at real things.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from driftnet.cli import main
from ingest.settings import load_settings
from tests.support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_kafka_is_the_official_image_in_kraft_mode_with_a_healthcheck(compose: dict[str, Any]
                                                                      ) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert kafka["healthcheck"]["test"]
    assert "kafka-data" in compose["volumes"]


def _driftnet_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def test_collector_and_loader_wait_for_a_healthy_kafka_they_can_reach(
        compose: dict[str, Any]) -> None:
    services = _driftnet_services(compose)
    assert set(services) == {"collector", "loader", "maintain"}
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name, service in services.items():
        assert service["build"] == ".", name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        bootstrap = service["environment"]["DRIFTNET_KAFKA__BOOTSTRAP_SERVERS"]
        assert f"//{bootstrap}" in advertised, (name, bootstrap)


def test_collectors_scale_out(compose: dict[str, Any]) -> None:
    collector = compose["services"]["collector"]
    assert collector["deploy"]["replicas"] >= 2
    # a published port range, so that every replica gets a host port
    (ports,) = collector["ports"]
    host, container = ports.rsplit(":", 1)
    low, high = (int(p) for p in host.split("-"))
    assert container == "8080" and high - low + 1 >= collector["deploy"]["replicas"]
    assert collector["healthcheck"]["test"]


def test_the_lake_is_a_bucket_of_the_object_store_and_the_tenants_file_is_mounted(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio:") and minio["healthcheck"]["test"]
    bucket = services["minio-bucket"]
    assert "mc mb --ignore-existing lake/driftnet" in bucket["entrypoint"][-1]
    for name in ("loader", "maintain"):
        command = services[name]["command"]
        assert command[command.index("--lake") + 1] == "s3://driftnet/lake", name
        # no local volume holds the lake or any state: loaders and maintain are stateless
        assert all(v.endswith(":ro") for v in services[name]["volumes"]), name
        deps = services[name]["depends_on"]
        assert deps["minio-bucket"]["condition"] == "service_completed_successfully"
    assert services["loader"]["deploy"]["replicas"] >= 2
    assert services["maintain"]["deploy"]["replicas"] == 1  # one maintenance task per lake
    env = services["loader"]["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    for name, service in _driftnet_services(compose).items():
        mounts = [v for v in service["volumes"] if v.endswith(":ro")]
        assert mounts, name
        source, target, _ = mounts[0].split(":")
        assert (ROOT / source).is_file()
        assert target in service["command"], name


def test_every_command_is_one_the_cli_accepts(compose: dict[str, Any]) -> None:
    for name, service in _driftnet_services(compose).items():
        command = service["command"]
        sub = main.get_command(click.Context(main), command[0])
        assert sub is not None, name
        sub.make_context(command[0], list(command[1:]))  # raises on an unknown or missing flag


def test_the_environment_is_valid_driftnet_settings(compose: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for service in _driftnet_services(compose).values():
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))  # AWS_* are not driftnet settings: ignored
        settings = load_settings()
        assert settings.uses_kafka
        assert settings.kafka.partitions == 6


def test_the_image_runs_driftnet_as_an_unprivileged_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["driftnet"\]$', text, re.M)
    assert re.search(r"^USER driftnet$", text, re.M)
    for package in ("schemas", "ingest", "analytics", "driftnet"):
        assert f"COPY {package} ./{package}" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "lake" in ignored
    assert Path(ROOT / "pyproject.toml").is_file()
