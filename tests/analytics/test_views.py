"""The sessions and session_events views over a real lake, with and without session ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analytics import connect
from analytics.money import RatesError, load_rates
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


def test_an_anonymous_id_and_a_user_id_of_the_same_text_are_two_visitors(
        tmp_path: Path) -> None:
    """Anonymous "bob" and a known user "bob" (no anonymous id) five minutes apart are two
    people: their inactivity sessions stay apart, as the loader's sessionisation keeps them."""
    write_events(tmp_path, [event(minute=0, anonymous_id="bob"),
                            event(minute=5, anonymous_id=None, user_id="bob"),
                            event(minute=8, anonymous_id=None, user_id=None,
                                  network_user_id="bob")])
    sessions = _sessions(tmp_path)
    assert sorted(v["events"] for v in sessions.values()) == [1, 1, 1]
    assert sorted(k.rsplit(":", 1)[0] for k in sessions) == [
        f"{INFERRED_PREFIX}a:bob", f"{INFERRED_PREFIX}n:bob", f"{INFERRED_PREFIX}u:bob"]


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


def test_acquisition_fields_come_from_the_landing_page_view(tmp_path: Path) -> None:
    """A session that landed direct and later saw an email click is direct, not
    `direct` + `email` (each field's first non-null value taken on its own)."""
    s = {"session_id": "s1"}
    write_events(tmp_path, [
        event(minute=0, event_name="Product Viewed", page_url="https://x/p", **s),
        event(minute=1, event_type="page", event_name="page_view", page_url="https://x/",
              page_path="/", referrer_class="direct", **s),
        event(minute=5, event_type="page", event_name="page_view", page_url="https://x/?e=1",
              page_path="/", referrer_class="email", referrer="https://mail.example/",
              utm_medium="email", utm_source="newsletter", utm_campaign="june", **s),
    ])
    row = _sessions(tmp_path)["s1"]
    assert (row["landing_page"], row["referrer_class"], row["referrer"], row["utm_medium"],
            row["utm_source"], row["utm_campaign"]) == ("https://x/", "direct", None, None,
                                                         None, None)


def test_acquisition_falls_back_to_the_first_event_without_page_views(tmp_path: Path) -> None:
    write_events(tmp_path, [
        event(minute=0, session_id="s", page_url="https://x/a", utm_source="ads"),
        event(minute=1, session_id="s", page_url="https://x/b", utm_source="mail"),
    ])
    row = _sessions(tmp_path)["s"]
    assert (row["landing_page"], row["utm_source"]) == ("https://x/a", "ads")


def test_revenue_is_kept_per_currency_and_never_added_across(tmp_path: Path) -> None:
    buy = {"event_name": "Order Completed", "product_action": "purchase"}
    write_events(tmp_path, [
        event(minute=0, session_id="eur", order_id="o1", revenue=10.0, currency="EUR", **buy),
        event(minute=1, session_id="eur", order_id="o1", revenue=10.0, currency="EUR",
              protocol="ga4", **buy),                       # the same order, another tracker
        event(minute=2, session_id="eur", order_id="o2", revenue=5.0, currency="EUR", **buy),
        event(minute=0, session_id="mix", order_id="o3", revenue=10.0, currency="EUR", **buy),
        event(minute=1, session_id="mix", order_id="o4", revenue=20.0, currency="USD", **buy),
        event(minute=0, session_id="none", order_id="o5", revenue=7.0, **buy),
    ])
    s = _sessions(tmp_path)
    assert (s["eur"]["revenue"], s["eur"]["currency"], s["eur"]["orders"]) == (15.0, "EUR", 2)
    assert dict(s["eur"]["revenue_by_currency"]) == {"EUR": 15.0}
    assert s["mix"]["revenue"] is None and s["mix"]["currency"] is None
    assert dict(s["mix"]["revenue_by_currency"]) == {"EUR": 10.0, "USD": 20.0}
    assert (s["none"]["revenue"], s["none"]["currency"]) == (7.0, "XXX")
    assert s["mix"]["revenue_converted"] is None and s["mix"]["reporting_currency"] is None


