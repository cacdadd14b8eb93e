"""`driftnet status`: freshness, windows, files and retention read from a real lake."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from ingest.lake.status import lake_status
from schemas.errors import LakeError
from schemas.storage import LakeLocation
from schemas.tenants import Tenants
from tests.support import KEYS, Server, lake_files, lake_rows


def _driftnet(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "driftnet", *args], capture_output=True,
                          check=False, timeout=120)


@pytest.fixture
def loaded(server: Server) -> Server:
    for i in range(4):
        body = {"type": "track", "event": "E", "anonymousId": "a", "messageId": f"m{i}"}
        assert server.post("/v1/track", body, KEYS["acme"]).status_code == 200
    assert server.post("/v1/track", b"not json", KEYS["acme"]).status_code == 200
    server.wait_loaded()
    return server


def test_freshness_windows_files_and_retention(loaded: Server, tenants: Tenants) -> None:
    lake = LakeLocation.parse(loaded.lake)
    now = dt.datetime.now(dt.UTC)
    report = lake_status(lake, tenants=tenants, stale_after_s=3600, now=now)
    by_tenant = {t.tenant: t for t in report.tenants}
    assert set(by_tenant) == {"acme", "globex", "initech"}  # the file's tenants, even empty
    acme = by_tenant["acme"]
    newest = lake_rows(loaded.lake, "events", "SELECT max(received_at) FROM t", "acme")[0][0]
    assert acme.newest_event_received_at is not None
    assert abs((acme.newest_event_received_at - newest).total_seconds()) < 0.002  # ms stats
    assert acme.age_s is not None and 0 <= acme.age_s < 60 and not acme.stale
    assert acme.last_hour.written == acme.last_day.written == 4
    assert acme.last_day.quarantined_by_reason == dict(
        lake_rows(loaded.lake, "quarantine", "SELECT reason, count(*) FROM t GROUP BY 1",
                  "acme"))
    assert acme.quarantine_rate_day == pytest.approx(1 / 5)
    assert sum(acme.last_day.quarantine_rate_by_reason.values()) == pytest.approx(1 / 5)
    assert acme.duplicate_rate_day == 0
    for table in ("raw", "events", "quarantine"):
        files = lake_files(loaded.lake, table, "acme")
        assert acme.tables[table].files == len(files)
        assert acme.tables[table].bytes == sum(Path(f).stat().st_size for f in files)
    assert acme.oldest_date == now.date()
    assert acme.retention_days == 400
    assert acme.expires_before == now.date() - dt.timedelta(days=400)
    assert by_tenant["globex"].stale and by_tenant["globex"].age_s is None
    assert report.stale == ["globex", "initech"]


def test_windows_follow_the_clock(loaded: Server) -> None:
    lake = LakeLocation.parse(loaded.lake)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    acme = lake_status(lake, tenant="acme", stale_after_s=3600, now=later).tenants[0]
    assert acme.last_hour.received == 0 and acme.last_day.received == 5
    assert acme.stale and acme.age_s is not None and acme.age_s > 7000
    much_later = later + dt.timedelta(days=2)
    acme = lake_status(lake, tenant="acme", now=much_later).tenants[0]
    assert acme.last_day.received == 0 and not acme.stale  # no threshold: never stale
    assert acme.tables["events"].files >= 1  # the files are still there


def test_cli_exit_code_table_and_json(loaded: Server, tenants_file: Path) -> None:
    lake = str(loaded.lake)
    fresh = _driftnet("status", "--lake", lake, "--tenant", "acme", "--stale-after", "1h")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.decode().splitlines()[1].startswith("acme ")
    stale = _driftnet("status", "--lake", lake, "--tenants", str(tenants_file),
                      "--stale-after", "15m")
    assert stale.returncode == 3, stale.stderr
    assert "stale (no event for 15m): globex, initech" in stale.stdout.decode()
    deadline = time.monotonic() + 30  # the loader measures its lag within 1 s of a flush
    while True:
        doc = orjson.loads(_driftnet("status", "--lake", lake, "--format", "json",
                                     "--metrics-url", f"{loaded.url}/metrics",
                                     "--metrics-url", "http://127.0.0.1:9/metrics").stdout)
        ok, unreachable = doc["loaders"]
        if ok["lag_records"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [t["tenant"] for t in doc["tenants"]] == ["acme"]
    assert ok["reachable"] and ok["lag_records"] == 0 and ok["error"] is None
    assert ok["lag_seconds"] == 0 and 0 <= ok["last_flush_age_s"] < 60
    assert not unreachable["reachable"] and unreachable["error"]
    bad = _driftnet("status", "--lake", lake, "--stale-after", "soon")
    assert bad.returncode == 2 and b"not a duration" in bad.stderr
    unknown = _driftnet("status", "--lake", lake, "--tenant", "nobody")
    assert unknown.returncode == 2 and b"unknown tenant" in unknown.stderr


def test_an_empty_lake_has_no_tenants(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    report = lake_status(LakeLocation.parse(tmp_path / "lake"), stale_after_s=60)
    assert report.tenants == [] and report.stale == []
    with pytest.raises(LakeError, match="lake directory not found"):  # not an empty lake
        lake_status(LakeLocation.parse(tmp_path / "no-such-lake"), stale_after_s=60)
