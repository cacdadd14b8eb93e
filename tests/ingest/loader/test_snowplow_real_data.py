"""Real data: 160 enriched Snowplow events (tests/data/snowplow_web_events.csv, from
snowplow/dbt-snowplow-web), each turned back into the tracker-protocol GET that produced it,
sent through `driftnet up`, and compared with what the lake holds.

The CSV is Snowplow's *enriched* output, so only what the tracker sent can be rebuilt:
- the app id names the tenant, so rows without one are sent with a stand-in key;
- a self-describing event's data is in the CSV only for the schemas it has columns for
  (consent_preferences, cmp_visible); the others are sent with empty data;
- of the contexts, only web_page comes from the tracker (the rest are enrichments);
- collector_tstamp is the collector's clock: ours is now, so derived times are compared as
  offsets from it, except on the 15 rows whose derived_tstamp the dbt package's test cases
  edited by hand (they do not follow Snowplow's derived_tstamp formula).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from analytics import connect
from tests.support import ROOT, Server

CSV = ROOT / "tests" / "data" / "snowplow_web_events.csv"
NO_APP = "csv-no-app-id"
E = {"page_view": "pv", "page_ping": "pp", "struct": "se", "unstruct": "ue"}
EVENT_TYPES = {"page_view": "page", "page_ping": "page_ping", "struct": "structured",
               "unstruct": "self_describing"}
UNSTRUCT_DATA = ("consent_preferences", "cmp_visible")  # the schemas with a data column
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"

ROWS = list(csv.DictReader(CSV.open(newline="", encoding="utf-8")))


def ts(value: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC) if value else None


def ms(value: str) -> str:
    stamp = ts(value)
    assert stamp is not None
    return str(round(stamp.timestamp() * 1000))


def b64(doc: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def schema(row: dict[str, str]) -> str:
    return (f"iglu:{row['event_vendor']}/{row['event_name']}/{row['event_format']}/"
            f"{row['event_version']}")


def unstruct_data(row: dict[str, str]) -> dict[str, Any]:
    for name in UNSTRUCT_DATA:
        value = row[f"unstruct_event_com_snowplowanalytics_snowplow_{name}_1_0_0"]
        if row["event_name"] == name and value:
            data: dict[str, Any] = orjson.loads(value)[0]
            return data
    return {}


def web_page(row: dict[str, str]) -> list[dict[str, Any]]:
    return [{"schema": WEB_PAGE, "data": d} for d in orjson.loads(
        row["contexts_com_snowplowanalytics_snowplow_web_page_1_0_0"] or "[]")]


def tracker_params(row: dict[str, str]) -> dict[str, str]:
    """The query string the JavaScript tracker sent for this enriched row."""
    params = {
        "e": E[row["event"]], "eid": row["event_id"], "aid": row["app_id"] or NO_APP,
        "p": row["platform"], "tv": row["v_tracker"], "tna": row["name_tracker"],
        "dtm": ms(row["dvce_created_tstamp"]), "stm": ms(row["dvce_sent_tstamp"]),
        "duid": row["domain_userid"], "sid": row["domain_sessionid"],
        "vid": row["domain_sessionidx"], "uid": row["user_id"], "nuid": row["network_userid"],
        "url": row["page_url"], "page": row["page_title"], "refr": row["page_referrer"],
        "ua": row["useragent"], "lang": row["br_lang"], "tz": row["os_timezone"],
        "res": f"{row['dvce_screenwidth']}x{row['dvce_screenheight']}",
        "vp": f"{row['br_viewwidth']}x{row['br_viewheight']}",
        "ds": f"{row['doc_width']}x{row['doc_height']}", "cs": row["doc_charset"],
        "cd": row["br_colordepth"], "cookie": "1" if row["br_cookies"].lower() == "true" else "0",
        "pp_mix": row["pp_xoffset_min"], "pp_max": row["pp_xoffset_max"],
        "pp_miy": row["pp_yoffset_min"], "pp_may": row["pp_yoffset_max"],
        "se_ca": row["se_category"], "se_ac": row["se_action"], "se_la": row["se_label"],
        "se_pr": row["se_property"], "se_va": row["se_value"],
    }
    if row["event"] == "unstruct":
        params["ue_px"] = b64({
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": schema(row), "data": unstruct_data(row)}})
    if web_page(row):
        params["cx"] = b64({
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": web_page(row)})
    return {k: v for k, v in params.items() if v}  # the tracker leaves out empty fields


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CSV's hits, sent through a fresh `driftnet up`; yields its lake."""
    workdir = tmp_path_factory.mktemp("snowplow-real-data")
    keys = sorted({r["app_id"] for r in ROWS if r["app_id"]} | {NO_APP})
    tenants = workdir / "tenants.toml"
    tenants.write_text(f'[[tenant]]\nid = "spdata"\nwrite_keys = {orjson.dumps(keys).decode()}\n'
                       'ip_mode = "none"\n')
    server = Server(workdir, tenants).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for row in ROWS:
                r = client.get("/i", params=tracker_params(row))
                assert r.status_code == 200, r.text
                assert r.content.startswith(b"GIF8")
        server.wait_loaded()
    finally:
        code = server.stop()
    assert code == 0, server.logs()[-3000:]
    yield server.lake


def _derived_offset_holds(row: dict[str, str]) -> bool:
    created, sent = ts(row["dvce_created_tstamp"]), ts(row["dvce_sent_tstamp"])
    collected, derived = ts(row["collector_tstamp"]), ts(row["derived_tstamp"])
    assert created and sent and collected and derived
    return derived == collected - (sent - created)