def test_revenue_converts_with_the_operators_rates_and_never_silently(tmp_path: Path) -> None:
    buy = {"event_name": "Order Completed", "product_action": "purchase"}
    write_events(tmp_path, [
        event(minute=0, session_id="mix", order_id="o3", revenue=10.0, currency="EUR", **buy),
        event(minute=1, session_id="mix", order_id="o4", revenue=20.0, currency="USD", **buy),
        event(minute=0, session_id="gbp", order_id="o5", revenue=10.0, currency="GBP", **buy),
    ])
    rates_csv = tmp_path / "rates.csv"
    # T0 is 2026-03-01: the USD rate of 02-27 is the latest on or before it; 03-02 is later
    rates_csv.write_text("date,currency,rate\n2026-02-27,USD,0.9\n2026-03-02,USD,0.5\n"
                         "2026-03-02,GBP,1.2\n")
    rates = load_rates(rates_csv, "eur")
    with connect(tmp_path, "acme", rates=rates) as con:
        rows = {r[0]: r[1:] for r in con.sql(
            "SELECT session_id, revenue_converted, reporting_currency FROM sessions").fetchall()}
        orders = dict(con.sql("SELECT order_id, revenue_converted FROM orders").fetchall())
    assert rows["mix"][0] == pytest.approx(10.0 + 20.0 * 0.9) and rows["mix"][1] == "EUR"
    assert rows["gbp"] == (None, "EUR")          # no GBP rate on or before 03-01
    assert orders == {"o3": 10.0, "o4": pytest.approx(18.0), "o5": None}


def test_a_lower_case_currency_in_an_older_lake_is_its_upper_case_code(tmp_path: Path) -> None:
    """A lake written before the loader upper-cased currencies may hold ``usd``: totals,
    orders and products count it as ``USD``, and it converts at USD's rate."""
    buy = {"event_name": "Order Completed", "product_action": "purchase"}
    write_events(tmp_path, [
        event(minute=0, session_id="s", order_id="o1", revenue=10.0, currency="usd",
              product_id="p1", price=10.0, **buy),
        event(minute=1, session_id="s", order_id="o2", revenue=20.0, currency="USD ",
              product_id="p1", price=20.0, **buy),
    ])
    rates_csv = tmp_path / "rates.csv"
    rates_csv.write_text("date,currency,rate\n2026-02-27,USD,0.5\n")
    with connect(tmp_path, "acme", rates=load_rates(rates_csv, "EUR")) as con:
        session = con.sql("SELECT revenue, currency, revenue_by_currency, revenue_converted "
                          "FROM sessions").fetchall()
        orders = con.sql("SELECT order_id, currency, revenue_converted FROM orders "
                         "ORDER BY 1").fetchall()
        products = con.sql("SELECT revenue_by_currency FROM products").fetchall()
    assert session == [(30.0, "USD", {"USD": 30.0}, 15.0)]
    assert orders == [("o1", "USD", 5.0), ("o2", "USD", 10.0)]
    assert products == [({"USD": 30.0},)]


@pytest.mark.parametrize("content, message", [
    ("date,currency\n2026-01-01,USD\n", "lacks columns"),
    ("date,currency,rate\n2026-01-01,USD,-1\n", "bad row"),
    ("date,currency,rate\n2026-13-01,USD,1\n", "bad row"),
    ("date,currency,rate\n2026-01-01,US Dollar,1\n", "bad row"),
])
def test_a_bad_rates_file_is_refused_with_its_row(tmp_path: Path, content: str,
                                                   message: str) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(content)
    with pytest.raises(RatesError, match=message):
        load_rates(path, "EUR")


