"""The Prometheus config, alert rules and Grafana dashboard hold together with the code.

Every metric they read is one driftnet exposes, every metric driftnet exposes is documented
in docs/operations.md, and docker-compose.yml mounts them where Prometheus and Grafana look.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from ingest.metrics.collector import CollectorMetrics
from ingest.metrics.config import MetricsSettings
from ingest.metrics.lake import MaintainMetrics
from ingest.metrics.loader import LoaderMetrics
from ingest.metrics.tenants import TenantLabels
from tests.support import ROOT

DOCS = ROOT / "docs"
NAME = re.compile(r"\bdriftnet_[a-z_]+\b")


class _Spooling:
    def spool_state(self) -> tuple[int, int, int, float | None]:
        return 1, 10, 100, 2.0


def _exposed() -> tuple[set[str], set[str]]:
    """(family names, sample names) of every metric driftnet registers."""
    registry = CollectorRegistry()
    labels = TenantLabels(5)
    CollectorMetrics(registry, labels).watch_spool(_Spooling)
    LoaderMetrics(registry, labels)
    MaintainMetrics(registry)
    families, samples = set(), set()
    for family in registry.collect():
        families.add(family.name)
        kind = family.type
        if kind == "counter":
            samples.add(f"{family.name}_total")
        elif kind == "histogram":
            samples.update(f"{family.name}_{s}" for s in ("bucket", "count", "sum"))
        else:
            samples.add(family.name)
    return families, samples


FAMILIES, SAMPLES = _exposed()


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_every_metric_is_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    missing = sorted(f for f in FAMILIES if f not in text)
    assert not missing, f"docs/operations.md does not list {missing}"


def test_alert_rules_read_only_exposed_metrics() -> None:
    doc = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {"DriftnetTenantStale", "DriftnetQuarantineRateHigh", "DriftnetSpoolFilling",
            "DriftnetLoaderLagGrowing"} <= {r["alert"] for r in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        used = set(NAME.findall(rule["expr"]))
        assert used <= SAMPLES, (rule["alert"], used - SAMPLES)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        text = (DOCS / "operations.md").read_text()
        assert rule["alert"] in text, f"{rule['alert']} is not explained in docs/operations.md"


def test_dashboard_reads_only_exposed_metrics() -> None:
    dash = orjson.loads((DOCS / "grafana" / "driftnet.json").read_bytes())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        used = set(NAME.findall(expr))
        assert used and used <= SAMPLES, (expr, used - SAMPLES)
        assert expr.count("(") == expr.count(")"), expr
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("job", ["driftnet-collector", "driftnet-loader", "driftnet-maintain"])
def test_prometheus_scrapes_every_driftnet_service_on_its_port(job: str) -> None:
    config = yaml.safe_load((DOCS / "prometheus" / "prometheus.yml").read_text())
    (scrape,) = [j for j in config["scrape_configs"] if j["job_name"] == job]
    (sd,) = scrape["dns_sd_configs"]
    (service,) = sd["names"]
    compose = _compose()["services"]
    assert service in compose
    command = compose[service]["command"]
    if "--port" in command:  # the collector serves /metrics on its own port
        assert sd["port"] == int(command[command.index("--port") + 1])
    else:  # loader and maintain: their metrics listener, reachable from other containers
        assert sd["port"] == MetricsSettings().port
        assert compose[service]["environment"]["DRIFTNET_METRICS__HOST"] == "0.0.0.0"


def test_compose_mounts_the_monitoring_files() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((DOCS / "prometheus" / "prometheus.yml").read_text())
    mounts = {target: source for source, target, *_ in
              (v.split(":") for v in services["prometheus"]["volumes"] if v.startswith("./"))}
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert mounts["/etc/prometheus/prometheus.yml"] == "./docs/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        assert (ROOT / mounts[rule_file]).is_file()
    for volume in services["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
