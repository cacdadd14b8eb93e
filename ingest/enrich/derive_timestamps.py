"""derive_timestamps: the best estimate of when an event happened, and a flag when the
client's clock is implausible.

Like Snowplow's derived_tstamp: when the client sent both its event time and its send
time, their difference is the time the event waited on the device, which does not depend
on the device clock being right: derived = received_at - (sent_ts - client_ts). The pair is
trusted only when it is *sound*: both present, sent_ts >= client_ts, and the wait no longer
than ``max_queue_days`` (an offline queue, not a broken clock).

Otherwise derived_ts is client_ts when that is plausible, else received_at. ``ts_flag`` is
``future`` when client_ts is more than ``max_future_minutes`` after received_at, ``past``
when it is more than ``max_past_days`` before it (e.g. a device clock set years back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from ingest.enrich import Batch, replace_columns
from ingest.enrich.config import TimestampSettings


def _micros(minutes: float) -> int:
    return round(minutes * 60_000_000)


@dataclass(frozen=True)
class DeriveTimestamps:
    """The derive_timestamps step (always on: derived_ts is never NULL)."""

    settings: TimestampSettings = field(default_factory=TimestampSettings)

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Fill derived_ts and ts_flag."""
        s = self.settings
        # Epoch microseconds: interval arithmetic on TIMESTAMPTZ goes through a calendar.
        client, sent, received = "epoch_us(client_ts)", "epoch_us(sent_ts)", "epoch_us(received_at)"
        future, past = _micros(s.max_future_minutes), _micros(s.max_past_days * 24 * 60)
        flag = (f"CASE WHEN {client} > {received} + {future} THEN 'future' "
                f"WHEN {client} < {received} - {past} THEN 'past' END")
        sound = (f"client_ts IS NOT NULL AND sent_ts IS NOT NULL AND sent_ts >= client_ts "
                 f"AND {sent} - {client} <= {_micros(s.max_queue_days * 24 * 60)}")
        exprs = {
            "derived_ts": f"CASE WHEN {sound} "
                          f"THEN make_timestamptz({received} - ({sent} - {client})) "
                          f"WHEN client_ts IS NOT NULL AND ({flag}) IS NULL THEN client_ts "
                          f"ELSE received_at END",
            "ts_flag": f"coalesce(ts_flag, {flag})",
        }
        return replace_columns(con, relation, "enrich_timestamps", exprs)


derive_timestamps = DeriveTimestamps()
"""The step with default settings."""