def test_users_stitch_anonymous_ids_to_the_user_they_turned_out_to_be(tmp_path: Path) -> None:
    buy = {"event_name": "Order Completed", "product_action": "purchase"}
    write_events(tmp_path, [
        # device d1: browses anonymously, later logs in as u1 (identify), then buys
        event(minute=0, session_id="s1", anonymous_id="d1"),
        event(minute=100, session_id="s2", anonymous_id="d1", user_id="u1",
              event_type="identify", event_name="identify"),
        event(minute=101, session_id="s2", anonymous_id="d1", order_id="o1", revenue=9.0,
              currency="EUR", **buy),
        # device d2 of the same user (GA4 user_id on a hit)
        event(minute=200, session_id="s3", anonymous_id="d2", user_id="u1", protocol="ga4",
              order_id="o2", revenue=3.0, currency="USD", **buy),
        # a Segment alias ties an older anonymous id d3 to u1
        event(minute=300, session_id="s4", anonymous_id="d3"),
        event(minute=301, event_type="alias", event_name="alias", anonymous_id=None,
              user_id="u1", session_id=None, extra='{"previousId": "d3"}'),
        # never identified
        event(minute=0, session_id="s9", anonymous_id="d9"),
    ])
    s = _sessions(tmp_path)
    assert s["s1"]["user_id"] is None and s["s1"]["stitched_user_id"] == "u1"
    assert {s[k]["person_id"] for k in ("s1", "s2", "s3", "s4")} == {"u:u1"}
    assert s["s9"]["person_id"] == "a:d9" and s["s9"]["stitched_user_id"] is None
    with connect(tmp_path, "acme") as con:
        users = {r["person_id"]: r for r in
                 con.sql("SELECT * FROM users").to_arrow_table().to_pylist()}
        orders = {r["order_id"]: r for r in
                  con.sql("SELECT * FROM orders").to_arrow_table().to_pylist()}
    u1 = users["u:u1"]
    assert u1["user_id"] == "u1" and u1["anonymous_ids"] == ["d1", "d2", "d3"]
    assert u1["sessions"] >= 4 and u1["orders"] == 2
    assert dict(u1["revenue_by_currency"]) == {"EUR": 9.0, "USD": 3.0}
    assert u1["first_seen"] == at(0) and u1["last_seen"] == at(301)
    assert users["a:d9"]["user_id"] is None and users["a:d9"]["sessions"] == 1
    assert orders["o1"]["person_id"] == "u:u1" and orders["o1"]["session_id"] == "s2"
    assert (orders["o1"]["revenue"], orders["o1"]["currency"]) == (9.0, "EUR")


def test_engaged_time_from_page_pings_ga4_posthog_and_dn_js(tmp_path: Path) -> None:
    sp = {"session_id": "sp", "protocol": "snowplow"}
    write_events(tmp_path, [
        event(minute=0, event_type="page", event_name="page_view", **sp),
        event(minute=0.5, event_type="page_ping", event_name="page_ping", **sp),   # +30 s
        event(minute=0.75, event_type="page_ping", event_name="page_ping", **sp),  # +15 s
        event(minute=20, event_type="page_ping", event_name="page_ping", **sp),    # idle: 30
        event(minute=0, session_id="ga", protocol="ga4", extra='{"_et": "1200"}'),
        event(minute=1, session_id="ga", protocol="ga4",
              properties='{"engagement_time_msec": 800}'),
        event(minute=0, session_id="ph", protocol="posthog", event_name="$pageview"),
        event(minute=1, session_id="ph", protocol="posthog", event_name="$pageview",
              properties='{"$prev_pageview_duration": 42.5}'),
        event(minute=2, session_id="ph", protocol="posthog", event_name="$pageleave",
              properties='{"$prev_pageview_duration": 7.5}'),
        event(minute=0, session_id="dn", protocol="dn", event_type="page",
              event_name="page_view"),
        event(minute=1, session_id="dn", protocol="dn", event_name="Page Engaged",
              properties='{"engaged_ms": 61500, "url": "https://x/a"}'),
        event(minute=2, session_id="dn", protocol="dn", event_name="Page Engaged",
              properties='{"engaged_ms": 3500, "url": "https://x/b"}'),
        event(minute=3, session_id="dn", protocol="dn", event_name="Other",
              properties='{"engaged_ms": 99000}'),
        event(minute=0, session_id="none"),
    ])
    s = _sessions(tmp_path)
    assert s["sp"]["engaged_s"] == 75.0
    assert s["dn"]["engaged_s"] == 65.0
    assert s["ga"]["engaged_s"] == 2.0
    assert s["ph"]["engaged_s"] == 50.0
    assert s["none"]["engaged_s"] is None


