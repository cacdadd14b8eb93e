"""`driftnet sql` as a user runs it: one-shot queries in every format, params, errors, REPL."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from tests.support import Server


def driftnet(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftnet", *args], capture_output=True,
                          text=True, input=stdin, timeout=60, check=False)


@pytest.fixture(scope="module")
def lake(shared_server: Server) -> Path:
    for i in range(3):
        r = shared_server.post("/v1/track", {"type": "track", "event": "CLI Test",
                                             "anonymousId": f"a{i}", "properties": {"n": i},
                                             "messageId": str(uuid.uuid4())}, key="acme-key")
        assert r.status_code == 200
    shared_server.wait_loaded()
    return shared_server.lake


QUERY = ("SELECT anonymous_id, properties->>'n' AS n FROM events "
         "WHERE event_name = 'CLI Test' ORDER BY anonymous_id")


def test_json(lake: Path) -> None:
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", "--format", "json", QUERY)
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout) == [{"anonymous_id": f"a{i}", "n": str(i)} for i in range(3)]


def test_csv(lake: Path) -> None:
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", "--format", "csv", QUERY)
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows == [["anonymous_id", "n"], ["a0", "0"], ["a1", "1"], ["a2", "2"]]


def test_table(lake: Path) -> None:
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", QUERY)
    assert out.returncode == 0
    assert "anonymous_id" in out.stdout and "a2" in out.stdout and "│" in out.stdout


def test_table_shows_times_in_utc_whatever_the_machines_zone(lake: Path) -> None:
    """The table, like csv and json, writes UTC: a Tokyo terminal showed +09 beside the
    UTC dates computed in the same query."""
    query = "SELECT TIMESTAMPTZ '2026-03-04 23:30:00+00' AS t"
    out = subprocess.run([sys.executable, "-m", "driftnet", "sql", "--lake", str(lake),
                          "--tenant", "acme", query], capture_output=True, text=True,
                         timeout=60, check=False, env={**os.environ, "TZ": "Asia/Tokyo"})
    assert out.returncode == 0, out.stderr
    assert "2026-03-04 23:30:00+00" in out.stdout, out.stdout


def test_parquet_to_file(lake: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", "--format", "parquet",
                   "--output", str(target), QUERY)
    assert out.returncode == 0, out.stderr
    assert pq.read_table(target).column("anonymous_id").to_pylist() == ["a0", "a1", "a2"]


def test_named_parameters(lake: Path) -> None:
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", "--format", "json",
                   "-p", "name=CLI Test", "-p", "anon=a1",
                   "SELECT count(*) AS n FROM events WHERE event_name = $name "
                   "AND anonymous_id = $anon")
    assert orjson.loads(out.stdout) == [{"n": 1}]


def test_errors_are_one_line(lake: Path) -> None:
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", "SELECT nope FROM events")
    assert out.returncode == 1
    assert out.stderr.startswith("driftnet: error: query failed")
    assert "Traceback" not in out.stderr
    out = driftnet("sql", "--lake", str(lake), "SELECT 1")
    assert out.returncode == 2 and "--tenant" in out.stderr


def test_query_from_stdin(lake: Path) -> None:
    out = driftnet("sql", "--lake", str(lake), "--tenant", "acme", "--format", "csv",
                   stdin="SELECT 41 + 1 AS answer")
    assert out.stdout.splitlines() == ["answer", "42"]
