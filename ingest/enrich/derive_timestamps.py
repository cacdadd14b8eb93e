"""derive_timestamps: the best estimate of when an event happened.

Like Snowplow's derived_tstamp: when the client sent both its event time and its send
time, their difference is the time the event waited on the device, which does not depend
on the device clock being right: derived = received_at - (sent_ts - client_ts).
"""

from __future__ import annotations

import duckdb

from ingest.enrich import replace_columns


def derive_timestamps(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """Fill derived_ts."""
    exprs = {
        "derived_ts": "CASE WHEN client_ts IS NOT NULL AND sent_ts IS NOT NULL "
                      "AND sent_ts >= client_ts THEN received_at - (sent_ts - client_ts) "
                      "ELSE coalesce(client_ts, received_at) END",
    }
    return replace_columns(con, relation, "enrich_timestamps", exprs)
