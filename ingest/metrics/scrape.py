"""Reading a driftnet process's /metrics: the loader's lag, for ``driftnet status``."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

SCRAPE_TIMEOUT_S = 5.0
"""A status check must not hang on an unreachable loader."""
MAX_SCRAPE_BYTES = 16 * 1024 * 1024
"""A /metrics page bigger than this is not a driftnet's."""


class LoaderLag(BaseModel):
    """What one /metrics endpoint says about its loader's lag."""

    url: str
    reachable: bool
    lag_records: int | None = Field(None, description="Records in the transport not yet in "
                                    "the lake, over the loader's partitions.")
    lag_seconds: float | None = Field(None, description="The largest per-partition lag in "
                                      "seconds.")
    last_flush_age_s: float | None = Field(None, description="Seconds since the loader last "
                                           "wrote a batch.")
    error: str | None = None


def loader_lag(url: str) -> LoaderLag:
    """Scrape ``url`` (a /metrics endpoint of `driftnet loader` or `driftnet up`); an
    unreachable or foreign endpoint is reported, never raised."""
    if not url.startswith(("http://", "https://")):
        return LoaderLag(url=url, reachable=False, error="not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:  # noqa: S310
            text = response.read(MAX_SCRAPE_BYTES + 1).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return LoaderLag(url=url, reachable=False, error=str(exc))
    if len(text) > MAX_SCRAPE_BYTES:
        return LoaderLag(url=url, reachable=True, error="the metrics page is too large")
    records = 0.0
    seconds = 0.0
    last_flush: float | None = None
    found = False
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "driftnet_loader_lag_records":
                    records += sample.value
                    found = True
                elif sample.name == "driftnet_loader_lag_seconds":
                    seconds = max(seconds, sample.value)
                elif sample.name == "driftnet_loader_last_flush_timestamp_seconds":
                    last_flush = sample.value
    except ValueError as exc:
        return LoaderLag(url=url, reachable=True, error=f"not Prometheus text: {exc}")
    if not found:
        return LoaderLag(url=url, reachable=True, error="no loader lag there (not a loader, "
                         "or it has not measured its lag yet)")
    return LoaderLag(url=url, reachable=True, lag_records=int(records), lag_seconds=seconds,
                     last_flush_age_s=None if not last_flush else time.time() - last_flush)
