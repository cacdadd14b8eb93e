"""discover --target that does not mislead: leakage is flagged, support and intervals shown,
small groups never lead, session numbers ranked, time windows on event time."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analytics import connect
from analytics.discover import DiscoverOptions, Report, discover
from analytics.discover.lift import wilson
from analytics.discover.report import FeatureScore
from analytics.discover.report_html import render_html
from analytics.discover.report_table import render_text
from driftnet.cli import main
from tests.analytics.lakes import T0, event, write_events


def _leaky_shop() -> list[dict[str, Any]]:
    """405 sessions. Email sessions buy 3x as often as the others (60% vs 20%). Buyers add
    to cart (properties.quantity) and identify (traits.plan) just before the purchase; 60%
    of the others also add to cart, and browse as long (a product list). Five tiktok
    sessions all buy."""
    rows = []
    for i in range(405):
        if i >= 400:
            source, buys = "tiktok", True
        elif i % 4 == 0:
            source, buys = "email", (i // 4) % 5 < 3
        else:
            source, buys = ("google" if i % 4 == 1 else None), (i // 4) % 5 == 0
        adds = buys or (i * 7) % 10 < 6
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}"}
        m = i * 10
        rows.append(event(minute=m, event_type="page", event_name="page_view",
                          utm_source=source, **s))
        rows += [event(minute=m + k, product_id=f"p{k}", product_action="view", **s)
                 for k in (1, 2)]
        if adds:
            rows.append(event(minute=m + 5, event_name="Product Added", product_action="add",
                              product_id="p1", properties=json.dumps({"quantity": 1 + i % 3}),
                              **s))
        if buys:
            rows.append(event(minute=m + 5.5, event_type="identify", event_name="identify",
                              user_id=f"u{i}", traits=json.dumps({"plan": "pro" if i % 2
                                                                  else "free"}), **s))
            rows.append(event(minute=m + 6, event_name="Order Completed",
                              product_action="purchase", order_id=f"o{i}",
                              properties=json.dumps({"quantity": 1 + i % 3}), **s))
        else:
            rows.append(event(minute=m + 5.5, event_name="Product List Viewed",
                              product_action="list_view", **s))
    return rows


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("leaky")
    write_events(root, _leaky_shop())
    return root


def _report(lake: Path, **opts: Any) -> Report:
    with connect(lake, "acme") as con:
        return discover(con, DiscoverOptions(target="purchase", **opts), tenant="acme")


def _feature(report: Report, name: str) -> FeatureScore:
    assert report.target is not None
    return next(f for f in report.target.features if f.field == name)


def test_leaky_fields_are_suspect_and_ranked_after_a_real_predictor(leaky: Path) -> None:
    report = _report(leaky)
    t = report.target
    assert t is not None
    assert (t.sessions, t.positives) == (405, 125)
    top = t.features[0]
    assert top.field == "utm_source" and not top.suspect
    assert top.best_value == "email"
    plan, quantity = _feature(report, "traits.plan"), _feature(report, "properties.quantity")
    for leak in (plan, quantity):
        assert leak.suspect and leak.suspect_reasons
        assert t.features.index(leak) > t.features.index(top)
    # every target session that has them got them in the last quarter before the purchase
    assert any("right before the target" in r and "125 of the 125" in r
               for r in plan.suspect_reasons)
    assert any("right before the target" in r for r in quantity.suspect_reasons)
    # traits.plan exists only in buying sessions
    assert any("reach the target in 125 of 125" in r for r in plan.suspect_reasons)
    # no suspect field is ranked above a clean one
    flags = [f.suspect for f in t.features]
    assert flags == sorted(flags)


def test_lift_shows_support_and_a_wilson_interval(leaky: Path) -> None:
    report = _report(leaky)
    assert report.target is not None
    base = report.target.base_rate
    email = next(v for v in _feature(report, "utm_source").values if v.value == "email")
    assert (email.sessions, email.positives) == (100, 60)
    assert email.rate == 0.6 and not email.small
    low, high = wilson(60, 100)
    assert (email.rate_low, email.rate_high) == pytest.approx((low, high))
    assert low == pytest.approx(0.502, abs=1e-3) and high == pytest.approx(0.691, abs=1e-3)
    assert (email.lift_low, email.lift, email.lift_high) == pytest.approx(
        (low / base, 0.6 / base, high / base))
    others = [v for v in _feature(report, "utm_source").values
              if v.value in ("google", "(missing)")]
    assert [round(v.rate, 2) for v in others] == [0.2, 0.2]   # 3x less than email


def test_small_groups_are_marked_and_never_lead(leaky: Path) -> None:
    report = _report(leaky)
    source = _feature(report, "utm_source")
    tiktok = next(v for v in source.values if v.value == "tiktok")
    assert (tiktok.sessions, tiktok.positives, tiktok.small) == (5, 5, True)
    assert tiktok.lift > next(v.lift for v in source.values if v.value == "email")
    assert source.best_value == "email"          # highest lift, but 5 sessions
    assert source.score == pytest.approx(
        next(v.lift_low for v in source.values if v.value == "email"))
    # with a lower threshold tiktok is a group like the others (and then leads)
    lenient = _feature(_report(leaky, min_support=5), "utm_source")
    assert next(v for v in lenient.values if v.value == "tiktok").small is False


def test_session_numbers_are_ranked_in_quantile_buckets(leaky: Path) -> None:
    report = _report(leaky)
    assert report.target is not None
    numeric = {f.field: f for f in report.target.features if f.kind == "numeric"}
    assert {"events", "adds", "time_to_first_add_s"} <= set(numeric)
    assert "duration_s" not in numeric       # 5.5 minutes in every prefix: says nothing
    adds = numeric["adds"]
    assert adds.source == "session"
    # counted before the target: a buyer's prefix has exactly one add (and no one has more)
    assert {v.value: (v.sessions, v.positives) for v in adds.values} == {
        "0": (405 - 125 - 180, 0), "1": (125 + 180, 125)}
    # the purchase is not in the prefix: buyers have 5 events before it, not 6
    assert [v.value for v in numeric["events"].values] == ["4", "5"]


def test_since_and_until_are_event_time(tmp_path: Path) -> None:
    day = dt.timedelta(days=1)
    late = T0 + 3 * day
    rows = [event(minute=0, event_name="happened day 0, received day 3",
                  received_at=late, derived_ts=T0),
            event(minute=0, event_name="happened day 2", received_at=T0 + 2 * day,
                  derived_ts=T0 + 2 * day),
            event(minute=0, event_name="happened day 3", received_at=late, derived_ts=late)]
    write_events(tmp_path, rows)
    with connect(tmp_path, "acme") as con:
        since = discover(con, DiscoverOptions(since=T0 + day)).catalog
        until = discover(con, DiscoverOptions(until=T0 + 3 * day)).catalog
    assert set(since.event_names) == {"happened day 2", "happened day 3"}
    assert since.first_event == T0 + 2 * day and since.last_event == late
    assert set(until.event_names) == {"happened day 0, received day 3", "happened day 2"}
    out = CliRunner().invoke(main, ["discover", "--lake", str(tmp_path), "--tenant", "acme",
                                    "--since", (T0 + day).isoformat(),
                                    "--until", late.isoformat(), "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["catalog"]["event_names"] == {"happened day 2": 1}


def test_outputs_show_support_intervals_and_suspects(leaky: Path) -> None:
    report = _report(leaky)
    text = render_text(report)
    assert re.search(r"1\s+utm_source\s.*email", text)
    assert "60/100" in text and "suspect" in text
    html = render_html(report)
    body = html[html.index("<body>"):]
    # the target section comes first, after a table of contents
    assert body.index("id='toc'") < body.index("id='target'") < body.index("id='fields'")
    assert "60/100" in html and "traits.plan" in html and "suspect" in html.lower()
    # the header gives the event-time range analysed
    header = body[: body.index("id='toc'")]
    assert "2026-03-01 09:00" in header and "2026-03-04 04:26" in header
    cli = CliRunner().invoke(main, ["discover", "--lake", str(leaky), "--tenant", "acme",
                                    "--target", "purchase", "--min-support", "5",
                                    "--format", "json"])
    assert cli.exit_code == 0, cli.output
    data = json.loads(cli.output)["target"]
    assert data["min_support"] == 5 and data["features"][0]["values"][0]["rate_low"] > 0


def test_sampling_reads_whole_visitors_the_same_way_every_run(leaky: Path) -> None:
    full = _report(leaky)
    assert full.target is not None and full.target.sampled_share == 1.0
    # the leaky shop has 2,050 events: ask for about half of them
    half = _report(leaky, target_sample_events=1_100)
    again = _report(leaky, target_sample_events=1_100)
    t = half.target
    assert t is not None and again.target is not None
    assert t.sampled_share == pytest.approx(1_100 / full.catalog.events)
    # a random share of the sessions, whole: every sampled session keeps all its events
    assert 0.3 * full.target.sessions < t.sessions < 0.7 * full.target.sessions
    assert (t.sessions, t.positives) == (again.target.sessions, again.target.positives)
    assert [f.field for f in t.features] == [f.field for f in again.target.features]
    assert "(sessions of a random" in render_text(half)
    # the real predictor still leads on half the visitors
    assert t.features[0].field == "utm_source" and t.features[0].best_value == "email"


def test_keys_no_json_path_can_name_are_catalogued_and_left_out_of_ranking(
        tmp_path: Path) -> None:
    """A property logged under the empty key: the catalog lists it (``properties.""``), but
    DuckDB's JSON functions cannot read that path, so the target ranking leaves it out and
    ranks the rest, instead of failing."""
    rows = []
    for i in range(40):
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}"}
        props = json.dumps({"": f"x{i % 2}", "a\"b": f"q{i % 2}", "plan": f"p{i % 2}"})
        rows.append(event(minute=10 * i, event_name="page_view", properties=props, **s))
        if i % 2:
            rows.append(event(minute=10 * i + 1, event_name="Order Completed",
                              product_action="purchase", **s))
    write_events(tmp_path, rows)
    report = _report(tmp_path)
    assert {'properties.""', 'properties."a\\"b"', "properties.plan"} <= {
        f.field for f in report.catalog.fields}
    assert report.target is not None
    ranked = {f.field for f in report.target.features}
    assert 'properties."a\\"b"' in ranked and "properties.plan" in ranked
    assert 'properties.""' not in ranked


def test_prices_that_are_not_finite_are_left_out_of_the_price_numbers(tmp_path: Path) -> None:
    """A lake written before the loader nulled NaN and infinite prices may hold them: the
    price numbers and their buckets leave them out instead of failing (NaN bucket edges)."""
    rows = []
    for i in range(40):
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}"}
        price = [float("nan"), float("inf"), 10.0 * (i % 4 + 1)][i % 3]
        rows.append(event(minute=10 * i, product_action="view", product_id="p1", price=price,
                          **s))
        if i % 2:
            rows.append(event(minute=10 * i + 1, event_name="Order Completed",
                              product_action="purchase", **s))
    write_events(tmp_path, rows)
    report = _report(tmp_path)
    assert report.target is not None
    prices = next(f for f in report.target.features if f.field == "max_price_viewed")
    labels = [v.value for v in prices.values]
    assert "(missing)" in labels and not any("nan" in v or "inf" in v for v in labels)
    assert sum(v.sessions for v in prices.values) == 40


def test_event_scope_with_no_field_to_rank_still_ranks_the_session_numbers(
        tmp_path: Path) -> None:
    """--event names events whose fields all say nothing (no feature to read from them):
    the session numbers are ranked, without the fields' query (it failed on its unused
    parameter)."""
    rows = []
    for i in range(40):
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}"}
        rows += [event(minute=10 * i + k / 10, product_action="view", product_id="p1", **s)
                 for k in range(1 + 3 * (i % 2))]  # buyers view more
        if i % 2:
            rows.append(event(minute=10 * i + 1, event_name="Order Completed",
                              product_action="purchase", **s))
    write_events(tmp_path, rows)
    report = _report(tmp_path, event="Product Viewed", min_support=5)
    assert report.target is not None
    assert {f.source for f in report.target.features} == {"session"}


def test_a_nested_key_under_the_empty_key_is_no_alias_candidate(tmp_path: Path) -> None:
    """``properties."".price`` looks like a copy of the price column, but DuckDB's JSON
    functions cannot read its path (a binder error): it is catalogued, never compared."""
    write_events(tmp_path, [event(minute=i, product_id="p1", price=5.0, properties=json.dumps(
        {"product_id": "p1", "price": 5, "": {"price": 5}})) for i in range(3)])
    with connect(tmp_path, "acme") as con:
        report = discover(con, DiscoverOptions(), tenant="acme")
    assert 'properties."".price' in {f.field for f in report.catalog.fields}


def test_time_since_the_previous_session_is_the_same_visitors(tmp_path: Path) -> None:
    """Sessions without any visitor id are not one visitor's, and anonymous "bob" is not
    user "bob": no previous session for any of them. v1's second session has one, 60 min."""
    from analytics.discover import prefix

    rows = []
    for sid, minute, ids in (("n1", 0, {"anonymous_id": None}),
                             ("n2", 40, {"anonymous_id": None}),
                             ("b1", 0, {"anonymous_id": "bob"}),
                             ("b2", 45, {"anonymous_id": None, "user_id": "bob"}),
                             ("v1", 0, {"anonymous_id": "v1"}),
                             ("v2", 60, {"anonymous_id": "v1"}),
                             ("w0", 0, {"anonymous_id": "w"}),   # starts with the purchase
                             ("w1", 60, {"anonymous_id": "w"})):
        if sid != "w0":
            rows.append(event(minute=minute, session_id=sid, product_id="p",
                              product_action="view", **ids))
        rows.append(event(minute=minute + 1, session_id=sid, product_action="purchase",
                          order_id=f"o-{sid}", **ids))
    write_events(tmp_path, rows)
    with connect(tmp_path, "acme") as con:
        prefix.build(con, [], DiscoverOptions(target="purchase"))
        got = dict(con.execute(f"SELECT session_id, since_previous_session_s "
                               f"FROM {prefix.TABLE}").fetchall())
    # w0 has no prefix (it starts with the target) but is w1's previous session
    assert got == {"n1": None, "n2": None, "b1": None, "b2": None, "v1": None, "v2": 3600.0,
                   "w1": 3540.0}  # w0 is its purchase alone, at minute 1


