"""sessionize: server-side sessions for events the client sent without a session id.

A visitor is the tenant's anonymous id (``a:<anonymous_id>``), else its user id
(``u:<user_id>``). A visitor's session ends after ``timeout_minutes`` (30 by default, per
tenant overridable) without events, by derived_ts. A session's id is deterministic:
``md5(tenant, visitor, first derived_ts in microseconds)``, so computing it twice gives the
same id; ``session_index`` counts the visitor's sessions (1 = first visit).

Batches are stitched through the state store (session_store.py): the visitor's latest
session enters the computation as an interval [start, last]; events within the timeout of
it continue it (same id and index), later ones open sessions numbered after the highest
index handed out. An event *older* than the visitor's latest session that cannot join it
(late data: a device that was offline for hours) opens a session of its own, numbered in
the order the loader learnt of it, not chronologically.

Events with a client session id keep it (and their session index, if sent). Events without
anonymous id and user id get no session.

The store is the loader's memory; the lake's session state table (ingest/lake/state.py)
keeps it per transport partition for whichever loader owns the partition next. The
collector routes each visitor's hits to one partition (ingest/collector/visitor.py), so one
loader sees all of a visitor's events, however many loaders run.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from ingest.enrich import Batch
from ingest.enrich.session_store import CHANGES_SCHEMA, SessionStore, VisitorKey, VisitorState
from schemas.sql import quote

_VISITOR = ("CASE WHEN anonymous_id IS NOT NULL THEN 'a:' || anonymous_id "
            "WHEN user_id IS NOT NULL THEN 'u:' || user_id END")


def _session_id_sql(tenant: str, visitor: str, first_us: str) -> str:
    """SQL: the id of a session this step opens (deterministic)."""
    return f"md5({tenant} || chr(0) || {visitor} || chr(0) || {first_us}::VARCHAR)"


_LINEAGE = ("source_partition", "source_offset", "source_index", "item_index", "event_id")
# Both windows below must see rows in the same total order: with ties on lo (a retried
# event has its original's timestamp) each window could order the tie its own way, and a row
# would then count as opening a group in one and not in the other, joining the wrong session.
_ORDER = "lo, is_state DESC, " + ", ".join(_LINEAGE)
_STATE_SCHEMA = pa.schema([("tenant", pa.string()), ("visitor", pa.string()),
                           ("session_id", pa.string()), ("session_index", pa.int64()),
                           ("start_us", pa.int64()), ("last_us", pa.int64()),
                           ("sessions", pa.int64())])


class Sessionize:
    """The sessionize step."""

    def __init__(self, store: SessionStore | None = None, timeout_minutes: float = 30,
                 tenant_timeouts: Mapping[str, float] | None = None) -> None:
        self.store = store or SessionStore()
        self.timeout_minutes = timeout_minutes
        self.tenant_timeouts = dict(tenant_timeouts or {})
        self._batch: Batch | None = None

    def _timeout_us(self) -> str:
        default = str(round(self.timeout_minutes * 60e6))
        if not self.tenant_timeouts:
            return default
        whens = " ".join(f"WHEN {quote(t)} THEN {round(m * 60e6)}"
                         for t, m in sorted(self.tenant_timeouts.items()))
        return f"CASE tenant {whens} ELSE {default} END"

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Fill session_id and session_index where the client sent no session id."""
        if self._batch is not batch:
            self._batch = batch
            self.store.begin(batch.key)
            batch.on_success(self.store.commit)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE enrich_sess_need AS
            SELECT tenant, {_VISITOR} AS visitor, epoch_us(derived_ts) AS ts,
                   {", ".join(_LINEAGE)}
            FROM {relation}
            WHERE session_id IS NULL AND (anonymous_id IS NOT NULL OR user_id IS NOT NULL)""")
        keys = con.sql("SELECT DISTINCT tenant, visitor FROM enrich_sess_need").fetchall()
        if not keys:
            return relation
        states = self.store.load((t, v) for t, v in keys)
        self._register_states(con, states)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE enrich_sess_rows AS
            WITH u AS (
                SELECT tenant, visitor, ts AS lo, ts AS hi, FALSE AS is_state,
                       {", ".join(_LINEAGE)}
                FROM enrich_sess_need
                UNION ALL
                SELECT tenant, visitor, start_us, last_us, TRUE,
                       NULL, NULL, NULL, NULL, NULL
                FROM enrich_sess_state
            ), w AS (
                SELECT *, max(hi) OVER (PARTITION BY tenant, visitor ORDER BY {_ORDER}
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_hi
                FROM u
            )
            SELECT *, sum(CASE WHEN prev_hi IS NULL OR lo - prev_hi > {self._timeout_us()}
                               THEN 1 ELSE 0 END)
                      OVER (PARTITION BY tenant, visitor ORDER BY {_ORDER}
                            ROWS UNBOUNDED PRECEDING) AS grp
            FROM w""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE enrich_sess_groups AS
            WITH g AS (
                SELECT tenant, visitor, grp, min(lo) AS first_us, max(hi) AS last_us,
                       bool_or(is_state) AS has_state
                FROM enrich_sess_rows GROUP BY ALL
            )
            SELECT g.*, coalesce(s.sessions, 0) AS base,
                   CASE WHEN has_state THEN s.session_id
                        ELSE {_session_id_sql("g.tenant", "g.visitor", "g.first_us")}
                   END AS sid,
                   CASE WHEN has_state THEN s.session_index
                        ELSE coalesce(s.sessions, 0) + row_number() OVER (
                            PARTITION BY g.tenant, g.visitor, has_state ORDER BY g.first_us)
                   END AS idx
            FROM g LEFT JOIN enrich_sess_state s USING (tenant, visitor)""")
        self._stage(con, batch)
        # One row per event key, so the join below can never duplicate an event.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE enrich_sess_assign AS
            SELECT {", ".join(f"r.{c}" for c in _LINEAGE)},
                   any_value(g.sid) AS sid, any_value(g.idx) AS idx
            FROM enrich_sess_rows r JOIN enrich_sess_groups g USING (tenant, visitor, grp)
            WHERE NOT r.is_state GROUP BY ALL""")
        on = " AND ".join(f"a.{c} IS NOT DISTINCT FROM e.{c}" for c in _LINEAGE)
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW enrich_sessions AS
            SELECT e.* REPLACE (coalesce(e.session_id, a.sid) AS session_id,
                                -- a tracker's own session count wins (Snowplow vid)
                                coalesce(e.session_index, CASE WHEN e.session_id IS NULL
                                         THEN a.idx::INTEGER END) AS session_index)
            FROM {relation} e LEFT JOIN enrich_sess_assign a ON {on}""")
        return "enrich_sessions"

    def _register_states(self, con: duckdb.DuckDBPyConnection,
                         states: Mapping[VisitorKey, VisitorState]) -> None:
        keys = list(states)
        values = list(states.values())
        columns = [[k[0] for k in keys], [k[1] for k in keys],
                   [s.session_id for s in values], [s.session_index for s in values],
                   [s.start_us for s in values], [s.last_us for s in values],
                   [s.sessions for s in values]]
        table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in
                                      zip(columns, _STATE_SCHEMA, strict=True)],
                                     schema=_STATE_SCHEMA)
        con.register("enrich_sess_state_arrow", table)
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE enrich_sess_state AS "
                        "SELECT * FROM enrich_sess_state_arrow")
        finally:
            con.unregister("enrich_sess_state_arrow")

    def _stage(self, con: duckdb.DuckDBPyConnection, batch: Batch) -> None:
        """Each visitor's latest session (and highest index) becomes its new state."""
        latest = con.sql("""
            SELECT tenant, visitor, arg_max(sid, last_us), arg_max(idx, last_us),
                   arg_max(first_us, last_us), max(last_us), greatest(max(idx), max(base))
            FROM enrich_sess_groups GROUP BY ALL""").fetchall()
        states = {(t, v): VisitorState(sid, int(idx), int(start), int(last), int(n))
                  for t, v, sid, idx, start, last, n in latest}
        # The transport partition of each visitor's events: where its state is kept. With
        # routing by visitor there is one; the highest if a visitor's events arrived in two.
        partitions = {(t, v): int(p) for t, v, p in con.sql(
            "SELECT tenant, visitor, max(source_partition) FROM enrich_sess_need "
            "WHERE source_partition IS NOT NULL GROUP BY ALL").fetchall()}
        batch.on_unit_success(lambda: self.store.stage(states, partitions))


