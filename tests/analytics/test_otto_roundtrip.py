"""Real shopping sessions (OTTO, CC-BY 4.0) -> collector -> lake -> `sessions` export.

Each OTTO session is replayed as one Segment batch through a real `driftnet up`: clicks
become Product Viewed, carts Product Added, and the orders placed at one instant one Order
Completed with its products; the original times are the client timestamps and the OTTO
session id is the client session id (scoped by the visitor). The export must give back
every sequence exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from itertools import groupby
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from analytics import connect
from analytics.export import ExportSpec, export_to_dir
from tests.support import Server

DATA = Path(__file__).resolve().parents[1] / "data" / "otto_train_sample.jsonl"
ACTIONS = {"clicks": "view", "carts": "add", "orders": "purchase"}
NAMES = {"clicks": "Product Viewed", "carts": "Product Added"}


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _messages(session: dict[str, Any]) -> list[dict[str, Any]]:
    sid = str(session["session"])
    base = {"type": "track", "anonymousId": f"otto-{sid}", "context": {"sessionId": sid}}
    out = []
    # consecutive orders at the same instant are one order with several products
    for (kind, ts), group in groupby(session["events"], key=lambda e: (e["type"], e["ts"])):
        events = list(group)
        if kind == "orders":
            out.append({**base, "event": "Order Completed", "messageId": str(uuid.uuid4()),
                        "timestamp": _iso(ts),
                        "properties": {"order_id": f"{sid}-{ts}",
                                       "products": [{"product_id": str(e["aid"])}
                                                    for e in events]}})
        else:
            out += [{**base, "event": NAMES[kind], "messageId": str(uuid.uuid4()),
                     "timestamp": _iso(ts), "properties": {"product_id": str(e["aid"])}}
                    for e in events]
    return out


def test_otto_sessions_come_back_unchanged(server: Server, tmp_path: Path) -> None:
    sessions = [json.loads(line) for line in DATA.read_text().splitlines()]
    assert len(sessions) == 20
    for session in sessions:
        body = {"batch": _messages(session), "sentAt": dt.datetime.now(dt.UTC).isoformat()}
        assert server.post("/v1/batch", body, key="acme-key").status_code == 200
    server.wait_loaded()

    manifest = export_to_dir(server.lake, ExportSpec(tenant="acme", recipe="sessions"),
                             tmp_path / "ds")
    assert [(o.split, o.rows) for o in manifest.outputs] == [("all", 20)]
    rows = {r["session_id"]: r for r in pq.read_table(tmp_path / "ds/all.parquet").to_pylist()}
    # a Segment sessionId is unique per device only: scoped by the anonymous id
    scoped = {s["session"]: f"otto-{s['session']}:{s['session']}" for s in sessions}
    assert set(rows) == set(scoped.values())
    for session in sessions:
        got = rows[scoped[session["session"]]]
        events = session["events"]
        assert got["items"] == [str(e["aid"]) for e in events]
        assert got["actions"] == [ACTIONS[e["type"]] for e in events]
        assert got["client_timestamps"] == [
            dt.datetime.fromtimestamp(e["ts"] / 1000, dt.UTC) for e in events]
        assert got["anonymous_id"] == f"otto-{session['session']}"

    with connect(server.lake, "acme") as con:
        purchased = con.sql("SELECT session_id, products_purchased FROM sessions "
                            "WHERE purchased ORDER BY session_id").fetchall()
    expected = sorted((scoped[s["session"]], sum(e["type"] == "orders" for e in s["events"]))
                      for s in sessions if any(e["type"] == "orders" for e in s["events"]))
    assert purchased == expected