def test_a_sample_keeps_sessions_whole_when_their_events_name_other_ids(
        tmp_path: Path) -> None:
    """An order names only the user id, the session's views the anonymous id: the sample
    keeps or drops the session whole (it cut sessions apart by each event's own id)."""
    from analytics.discover import prefix

    rows = []
    for i in range(200):
        rows.append(event(minute=i, session_id=f"s{i}", anonymous_id=f"a{i}",
                          product_action="view"))
        rows.append(event(minute=i + 0.5, session_id=f"s{i}", anonymous_id=None,
                          user_id=f"u{i}", product_action="purchase", order_id=f"o{i}"))
    write_events(tmp_path, rows)
    with connect(tmp_path, "acme") as con:
        counts = con.execute(f"SELECT session_id, count(*) FROM {prefix._sampled_events(0.5)} "
                             "GROUP BY ALL").fetchall()
    assert 50 < len(counts) < 150 and {n for _, n in counts} == {2}


def test_a_target_no_session_reaches_has_zero_entropy_not_minus_zero() -> None:
    """The report printed "H = -0.0000 bits" (and "entropy": -0.0) at a base rate of 0."""
    from analytics.discover.lift import _entropy

    assert f"{_entropy(1.0, 0.0):.4f}" == "0.0000" and f"{_entropy(0.0, 1.0)}" == "0.0"


