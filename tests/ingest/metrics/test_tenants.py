"""Bounded tenant labels: at most N tenants by name, the busiest first, sticky."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ingest.metrics.exposition import render
from ingest.metrics.loader import LoaderMetrics
from ingest.metrics.tenants import OTHER, TenantLabels


def test_the_busiest_tenants_of_a_batch_are_admitted_first() -> None:
    labels = TenantLabels(2)
    got = labels.labels({"small": 1, "big": 900, "medium": 50})
    assert got == {"big": "big", "medium": "medium", "small": OTHER}
    # admitted tenants keep their label, however quiet they become; no one else gets one
    assert labels.labels({"small": 10_000, "big": 1}) == {"small": OTHER, "big": "big"}
    assert labels.label("new") == OTHER
    assert labels.admitted == {"big", "medium"}


def test_500_tenants_cost_limit_plus_one_series() -> None:
    registry = CollectorRegistry()
    metrics = LoaderMetrics(registry, TenantLabels(10))
    for i in range(500):
        metrics.written.labels(metrics.tenants.label(f"t{i:03d}")).inc()
    (family,) = [f for f in text_string_to_metric_families(render(registry).decode())
                 if f.name == "driftnet_loader_events_written"]
    values = {s.labels["tenant"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert len(values) == 11 and values[OTHER] == 490
    assert sum(values.values()) == 500


def test_admission_is_thread_safe() -> None:
    labels = TenantLabels(50)
    threads = [threading.Thread(target=lambda k=k: [labels.label(f"{k}-{i}") for i in range(200)])
               for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(labels.admitted) == 50
