"""discover on a real lake: the field catalog, the target ranking, and the three outputs."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analytics import connect
from analytics.discover import DiscoverOptions, Report, discover, parse_since
from analytics.discover.report import FieldStats
from analytics.discover.report_html import render_html
from analytics.errors import AnalyticsError
from driftnet.cli import main
from tests.analytics.lakes import T0, event, write_events
from tests.support import TEST_TENANTS


def _shop_rows() -> list[dict[str, Any]]:
    """40 sessions: Berlin ones buy, Paris ones do not; a property only purchases carry."""
    rows = []
    for i in range(40):
        city = "Berlin" if i % 2 == 0 else "Paris"
        variant = "B" if i % 4 in (0, 1) else "A"   # uninformative: half of each city
        day = i % 4                                  # four days
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}", "geo_city": city,
             "ua_device": "mobile"}
        m = day * 24 * 60 + i
        rows.append(event(minute=m, event_type="page", event_name="page_view",
                          properties=json.dumps({"path": "/", "variant": variant}), **s))
        rows.append(event(minute=m + 1, product_id=f"p{i % 3}", product_action="view",
                          properties=json.dumps({"product_id": f"p{i % 3}", "price": 9.5,
                                                 "tags": ["a", "b"]}),
                          context=json.dumps({"page": {"url": "https://x/p"}, "ab": None}),
                          **s))
        if city == "Berlin":
            rows.append(event(minute=m + 2, event_name="Order Completed",
                              product_action="purchase", order_id=f"o{i}",
                              properties=json.dumps({"order_id": f"o{i}", "coupon": "X"}),
                              items=[{"product_id": f"p{i % 3}", "price": 9.5}],
                              **s))
    return rows


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    write_events(root, _shop_rows())
    write_events(root, [event("globex", minute=0, properties=json.dumps({"secret": 1}))])
    return root


def _run(lake: Path, **opts: Any) -> Report:
    with connect(lake, "acme") as con:
        return discover(con, DiscoverOptions(**opts), tenant="acme")


def _field(report: Report, name: str, event_name: str | None = None) -> FieldStats:
    return next(f for f in report.catalog.fields
                if f.field == name and f.event_name == event_name)


def test_catalog_lists_columns_and_every_json_path(lake: Path) -> None:
    report = _run(lake)
    cat = report.catalog
    assert cat.events == 100 and cat.event_names == {
        "page_view": 40, "Product Viewed": 40, "Order Completed": 20}
    names = {f.field for f in cat.overall()}
    assert {"properties.variant", "properties.path",
            "properties.price", "properties.tags[*]", "properties.coupon",
            "context.page.url", "context.ab", "items[*].product_id", "items[*].price",
            "geo_city", "session_id"} <= names
    assert not any("secret" in n for n in names)            # globex's property
    # the same values on the same events as the product_id column: shown once, as its alias
    assert "properties.product_id" not in names
    assert _field(report, "product_id").aliases == ["properties.product_id"]
    assert cat.aliases == {"properties.product_id": "product_id",
                           "properties.order_id": "order_id"}
    variant = _field(report, "properties.variant")
    assert (variant.filled, variant.events, variant.fill_rate) == (40, 100, 0.4)
    assert variant.types == {"string": 40} and variant.distinct == 2
    assert {v.value: v.count for v in variant.top_values} == {"A": 20, "B": 20}
    assert variant.first_seen == T0
    tags = _field(report, "properties.tags[*]")
    assert tags.filled == 40                                # once per event, not per element
    assert {v.value: v.count for v in tags.top_values} == {"a": 40, "b": 40}
    ab = _field(report, "context.ab")
    assert ab.filled == 0 and ab.types == {"null": 40}     # seen, but always null
    price = _field(report, "properties.price", "Product Viewed")
    assert price.types == {"number": 40} and price.fill_rate == 1.0
    city = _field(report, "geo_city")
    assert city.types == {"VARCHAR": 100} and city.distinct == 2
    coupon = _field(report, "properties.coupon", "Order Completed")
    assert coupon.fill_rate == 1.0 and coupon.events == 20
    assert not [f for f in cat.fields if f.field == "properties.coupon"
                and f.event_name == "page_view"]
    days = cat.fill_over_time["properties.variant"]
    # day d holds sessions i % 4 == d: even days are Berlin's (3 events), odd Paris's (2)
    assert [(p.date, p.events, p.filled) for p in days] == [
        (T0.date() + dt.timedelta(days=d), 30 if d % 2 == 0 else 20, 10) for d in range(4)]


def test_json_top_values_and_document_counts_are_exact_past_the_sample(lake: Path) -> None:
    # Columns' top values come from a sample past top_values_sample_rows events; JSON paths'
    # are counted exactly from each event name's distinct texts (a sample of 10 events would
    # scale to multiples of 10 or miss a value).
    report = _run(lake, top_values_sample_rows=10)
    variant = _field(report, "properties.variant")
    assert {v.value: v.count for v in variant.top_values} == {"A": 20, "B": 20}
    tags = _field(report, "properties.tags[*]", "Product Viewed")
    assert {v.value: v.count for v in tags.top_values} == {"a": 40, "b": 40}
    # The JSON columns themselves: filled events and distinct texts, per event name too.
    # page_view: 2 texts (two variants); Product Viewed: 3 (p0..p2); Order Completed: 20.
    props = _field(report, "properties")
    assert (props.filled, props.distinct) == (100, 25)
    assert _field(report, "properties", "Product Viewed").distinct == 3
    assert _field(report, "items", "Order Completed").filled == 20
    assert _field(report, "items").first_seen == T0 + dt.timedelta(minutes=2)


def test_sampled_column_top_values_scale_by_the_events_sampled(tmp_path: Path) -> None:
    # 10,000 events in one row group: a sample of whole vectors took none of them (no top
    # values at all), and scaled by the nominal fraction a column on every event read less
    # (or more) than all. Rows are sampled one by one, and counts scaled by those sampled.
    write_events(tmp_path, [event(minute=i / 100, geo_city="Paris" if i % 4 == 0 else "Berlin")
                            for i in range(10_000)])
    with connect(tmp_path, "acme") as con:
        report = discover(con, DiscoverOptions(top_values_sample_rows=2_000), tenant="acme")
    tenant = _field(report, "tenant")
    assert [(v.value, v.count, v.share) for v in tenant.top_values] == [("acme", 10_000, 1.0)]
    city = {v.value: v.count for v in _field(report, "geo_city").top_values}
    assert abs(sum(city.values()) - 10_000) <= 1 and 1_500 < city["Paris"] < 3_500


def test_documents_that_share_a_duckdb_hash_stay_apart(tmp_path: Path) -> None:
    # Two contexts that DuckDB's hash() maps to one number (found on the 10M bench lake):
    # grouped by that hash, one text stood for both and its version was counted twice.
    texts = [
        '{"library":{"name":"analytics.js","version":"4.0.0"},"locale":"en-US","page":'
        '{"url":"https://shop.example/p/5151"},"userAgent":"Mozilla/5.0 (Mac OS X) Samsung '
        'Internet/120.0"}',
        '{"library":{"name":"analytics.js","version":"4.1.0"},"locale":"en-US","page":'
        '{"url":"https://shop.example/p/5158"},"userAgent":"Mozilla/5.0 (Mac OS X) Samsung '
        'Internet/120.0"}',
    ]
    write_events(tmp_path, [event(minute=i, context=texts[i % 2]) for i in range(6)])
    with connect(tmp_path, "acme") as con:
        assert con.sql(f"SELECT hash('{texts[0]}') = hash('{texts[1]}')").fetchall() == [
            (True,)]                                       # still a collision in this DuckDB
        report = discover(con, DiscoverOptions(), tenant="acme")
    version = _field(report, "context.library.version")
    assert {v.value: v.count for v in version.top_values} == {"4.0.0": 3, "4.1.0": 3}
    assert version.distinct == 2 and _field(report, "context").distinct == 2
    assert _field(report, "context.page.url").distinct == 2


def test_array_paths_fold_indices_only_and_count_each_event_once(tmp_path: Path) -> None:
    """``[n]`` folds to ``[*]`` only where it is an array index, not inside a key
    (``"size[0]"``); an event fills a path if any element holds it (a coupon on the second
    product only), once however many do."""
    write_events(tmp_path, [
        event(minute=0, properties=json.dumps({"products": [
            {"product_id": "p1"}, {"product_id": "p2", "coupon": "SPRING"}]})),
        event(minute=1, properties=json.dumps({"size[0]": "S", "products": [
            {"product_id": "p3"}]})),
        event(minute=2, properties=json.dumps({"size[1]": "M", "grid": [[1, 2], [3]]})),
        event(minute=3, properties=json.dumps({"products": [{"coupon": None}]})),
    ])
    with connect(tmp_path, "acme") as con:
        report = discover(con, DiscoverOptions(), tenant="acme")
    filled = {f.field: f.filled for f in report.catalog.fields
              if f.field.startswith("properties.")}
    assert filled == {
        "properties.products[*].product_id": 2, "properties.products[*].coupon": 1,
        'properties."size[0]"': 1, 'properties."size[1]"': 1, "properties.grid[*][*]": 1,
    }
    assert _field(report, "properties.products[*].product_id").types == {"string": 3}


def test_event_and_since_narrow_the_scope(lake: Path) -> None:
    only = _run(lake, event="Order Completed")
    assert only.catalog.events == 20 and list(only.catalog.event_names) == ["Order Completed"]
    assert "properties.variant" not in {f.field for f in only.catalog.fields}
    late = _run(lake, since=T0 + dt.timedelta(days=2))
    assert late.catalog.events == 50
    assert parse_since("30d", now=T0) == T0 - dt.timedelta(days=30)
    assert parse_since("2026-03-01") == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    with pytest.raises(AnalyticsError):
        parse_since("last tuesday")


def test_target_ranks_the_informative_field_first(lake: Path) -> None:
    report = _run(lake, target="purchase")
    t = report.target
    assert t is not None
    assert (t.sessions, t.positives, t.base_rate) == (40, 20, 0.5)
    assert t.entropy == pytest.approx(1.0)
    best = t.features[0]
    assert best.field == "geo_city"
    assert best.mutual_information == pytest.approx(1.0)
    assert {v.value: (v.sessions, v.positives, v.lift) for v in best.values} == {
        "Berlin": (20, 20, 2.0), "Paris": (20, 0, 0.0)}
    scores = {s.field: s for s in t.features}
    assert scores["properties.variant"].mutual_information == pytest.approx(0.0, abs=1e-9)
    # sent only with the purchase itself: never a value before the target
    assert "properties.coupon" not in scores or scores["properties.coupon"].coverage == 0.0
    assert "order_id" not in scores and "session_id" not in scores


def test_target_by_event_name(lake: Path) -> None:
    t = _run(lake, target="Order Completed").target
    assert t is not None and t.positives == 20 and t.features[0].field == "geo_city"


def test_json_and_html_outputs(lake: Path, tmp_path: Path) -> None:
    report = _run(lake, target="purchase")
    assert Report.model_validate_json(report.model_dump_json()) == report
    html = render_html(report)
    assert html.startswith("<!doctype html>") and html.count("<svg") > 20
    # viewable offline: nothing is loaded from anywhere
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", html, re.IGNORECASE)
    assert "geo_city" in html and "Berlin" in html


@pytest.mark.parametrize("fmt", ["table", "json", "html"])
def test_cli(lake: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    result = CliRunner().invoke(main, ["discover", "--lake", str(lake), "--tenant", "acme",
                                       "--target", "purchase", "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    if fmt == "json":
        assert json.loads(text)["target"]["features"][0]["field"] == "geo_city"
    elif fmt == "table":
        assert "properties.variant" in text and "geo_city" in text
        assert re.search(r"1\s+geo_city", text)
    else:
        assert "<svg" in text


def test_times_are_utc_whatever_the_host_time_zone(lake: Path, tmp_path: Path) -> None:
    # The JSON pass runs on a cursor, which takes the host's time zone, not the lake
    # connection's UTC: its times must still come out in UTC, like the columns'.
    out = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "driftnet", "discover", "--lake", str(lake),
                    "--tenant", "acme", "--format", "json", "-o", str(out)],
                   env={**os.environ, "TZ": "America/New_York"}, check=True, timeout=300)
    catalog = json.loads(out.read_text())["catalog"]
    fields = {(f["field"], f["event_name"]): f for f in catalog["fields"]}
    assert fields[("properties.variant", None)]["first_seen"] == fields[
        ("event_name", None)]["first_seen"]
    assert {f["first_seen"][-1] for f in fields.values() if f["first_seen"]} == {"Z"}


def test_tenant_without_data(lake: Path, tmp_path: Path) -> None:
    with connect(lake, "initech") as con:
        report = discover(con, DiscoverOptions(target="purchase"))
    assert report.catalog.events == 0 and report.target is not None
    assert report.target.sessions == 0
    # the CLI knows a tenant without data from the tenants file, and refuses a typo
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(TEST_TENANTS)
    assert "0 events" in CliRunner().invoke(
        main, ["discover", "--lake", str(lake), "--tenant", "initech", "--tenants",
               str(tenants)]).output
    refused = CliRunner().invoke(main, ["discover", "--lake", str(lake), "--tenant", "initech"])
    assert refused.exit_code == 2 and "unknown tenant 'initech'" in refused.output


def test_the_text_report_shows_control_characters_escaped(tmp_path: Path) -> None:
    """Logged text is the shoppers': an ESC sequence in a value or a key would clear the
    analyst's screen or retitle the window, a right-to-left override reorder what follows.
    The table shows them escaped, on one line."""
    nasty = "\x1b[2J\x1b]0;pwned\x07x\r\ny\x9b"
    reorder = "\u202egpj.exe\u2028z"
    rows = []
    for i in range(20):
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}"}
        rows.append(event(minute=10 * i, event_name="page_view", utm_source=nasty + str(i % 2),
                          properties=json.dumps({nasty: "v" + str(i % 2),
                                                 reorder: "w" + str(i % 2)}), **s))
        if i % 2:
            rows.append(event(minute=10 * i + 1, event_name="Order Completed",
                              product_action="purchase", **s))
    write_events(tmp_path, rows)
    result = CliRunner().invoke(main, ["discover", "--lake", str(tmp_path), "--tenant", "acme",
                                       "--target", "purchase"])
    assert result.exit_code == 0, result.output
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e\u2028]", result.output)
    assert "\\x1b[2J\\x1b]0;pwned\\x07x\\x0d y\\x9b" in result.output
    assert "\\u202egpj.exe\\u2028z" in result.output


def test_the_same_lake_gives_the_same_report_byte_for_byte(tmp_path: Path) -> None:
    """The fill-over-time fields and the aliases came in the order a hash aggregate left
    them: two runs on one lake wrote different JSON."""
    rows = [event(minute=60 * 24 * (i % 4) + i, event_name=f"e{i % 3}", product_id=f"p{i}",
                  properties=json.dumps({f"k{i % 7}": i, "product_id": f"p{i}", "n": {"x": i}}),
                  context=json.dumps({"locale": f"l{i % 5}", "page": {"path": f"/{i % 3}"}}))
            for i in range(60)]
    write_events(tmp_path, rows)
    outputs = set()
    for _ in range(6):
        with connect(tmp_path, "acme") as con:
            outputs.add(discover(con, DiscoverOptions(), tenant="acme").model_dump_json())
    assert len(outputs) == 1


def test_a_value_in_an_array_counts_once_per_event(tmp_path: Path) -> None:
    """Top values of a path in an array are events, as its fill is: X is on 20 of the 30
    events (twice on 10 of them), not 30 times in 100%."""
    docs = [[{"coupon": None}, {"coupon": "X"}], [{"coupon": "X"}, {"coupon": "X"}],
            [{"coupon": "Y"}]]
    write_events(tmp_path, [event(minute=i, properties=json.dumps({"products": docs[i % 3]}))
                            for i in range(30)])
    coupon = _field(_run(tmp_path), "properties.products[*].coupon")
    assert coupon.filled == 30
    assert [(v.value, v.count, round(v.share, 3)) for v in coupon.top_values] == [
        ("X", 20, 0.667), ("Y", 10, 0.333)]


def test_a_json_column_holding_a_scalar_is_a_field_not_a_crash(tmp_path: Path) -> None:
    """A lake written by other tools may hold properties = "promo": discover lists it."""
    write_events(tmp_path, [event(minute=0, properties=json.dumps("promo")),
                            event(minute=1, properties='{"a": 1}')])
    report = _run(tmp_path)
    assert _field(report, "properties.a").filled == 1