def test_a_lift_at_a_base_rate_of_zero_is_undefined_in_every_output(tmp_path: Path) -> None:
    """No session reaches the target: a lift (rate / base rate) is undefined. It printed
    ``x0.00 [0.00-0.00]`` everywhere and ranked as a score of 0; now it is null in the JSON,
    ``n/a`` in the table and the HTML, and no feature has a score or a best group."""
    rows = []
    for i in range(80):
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}"}
        rows.append(event(minute=10 * i, event_type="page", event_name="page_view",
                          utm_source=("email", "google")[i % 2], **s))
        rows += [event(minute=10 * i + k, product_action="view", product_id="p", **s)
                 for k in range(1, 2 + i % 3)]
    write_events(tmp_path, rows)
    cli = CliRunner().invoke(main, ["discover", "--lake", str(tmp_path), "--tenant", "acme",
                                    "--target", "purchase", "--format", "json"])
    assert cli.exit_code == 0, cli.output
    data = json.loads(cli.output)["target"]
    assert (data["sessions"], data["positives"], data["base_rate"]) == (80, 0, 0.0)
    features = data["features"]
    assert {"utm_source", "events", "product_views"} <= {f["field"] for f in features}
    assert all(f["score"] is None and f["best_value"] is None for f in features)
    values = [v for f in features for v in f["values"]]
    assert values and all((v["lift"], v["lift_low"], v["lift_high"]) == (None, None, None)
                          for v in values)
    report = _report(tmp_path)
    assert Report.model_validate_json(report.model_dump_json()) == report
    text = render_text(report)
    assert "x0.00" not in text and "lift is undefined" in text
    assert re.search(r"\d+\s+utm_source\s+categorical\s+n/a\s", text)
    html = render_html(report)
    assert "x0.00" not in html and "score n/a" in html and ">n/a</td>" in html