def _item(pid: str, price: float, quantity: float = 1, currency: str | None = None
          ) -> dict[str, Any]:
    return {"product_id": pid, "name": f"n-{pid}", "category": "c", "brand": None,
            "variant": None, "price": price, "quantity": quantity, "currency": currency}


def test_products_count_views_adds_purchases_and_revenue_per_currency(tmp_path: Path) -> None:
    def view(s: str, pid: str, minute: float) -> dict[str, Any]:
        return event(minute=minute, session_id=s, product_id=pid, product_action="view",
                     price=10.0, currency="EUR", items=[_item(pid, 10.0, 1, "EUR")])

    write_events(tmp_path, [
        view("s1", "p1", 0), view("s1", "p1", 1), view("s2", "p1", 0), view("s3", "p2", 0),
        event(minute=2, session_id="s1", product_id="p1", product_action="add", price=10.0,
              quantity=2, items=[_item("p1", 10.0, 2, "EUR")]),
        # a two-item order: lines from items, product_id NULL
        event(minute=3, session_id="s1", product_action="purchase", order_id="o1",
              revenue=25.0, currency="EUR",
              items=[_item("p1", 10.0, 2), _item("p2", 5.0, 1)]),
        # p2 bought in USD by s4, which never viewed it
        event(minute=0, session_id="s4", product_id="p2", product_action="purchase",
              order_id="o2", revenue=6.0, currency="USD", price=6.0, quantity=1,
              items=[_item("p2", 6.0, 1, "USD")]),
        event(minute=0, session_id="s5", product_action="list_view",
              items=[_item("p1", 10.0), _item("p2", 5.0)]),
    ])
    with connect(tmp_path, "acme") as con:
        rows = {r["product_id"]: r for r in
                con.sql("SELECT * FROM products").to_arrow_table().to_pylist()}
        order = con.sql("SELECT items FROM orders WHERE order_id = 'o1'").fetchall()[0][0]
    p1, p2 = rows["p1"], rows["p2"]
    assert (p1["list_views"], p1["views"], p1["adds"], p1["units_added"], p1["purchases"],
            p1["units_purchased"]) == (1, 3, 1, 2.0, 1, 2.0)
    assert (p1["sessions_viewed"], p1["sessions_purchased"]) == (2, 1)
    assert p1["view_to_purchase_rate"] == 0.5 and p1["name"] == "n-p1"
    assert dict(p1["revenue_by_currency"]) == {"EUR": 20.0}
    assert dict(p2["revenue_by_currency"]) == {"EUR": 5.0, "USD": 6.0}
    assert (p2["sessions_viewed"], p2["sessions_purchased"]) == (1, 2)
    assert p2["view_to_purchase_rate"] == 0.0     # s3 viewed it; s1 and s4 bought unseen
    assert [i["product_id"] for i in order] == ["p1", "p2"]