def key(row: dict[str, str]) -> tuple[str, dt.datetime | None, dt.datetime | None]:
    """What tells the CSV's rows apart (its dedupe test cases repeat event ids)."""
    return row["event_id"], ts(row["dvce_created_tstamp"]), ts(row["dvce_sent_tstamp"])


LOADER_SESSION = "loader-assigned"


def expected(row: dict[str, str]) -> tuple[Any, ...]:
    name = row["se_action"] if row["event"] == "struct" else row["event_name"]
    # Without the tracker's session id the loader sessionizes the event itself (its own id;
    # the tracker's session index is kept): the CSV's "NULL domain_sessionid" case.
    session = (row["domain_sessionid"] or LOADER_SESSION, int(row["domain_sessionidx"]))
    return (
        *key(row), EVENT_TYPES[row["event"]], name, row["app_id"] or NO_APP,
        row["platform"], row["page_url"], row["page_title"] or None,
        row["page_referrer"] or None, row["page_urlhost"], row["page_urlpath"],
        row["mkt_source"] or None, row["mkt_medium"] or None, row["mkt_campaign"] or None,
        row["domain_userid"] or None, *session, row["user_id"] or None, row["network_userid"],
        row["useragent"], row["br_lang"], row["os_timezone"] or None,
        f"{row['dvce_screenwidth']}x{row['dvce_screenheight']}",
        f"{row['br_viewwidth']}x{row['br_viewheight']}",
    )


COLUMNS = (
    "event_id", "client_ts", "sent_ts", "event_type", "event_name", "app_id", "platform",
    "page_url", "page_title", "referrer", "page_host", "page_path", "utm_source", "utm_medium",
    "utm_campaign", "anonymous_id", "session_id", "session_index", "user_id",
    "network_user_id", "user_agent", "language", "timezone", "screen", "viewport",
)


def test_the_lake_reproduces_every_row(replayed: Path) -> None:
    assert len(ROWS) == 160
    with connect(replayed, "spdata") as con:
        actual = con.execute(f"SELECT {', '.join(COLUMNS)} FROM events_all").fetchall()
        quarantined = con.execute("SELECT reason, detail FROM quarantine").fetchall()
    assert quarantined == []
    got = {a[:3]: a for a in actual}
    assert len(got) == len(actual) == len(ROWS)
    sid = COLUMNS.index("session_id")
    for row in ROWS:
        if not row["domain_sessionid"]:
            a = got[key(row)]
            assert a[sid] is not None and a[sid + 1] is not None
            got[key(row)] = (*a[:sid], LOADER_SESSION, *a[sid + 1:])
    assert got == {key(row): expected(row) for row in ROWS}


def test_derived_times_correct_the_device_clock_as_snowplow_does(replayed: Path) -> None:
    """derived = collector time - (sent - created): compared as offsets from the collector's
    time (ours is now), except where the dbt test cases edited derived_tstamp by hand."""
    with connect(replayed, "spdata") as con:
        got = con.execute("SELECT event_id, client_ts, sent_ts, derived_ts - received_at "
                          "FROM events_all").fetchall()
    offsets = {(eid, created, sent): offset for eid, created, sent, offset in got}
    consistent = [r for r in ROWS if _derived_offset_holds(r)]
    assert len(ROWS) - len(consistent) == 15
    for row in ROWS:
        _, created, sent = key(row)
        assert created is not None and sent is not None
        assert offsets[key(row)] == created - sent
        if row in consistent:
            derived, collected = ts(row["derived_tstamp"]), ts(row["collector_tstamp"])
            assert derived is not None and collected is not None
            assert offsets[key(row)] == derived - collected


def test_event_payloads_survive(replayed: Path) -> None:
    """Self-describing data, contexts, structured and page-ping fields land in their JSON."""
    with connect(replayed, "spdata") as con:
        got = con.execute("SELECT event_id, client_ts, sent_ts, properties, context, "
                          "extra->>'event_schema' FROM events_all").fetchall()
    by_key = {(eid, created, sent): rest for eid, created, sent, *rest in got}
    for row in ROWS:
        props, ctx, sch = by_key[key(row)]
        assert orjson.loads(ctx or "[]") == web_page(row)
        if row["event"] == "unstruct":
            assert sch == schema(row)
            assert orjson.loads(props or "{}") == unstruct_data(row)
        elif row["event"] == "struct":
            assert orjson.loads(props) == {"category": row["se_category"],
                                           "action": row["se_action"]}
        elif row["event"] == "page_ping":
            assert orjson.loads(props) == {
                "pp_xoffset_min": int(row["pp_xoffset_min"]),
                "pp_xoffset_max": int(row["pp_xoffset_max"]),
                "pp_yoffset_min": int(row["pp_yoffset_min"]),
                "pp_yoffset_max": int(row["pp_yoffset_max"])}
        else:
            assert props is None


def test_retries_are_flagged_not_lost(replayed: Path) -> None:
    """The CSV holds the same event id more than once (the dbt package's dedupe cases): the
    lake keeps every row (events_all) and the events view shows each id once."""
    ids = [r["event_id"] for r in ROWS]
    with connect(replayed, "spdata") as con:
        (kept,) = con.execute("SELECT count(*) FROM events_all").fetchall()[0]
        shown = con.execute("SELECT event_id FROM events").fetchall()
    assert kept == len(ids)
    assert sorted(i for (i,) in shown) == sorted(set(ids))
