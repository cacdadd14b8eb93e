"""The lake on an S3-compatible server (moto's, real HTTP): the whole pipeline, kill -9,
every command, and tenant confinement."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import duckdb
import httpx
import orjson
import pytest

from analytics import connect
from analytics.errors import TenantScopeError
from schemas.delta import table_snapshot
from schemas.storage import LakeLocation
from tests.support import KEYS, Server, basic


def _driftnet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftnet", *args], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=300)


def _post_many(server: Server, ids: list[str], accepted: list[str], stop: threading.Event,
               tenant: str = "acme") -> None:
    with httpx.Client(timeout=10) as client:
        for i in range(0, len(ids), 5):
            if stop.is_set():
                return
            chunk = ids[i:i + 5]
            body = {"batch": [{"type": "track", "event": "Product Viewed",
                               "anonymousId": f"visitor-{j % 7}", "messageId": m}
                              for j, m in enumerate(chunk)]}
            try:
                r = client.post(f"{server.url}/v1/batch", content=orjson.dumps(body),
                                headers={"Authorization": basic(KEYS[tenant]),
                                         "Content-Type": "application/json"})
            except httpx.HTTPError:
                return  # the server was killed: this request was not acknowledged
            if r.status_code == 200:
                accepted.extend(chunk)


def _event_ids(lake: str, tenant: str = "acme") -> list[str]:
    with connect(lake, tenant) as con:
        return [r[0] for r in con.execute("SELECT event_id FROM events_all").fetchall()]


def test_the_pipeline_on_object_storage_loads_every_event_once_through_kill_9(
        tmp_path: Path, tenants_file: Path, s3_lake: str, s3_env: dict[str, str]) -> None:
    server = Server(tmp_path, tenants_file, lake_uri=s3_lake, extra_env=s3_env,
                    flush_interval=0.2).start()
    ids = [uuid.uuid4().hex for _ in range(600)]
    accepted: list[str] = []
    stop = threading.Event()
    sender = threading.Thread(target=_post_many, args=(server, ids, accepted, stop))
    sender.start()
    time.sleep(1.5)
    server.kill()  # mid-traffic, mid-flush perhaps
    stop.set()
    sender.join()
    restarted = Server(tmp_path, tenants_file, lake_uri=s3_lake, extra_env=s3_env,
                       flush_interval=0.2, port=server.port).start()
    try:
        rest = [i for i in ids if i not in set(accepted)][:100]
        _post_many(restarted, rest, accepted, threading.Event())
        restarted.wait_loaded(timeout_s=120)
    finally:
        assert restarted.stop() == 0, restarted.logs()[-3000:]
    assert accepted, server.logs()[-3000:]
    # every acknowledged event exactly once (an unacknowledged one may be there too)
    counts = Counter(_event_ids(s3_lake))
    assert all(counts[i] == 1 for i in accepted), [i for i in accepted if counts[i] != 1][:5]
    assert max(counts.values()) == 1
    # nothing went to local disk: the lake is the bucket
    assert not (tmp_path / "lake").exists()
    assert table_snapshot(LakeLocation.parse(s3_lake), "events", "acme").files
    # the session state lives in the bucket too
    bucket, prefix = s3_lake.removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/_state/sessions/").get("Contents", [])]
    assert any(k.endswith(".parquet") for k in keys)

    # the other commands take the URL as well
    n = len(counts)
    out = _driftnet("sql", "--lake", s3_lake, "--tenant", "acme", "--format", "csv",
                    "SELECT count(*) AS n FROM events", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == str(n)
    out = _driftnet("maintain", "--lake", s3_lake, "--once", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = _driftnet("discover", "--lake", s3_lake, "--tenant", "acme", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # replay rebuilds the days from raw: the same events
    before_replay = _event_ids(s3_lake)
    with connect(s3_lake, "acme") as con:
        first, last = con.execute("SELECT min(date), max(date) FROM raw").fetchall()[0]
    out = _driftnet("replay", "--lake", s3_lake, "--tenant", "acme", "--from", str(first),
                    "--to", str(last), "--force", "--tenants", str(tenants_file), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(_event_ids(s3_lake)) == sorted(before_replay)
    out = _driftnet("forget", "--lake", s3_lake, "--tenant", "acme", "--anonymous-id",
                    "visitor-3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with connect(s3_lake, "acme") as con:
        left = con.execute("SELECT count(*), count(*) FILTER (anonymous_id = 'visitor-3') "
                           "FROM events_all").fetchall()[0]
    assert left[1] == 0 and 0 < left[0] < n
    out = _driftnet("export", "--lake", s3_lake, "--tenant", "acme", "--recipe", "sessions",
                    "--out", str(tmp_path / "export"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def two_tenant_s3_lake(tmp_path: Path, tenants_file: Path, s3_lake: str,
                       s3_env: dict[str, str]) -> str:
    server = Server(tmp_path, tenants_file, lake_uri=s3_lake, extra_env=s3_env).start()
    try:
        for tenant in ("acme", "globex"):
            r = server.post("/v1/track", {"type": "track", "event": f"secret-{tenant}",
                                          "anonymousId": "a", "messageId": uuid.uuid4().hex},
                            key=KEYS[tenant])
            assert r.status_code == 200
        server.wait_loaded(timeout_s=60)
    finally:
        assert server.stop() == 0, server.logs()[-3000:]
    return s3_lake


ESCAPES = [
    "SELECT * FROM read_parquet('{lake}/events/tenant=globex/*/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/**/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/tenant=acme/../tenant=globex/*/*.parquet')",
    "SELECT * FROM parquet_metadata('{lake}/events/tenant=globex/*/*.parquet')",
    "SELECT * FROM glob('{lake}/**')",
    "SELECT * FROM read_text('{lake}/events/tenant=globex/*/*.parquet')",
    "SELECT * FROM read_blob('{lake}/raw/tenant=globex/*/*.parquet')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_json('{endpoint}/{bucket}?list-type=2')",
    "COPY (SELECT 1) TO '{lake}/x.csv'",
    "SET enable_external_access = true",
    "SET python_enable_replacements = true",
    "RESET lock_configuration",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM boto3",
    "SELECT * FROM os",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_a_tenant_session_on_object_storage_reads_only_its_own_objects(
        two_tenant_s3_lake: str, s3_env: dict[str, str], sql: str) -> None:
    lake = two_tenant_s3_lake
    bucket = lake.removeprefix("s3://").split("/", 1)[0]
    with connect(lake, "acme") as con:
        names = {r[0] for r in con.execute("SELECT event_name FROM events").fetchall()}
        assert names == {"secret-acme"}
        for view in ("events", "raw", "quarantine"):
            tenants = {r[0] for r in con.execute(f"SELECT DISTINCT tenant FROM {view}")
                       .fetchall()}
            assert tenants <= {"acme"}, view
        with pytest.raises(duckdb.Error):
            con.execute(sql.format(lake=lake, bucket=bucket,
                                   endpoint=s3_env["AWS_ENDPOINT_URL"])).fetchall()


def test_pinned_files_outside_the_tenant_are_refused_on_object_storage(
        two_tenant_s3_lake: str) -> None:
    lake = two_tenant_s3_lake
    others = [f.path for f in table_snapshot(LakeLocation.parse(lake), "events", "globex").files]
    for pinned in (f"events/{others[0]}", f"events/tenant=acme/../{others[0]}",
                   f"s3://x/events/{others[0]}"):
        with pytest.raises(TenantScopeError):
            connect(lake, "acme", files={"events": [pinned]})


def test_a_prefix_without_a_lake_is_an_error_not_an_empty_lake(tmp_path: Path, s3_lake: str,
                                                                tenants_file: Path) -> None:
    """A mistyped prefix (the bucket exists, nothing is under it) must not read as a quiet
    lake (`status` exit 0), an empty one (`sql`), or a done erasure (`forget` exit 0, with a
    receipt and empty tables created under the typo)."""
    for args in (["status"], ["sql", "--all-tenants", "select count(*) from events"],
                 ["forget", "--tenant", "acme", "--anonymous-id", "someone-12345678"],
                 ["compact"],
                 ["replay", "--tenants", str(tenants_file), "--tenant", "acme", "--from",
                  "2026-01-01", "--to", "2026-01-02"]):
        out = _driftnet(args[0], "--lake", s3_lake, *args[1:], cwd=tmp_path)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "no lake at this location" in out.stderr, (args, out.stderr)
    bucket = s3_lake.split("/")[2]
    listed = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=bucket)
    assert listed.get("KeyCount", 0) == 0
