"""``driftnet status``: the lake's status per tenant as a table or JSON, and the exit code."""

from __future__ import annotations

import re
from typing import Any

import orjson

from ingest.lake.status import LakeStatus, TenantStatus
from ingest.metrics.scrape import LoaderLag

STALE_EXIT = 3
"""Exit code when a tenant is staler than --stale-after (1 is an error, 2 a usage error)."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``15m``, ``2h``, ``1d``; ValueError otherwise."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def as_json(status: LakeStatus, loaders: list[LoaderLag]) -> str:
    """The status as one JSON document (rates included)."""
    doc: dict[str, Any] = status.model_dump(mode="json")
    doc["stale"] = status.stale
    doc["loaders"] = [lag.model_dump(mode="json") for lag in loaders]
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def as_table(status: LakeStatus, loaders: list[LoaderLag]) -> str:
    """The status as a fixed-width table, one line per tenant, then the loaders."""
    header = ("tenant", "newest event (UTC)", "age", "1h", "24h", "dup 24h", "quar 24h",
              "quarantine reasons 24h", "files r/e/q", "bytes", "oldest day", "retention")
    rows = [header, *(_row(t) for t in status.tenants)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    if status.stale_after_s is not None:
        stale = status.stale
        lines.append(f"stale (no event for {_age(status.stale_after_s)}): "
                     f"{', '.join(stale) if stale else 'none'}")
    for lag in loaders:
        if lag.error is not None:
            lines.append(f"loader {lag.url}: {lag.error}")
        else:
            flushed = ("" if lag.last_flush_age_s is None
                       else f", last flush {_age(lag.last_flush_age_s)} ago")
            lines.append(f"loader {lag.url}: lag {lag.lag_records} records, "
                         f"{_age(lag.lag_seconds or 0.0)}{flushed}")
    return "\n".join(lines) + "\n"


def _row(t: TenantStatus) -> tuple[str, ...]:
    day = t.last_day
    reasons = ", ".join(f"{r}={n}" for r, n in sorted(day.quarantined_by_reason.items()))
    files = "/".join(str(t.tables[n].files) if n in t.tables else "0"
                     for n in ("raw", "events", "quarantine"))
    nbytes = sum(f.bytes for f in t.tables.values())
    newest = (t.newest_event_received_at.strftime("%Y-%m-%d %H:%M:%S")
              if t.newest_event_received_at else "-")
    retention = (f"{t.retention_days}d (before {t.expires_before})"
                 if t.retention_days is not None else "-")
    return (t.tenant + (" STALE" if t.stale else ""), newest,
            _age(t.age_s) if t.age_s is not None else "-", str(t.last_hour.received),
            str(day.received), _pct(t.duplicate_rate_day), _pct(t.quarantine_rate_day),
            reasons or "-", files, _bytes(nbytes), str(t.oldest_date or "-"), retention)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