def states_from_events(con: duckdb.DuckDBPyConnection, events: str) -> pa.Table:
    """Each visitor's state (CHANGES_SCHEMA, partition 0) as this step left it after the
    events of the relation ``events`` (the lake's rows of earlier days: what ``driftnet
    replay`` starts from, instead of an empty store).

    Only sessions this step opened count: their id is the md5 of the visitor and one of
    their events' time (the first, when it was opened); a client's session id never is.
    """
    return con.sql(f"""
        WITH e AS (
            SELECT tenant, {_VISITOR} AS visitor, session_id, session_index,
                   epoch_us(derived_ts) AS ts
            FROM {events}
            WHERE length(session_id) = 32 AND session_index IS NOT NULL
              AND derived_ts IS NOT NULL
              AND (anonymous_id IS NOT NULL OR user_id IS NOT NULL)
        ), s AS (
            SELECT tenant, visitor, session_id, max(session_index) AS idx,
                   min(ts) AS start_us, max(ts) AS last_us
            FROM e GROUP BY ALL
            HAVING bool_or(session_id = {_session_id_sql("tenant", "visitor", "ts")})
        )
        SELECT 0::INTEGER AS source_partition, tenant, visitor,
               arg_max(session_id, last_us) AS session_id,
               arg_max(idx, last_us)::BIGINT AS session_index,
               arg_max(start_us, last_us) AS start_us, max(last_us) AS last_us,
               max(idx)::BIGINT AS sessions
        FROM s GROUP BY ALL""").to_arrow_table().cast(CHANGES_SCHEMA)
