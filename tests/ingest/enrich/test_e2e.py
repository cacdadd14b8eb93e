"""The enrichment chain end to end: HTTP beacons into a real `driftnet up`, rows out of the lake."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics import connect
from tests.ingest.enrich.helpers import build_mmdb
from tests.support import Server

TENANTS = """
[[tenant]]
id = "acme"
write_keys = ["acme-key"]
allowed_origins = ["*"]
ip_mode = "hash"
ip_salt = "acme-salt"

[[tenant]]
id = "globex"
write_keys = ["globex-key"]
allowed_origins = ["*"]
"""
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
          "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CLIENT_IP, FORWARDED_IP = "81.2.69.160", "89.160.20.112"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "tenants.toml").write_text(TENANTS)
    build_mmdb(tmp_path / "city.mmdb")
    return tmp_path


def _server(workdir: Path) -> Server:
    env = {"DRIFTNET_ENRICH__GEO__DATABASE": str(workdir / "city.mmdb")}
    return Server(workdir, workdir / "tenants.toml", extra_env=env)


@pytest.fixture
def server(workdir: Path) -> Iterator[Server]:
    srv = _server(workdir).start()
    yield srv
    assert srv.stop() == 0, srv.logs()[-3000:]


def _iso(ts: dt.datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _send(server: Server, tenant: str, *messages: dict[str, Any],
          headers: dict[str, str] | None = None) -> None:
    key = f"{tenant}-key"
    for message in messages:
        r = server.post("/v1/track", {"type": "track", "event": "Product Viewed",
                                      "messageId": str(uuid.uuid4()), **message},
                        key=key, headers=headers)
        assert r.status_code == 200, r.text
    server.wait_loaded()


def _rows(server: Server, tenant: str, sql: str) -> list[tuple[Any, ...]]:
    with connect(server.lake, tenant) as con:
        return con.execute(sql).fetchall()


def test_enriched_columns_in_the_lake(server: Server) -> None:
    page = "https://shop.acme.example/p/1?utm_source=google&utm_medium=cpc&gclid=Cj0KCQ"
    _send(server, "acme", {
        "anonymousId": "visitor-1", "timestamp": _iso(dt.datetime.now(dt.UTC)),
        "context": {"ip": CLIENT_IP, "userAgent": IPHONE,
                    "page": {"url": page, "referrer": "https://www.google.com/"}},
    })
    _send(server, "acme", {"anonymousId": "visitor-2"},
          headers={"User-Agent": CHROME, "Sec-CH-UA": '"Google Chrome";v="131"',
                   "Sec-CH-UA-Platform": '"Windows"', "Sec-CH-UA-Platform-Version": '"15.0.0"',
                   "X-Forwarded-For": f"{FORWARDED_IP}, 10.0.0.1"})
    _send(server, "acme", {"anonymousId": "crawler"}, headers={"User-Agent": GOOGLEBOT})
    rows = _rows(server, "acme", """
        SELECT anonymous_id, ua_browser, ua_os, ua_os_version, ua_device, is_bot, bot_reason,
               geo_country, geo_region, geo_city, referrer_class, referrer_source, click_id_type,
               utm_medium, session_index, session_id IS NOT NULL, length(ip)
        FROM events ORDER BY anonymous_id""")
    assert rows == [
        ("crawler", "Googlebot", None, None, "bot", True, "crawler:Googlebot/", None, None, None,
         "direct", None, None, None, 1, True, 32),
        ("visitor-1", "Mobile Safari", "iOS", "18.1", "mobile", False, None, "GB", "ENG",
         "London", "paid", "Google", "gclid", "cpc", 1, True, 32),
        ("visitor-2", "Chrome", "Windows", "11", "desktop", False, None, None, None, None,
         "direct", None, None, None, 1, True, 32),
    ]


def _strings(table: pa.Table) -> Iterator[str]:
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
            for value in column.to_pylist():
                if value is not None:
                    yield value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def test_hash_mode_never_writes_the_ip(server: Server) -> None:
    _send(server, "acme", {"anonymousId": "v", "context": {"ip": CLIENT_IP}},
          headers={"X-Forwarded-For": f"{FORWARDED_IP}, {CLIENT_IP}"})
    _send(server, "acme", {"anonymousId": "v", "event": 42, "context": {"ip": CLIENT_IP}},
          headers={"X-Forwarded-For": FORWARDED_IP})  # quarantined: event is not a string
    files = sorted(server.lake.glob("*/tenant=acme/date=*/*.parquet"))
    assert {f.parts[-4] for f in files} == {"raw", "events", "quarantine"}
    for path in files:
        leaked = [s for s in _strings(pq.read_table(path)) if CLIENT_IP in s or FORWARDED_IP in s]
        assert not leaked, (path, leaked)
    assert _rows(server, "acme", "SELECT count(*) FROM events WHERE geo_city = 'London'") == [
        (1,)]


def test_sessions_across_batches_and_a_restart(workdir: Path) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)

    def at(minutes: float) -> dict[str, Any]:
        ts = start + dt.timedelta(minutes=minutes)
        return {"anonymousId": "returning", "timestamp": _iso(ts)}

    first = _server(workdir).start()
    try:
        _send(first, "globex", at(0))  # each _send waits for its own batch
        _send(first, "globex", at(10))
    finally:
        assert first.stop() == 0, first.logs()[-3000:]
    # the state outlives the loader in the lake's state table, not in a local file
    assert (workdir / "lake" / "_state" / "sessions" / "_delta_log").is_dir()
    assert not list((workdir / "lake").rglob("*.sqlite"))
    second = _server(workdir).start()
    try:
        _send(second, "globex", at(25))
        _send(second, "globex", at(100), at(110))
        rows = _rows(second, "globex", "SELECT session_id, session_index FROM events "
                                       "ORDER BY derived_ts")
    finally:
        assert second.stop() == 0, second.logs()[-3000:]
    assert len(rows) == 5
    assert rows[0] == rows[1] == rows[2] and rows[0][1] == 1
    assert rows[3] == rows[4] and rows[3][1] == 2 and rows[3][0] != rows[0][0]