def test_bucket_labels_say_what_each_bucket_holds(tmp_path: Path) -> None:
    """The lowest bucket of an integer read ``< 1`` where it held only 0 (the docs show
    ``0``), ``< -5`` for -6, and negative ranges read ``-5--4`` and ``-1-0``; a float's
    lowest bucket ``< 1.75`` for values from 0.5."""
    rows = []
    for i in range(100):
        s = {"session_id": f"s{i}", "anonymous_id": f"v{i}", "session_index": i % 10 - 6}
        rows.append(event(minute=10 * i, event_type="page", event_name="page_view", **s))
        views = 0 if i % 10 == 0 else 1 + i % 5   # none in 10% of the sessions, else 1-5
        rows += [event(minute=10 * i + 1 + k / 10, product_action="view", product_id="p",
                       price=1.25 * (i % 7) + 0.5, **s) for k in range(views)]
        if i % 2:
            rows.append(event(minute=10 * i + 5, event_name="Order Completed",
                              product_action="purchase", **s))
    write_events(tmp_path, rows)
    report = _report(tmp_path, min_support=5)
    assert report.target is not None
    labels = {f.field: [(v.value, v.sessions) for v in f.values]
              for f in report.target.features if f.kind == "numeric"}
    assert labels["product_views"] == [("0", 10), ("1", 10), ("2", 20), ("3", 20),
                                       ("≥ 4", 40)]
    assert labels["session_index"] == [("-6", 10), ("-5 to -4", 20), ("-3 to -2", 20),
                                       ("-1 to 0", 20), ("≥ 1", 30)]
    assert labels["max_price_viewed"] == [("[0.5, 1.75)", 13), ("[1.75, 3)", 14),
                                          ("[3, 5.5)", 25), ("[5.5, 6.75)", 13),
                                          ("≥ 6.75", 25), ("(missing)", 10)]


def test_event_scope_samples_by_all_the_events_the_analysis_reads(leaky: Path) -> None:
    """--event narrows the fields read, not the sessions: their numbers count every event.
    The sample was sized by the --event events alone (405 page views of 2,050 events), so
    past --sample-events it read every session; it is sized by all the events read."""
    full = _report(leaky)
    half = _report(leaky, target_sample_events=1_100)
    scoped = _report(leaky, event="page_view", target_sample_events=1_100)
    assert scoped.catalog.events == 405 < 1_100 < full.catalog.events == 2_050
    t, h = scoped.target, half.target
    assert t is not None and h is not None
    assert t.sampled_share == h.sampled_share == pytest.approx(1_100 / 2_050)
    # the same visitors as without --event: a share of the sessions, not all of them
    assert (t.sessions, t.positives) == (h.sessions, h.positives)
    assert full.target is not None and t.sessions < 0.7 * full.target.sessions
