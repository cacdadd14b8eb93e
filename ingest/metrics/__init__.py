"""Prometheus metrics of the collector, the loader and the lake's maintenance.

One registry per process (``driftnet up`` shares one between its collector and loader);
tenant labels are bounded (:mod:`ingest.metrics.tenants`). docs/operations.md lists every
metric, and the alerts and dashboard built on them.
"""