def test_an_order_of_snowplow_transaction_items_lists_every_item(tmp_path: Path) -> None:
    sp = {"session_id": "s", "protocol": "snowplow", "order_id": "o9"}
    write_events(tmp_path, [
        event(minute=0, event_type="transaction", event_name="transaction",
              product_action="purchase", revenue=15.0, currency="GBP", **sp),
        event(minute=0, event_type="transaction_item", event_name="transaction_item",
              product_action="purchase", product_id="a", price=5.0, currency="GBP",
              items=[_item("a", 5.0, 1, "GBP")], **sp),
        event(minute=0, event_type="transaction_item", event_name="transaction_item",
              product_action="purchase", product_id="b", price=10.0, currency="GBP",
              items=[_item("b", 10.0, 1, "GBP")], **sp),
    ])
    with connect(tmp_path, "acme") as con:
        ((items, revenue, currency, events),) = con.sql(
            "SELECT items, revenue, currency, events FROM orders").fetchall()
    assert [i["product_id"] for i in items] == ["a", "b"]
    assert (revenue, currency, events) == (15.0, "GBP", 3)
    assert _sessions(tmp_path)["s"]["products_purchased"] == 2


def test_inactivity_sessions_of_one_id_in_two_tenants_stay_apart_for_operators(
        tmp_path: Path) -> None:
    """`--all-tenants`: globex's event at 10:25 must not bridge acme's 50-minute gap of the
    same anonymous id (a visitor is a tenant's)."""
    write_events(tmp_path, [event(minute=0, anonymous_id="v"), event(minute=50, anonymous_id="v"),
                            event(tenant="globex", minute=25, anonymous_id="v")])
    with connect(tmp_path, all_tenants=True) as con:
        rows = con.sql("SELECT tenant, session_id, events FROM sessions ORDER BY ALL").fetchall()
    with connect(tmp_path, "acme") as con:
        acme = con.sql("SELECT tenant, session_id, events FROM sessions ORDER BY ALL").fetchall()
    assert [r for r in rows if r[0] == "acme"] == acme
    assert [r[2] for r in rows] == [1, 1, 1]


def test_an_order_in_two_sessions_of_one_person_counts_once(tmp_path: Path) -> None:
    """The browser and the shop's server both send order o1 (the server with the user id
    only: a session of its own): the person has one order of 10 EUR, converted once."""
    buy = {"event_name": "Order Completed", "product_action": "purchase", "order_id": "o1",
           "revenue": 10.0, "currency": "EUR"}
    write_events(tmp_path, [
        event(minute=0, session_id="browser", anonymous_id="a1", user_id="u1", **buy),
        event(minute=1, session_id="server", anonymous_id=None, user_id="u1",
              protocol="posthog", **buy)])
    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,rate\n2026-02-27,EUR,1.0\n")
    with connect(tmp_path, "acme", rates=load_rates(rates, "EUR")) as con:
        users = con.sql("SELECT person_id, sessions, orders, revenue_by_currency, "
                        "revenue_converted FROM users").fetchall()
    assert users == [("u:u1", 2, 1, {"EUR": 10.0}, 10.0)]


def test_a_products_name_is_the_latest_by_the_total_event_order(tmp_path: Path) -> None:
    """Names of one instant tied on time alone, and the tie went to the row read first: the
    same lake answered differently before and after compaction reordered its rows."""
    first = event(minute=0, session_id="s1", product_id="P", product_action="view",
                  product_name="Old name", source_offset=1)
    later = event(minute=0, session_id="s2", product_id="P", product_action="view",
                  product_name="New name", source_offset=2)
    write_events(tmp_path, [first])
    write_events(tmp_path, [later])
    # lines of one event: the later line is the later one
    write_events(tmp_path, [event(minute=0, session_id="s3", product_action="list_view",
                                  source_offset=3,
                                  items=[{**_item("Q", 1.0), "name": "first line"},
                                         {**_item("Q", 1.0), "name": "second line"}])])
    with connect(tmp_path, "acme") as con:
        names = dict(con.sql("SELECT product_id, name FROM products").fetchall())
    assert names == {"P": "New name", "Q": "second line"}
