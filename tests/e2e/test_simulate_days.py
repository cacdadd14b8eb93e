"""`driftnet simulate --days N` spreads sessions over past days of event time, through the
real collector and loader, so time splits have something to split."""

from __future__ import annotations

import datetime as dt

from analytics import connect
from analytics.export import ExportSpec, export_tables
from driftnet.simulate import SimulationConfig, run_simulation
from schemas.tenants import load_tenants
from tests.support import Server


def test_sessions_spread_over_past_days_and_split_by_time(shared_server: Server) -> None:
    tenants = load_tenants(shared_server.tenants)
    report = run_simulation(SimulationConfig(url=shared_server.url, tenants=tenants,
                                             sessions=80, only_tenants=("acme",), days=10,
                                             malformed_rate=0, duplicate_rate=0))
    assert report.events_acked > 100
    shared_server.wait_loaded()
    now = dt.datetime.now(dt.UTC)
    with connect(shared_server.lake, "acme") as con:
        ((days, oldest, newest_received),) = con.sql(
            "SELECT count(DISTINCT CAST(start AS DATE)), min(start), min(received_at) "
            "FROM sessions JOIN (SELECT session_id, min(received_at) AS received_at "
            "FROM events GROUP BY ALL) USING (session_id)").fetchall()
    assert days >= 6                               # 80 sessions over 10 days
    assert now - dt.timedelta(days=10, hours=2) < oldest < now - dt.timedelta(days=5)
    assert newest_received > now - dt.timedelta(hours=1)    # all sent just now
    middle = now - dt.timedelta(days=5)
    splits = export_tables(shared_server.lake, ExportSpec(tenant="acme", recipe="sql",
                                                          train_end=middle, query=(
        "SELECT session_id, start FROM sessions WHERE ($split_start IS NULL OR start >= "
        "$split_start) AND ($split_end IS NULL OR start < $split_end)")))
    assert splits["train"].num_rows > 10 and splits["test"].num_rows > 10
