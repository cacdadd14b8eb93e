"""The sessions and session_events views over a real lake, with and without session ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analytics import connect
from analytics.views import INFERRED_PREFIX
from tests.analytics.lakes import at, event, write_events


def _sessions(lake: Path, tenant: str = "acme") -> dict[str, dict[str, Any]]:
    with connect(lake, tenant) as con:
        rows = con.sql("SELECT * FROM sessions").to_arrow_table().to_pylist()
    return {r["session_id"]: r for r in rows}


def test_session_row_counts_pages_products_and_revenue(tmp_path: Path) -> None:
    s = {"session_id": "s1", "ua_device": None, "referrer_class": None}
    write_events(tmp_path, [
        event(minute=0, event_type="page", event_name="page_view", page_url="https://x/land",
              page_path="/land", referrer_class="search", ua_device="mobile",
              geo_city="Berlin", **{k: v for k, v in s.items() if k == "session_id"}),
        event(minute=1, product_id="p1", product_action="view", **s),
        event(minute=2, product_id="p1", product_action="view", **s),
        event(minute=3, product_id="p2", product_action="view", **s),
        event(minute=4, event_name="Product Added", product_id="p2", product_action="add", **s),
        event(minute=5, event_type="page", event_name="page_view", page_url="https://x/cart", **s),
        event(minute=6, event_name="Order Completed", product_action="purchase", order_id="o1",
              revenue=30.0, items=[{"product_id": "p2"}, {"product_id": "p3"}], **s),
        event(minute=7, user_id="u1", event_type="identify", event_name="identify", **s),
    ])
    row = _sessions(tmp_path)["s1"]
    assert row["start"] == at(0) and row["end"] == at(7)
    assert row["duration_s"] == 7 * 60
    assert (row["events"], row["pages"], row["products_viewed"], row["products_added"],
            row["products_purchased"], row["orders"]) == (8, 2, 2, 1, 2, 1)
    assert row["purchased"] is True and row["revenue"] == 30.0
    assert row["landing_page"] == "https://x/land" and row["landing_path"] == "/land"
    assert (row["referrer_class"], row["device"], row["city"]) == ("search", "mobile", "Berlin")
    assert row["user_id"] == "u1" and row["anonymous_id"] == "a1"
    assert row["session_inferred"] is False


def test_landing_page_uses_batch_order_when_times_tie(tmp_path: Path) -> None:
    """Events of one batch often share a server time: the tracker's order decides."""
    rows = [event(minute=0, session_id="s", event_type="page", event_name="page_view",
                  page_url=f"https://x/{i}", source_offset=7, item_index=i, client_ts=None)
            for i in (2, 0, 1)]
    write_events(tmp_path, rows)
    assert _sessions(tmp_path)["s"]["landing_page"] == "https://x/0"


def test_events_without_session_id_are_split_by_30_minutes_of_inactivity(tmp_path: Path) -> None:
    write_events(tmp_path, [
        event(minute=0, anonymous_id="v1"),
        event(minute=20, anonymous_id="v1"),
        event(minute=49, anonymous_id="v1"),      # 29 min gap: same session
        event(minute=80, anonymous_id="v1"),      # 31 min gap: new session
        event(minute=5, anonymous_id="v2"),       # another visitor
        event(minute=6, anonymous_id=None, user_id="u9"),   # known user only
        event(minute=7, anonymous_id="v1", session_id="client-s"),  # tracked: kept as is
    ])
    sessions = _sessions(tmp_path)
    inferred = {k: v for k, v in sessions.items() if v["session_inferred"]}
    assert sorted((v["anonymous_id"] or v["user_id"], v["events"]) for v in inferred.values()) \
        == [("u9", 1), ("v1", 1), ("v1", 3), ("v2", 1)]
    assert all(k.startswith(INFERRED_PREFIX) for k in inferred)
    assert sessions["client-s"]["events"] == 1 and not sessions["client-s"]["session_inferred"]
    with connect(tmp_path, "acme") as con:
        nulls = con.sql("SELECT count(*) FROM session_events WHERE session_id IS NULL").fetchall()
        total = con.sql("SELECT count(*) FROM session_events").fetchall()
    assert nulls == [(0,)] and total == [(7,)]


def test_inferred_session_ids_are_stable_when_later_data_arrives(tmp_path: Path) -> None:
    write_events(tmp_path, [event(minute=0, anonymous_id="v"), event(minute=10, anonymous_id="v")])
    before = set(_sessions(tmp_path))
    write_events(tmp_path, [event(minute=100, anonymous_id="v")])
    after = set(_sessions(tmp_path))
    assert before < after and len(after) == 2


def test_enrichment_columns_may_all_be_null(tmp_path: Path) -> None:
    write_events(tmp_path, [event(minute=0), event(minute=1)])
    row = next(iter(_sessions(tmp_path).values()))
    assert row["device"] is None and row["referrer_class"] is None and row["is_bot"] is False
    assert row["events"] == 2 and row["purchased"] is False and row["revenue"] is None


def test_empty_tenant_has_empty_typed_sessions(tmp_path: Path) -> None:
    write_events(tmp_path, [event("globex", minute=0)])
    with connect(tmp_path, "acme") as con:
        assert con.sql("SELECT count(*) FROM sessions").fetchall() == [(0,)]
        cols = [r[0] for r in con.sql("DESCRIBE sessions").fetchall()]
    assert {"session_id", "start", "end", "duration_s", "pages", "revenue", "landing_page",
            "referrer_class", "device"} <= set(cols)


def test_session_counts_are_bigint_not_hugeint(tmp_path: Path) -> None:
    """HUGEINT reaches pandas as float64: counts must be plain 64-bit integers."""
    write_events(tmp_path, [event(minute=0)])
    with connect(tmp_path, "acme") as con:
        types = dict((r[0], r[1]) for r in con.sql("DESCRIBE sessions").fetchall())
    assert types["products_added"] == "BIGINT" and types["products_purchased"] == "BIGINT"
    assert "HUGEINT" not in types.values()
