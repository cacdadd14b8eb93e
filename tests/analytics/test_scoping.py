"""A tenant-scoped connection cannot read another tenant's files, nor write into the lake.

A real lake with three tenants (``acme2`` shares a prefix with ``acme``); every attempt
runs against a real DuckDB connection from ``analytics.connect``. Each read attempt must
fail, or return nothing of another tenant; each write attempt through a SQL entry point
must be refused before it runs and leave no file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from analytics import connect
from analytics.errors import TenantScopeError
from analytics.readonly import check_read_only
from driftnet.cli import main
from tests.analytics.lakes import event, write_events

SECRET = "globex-secret-value"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    write_events(root, [event("acme", minute=0, page_title="acme page")])
    write_events(root, [event("globex", minute=0, page_title=SECRET)])
    write_events(root, [event("acme2", minute=0, page_title=SECRET)])
    (root / "tenants.toml").write_text(f"# {SECRET}\n")
    return root


@pytest.fixture
def con(lake: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(lake, "acme")
    yield c
    c.close()


def _file(lake: Path, tenant: str) -> str:
    return str(next((lake / "events" / f"tenant={tenant}").glob("date=*/*.parquet")))


def read_attempts(lake: Path) -> list[str]:
    """SQL that would reveal another tenant's data (or any other file) if scoping leaked."""
    g = _file(lake, "globex")
    a2 = _file(lake, "acme2")
    own = _file(lake, "acme")
    ev = lake / "events"
    date_dir = Path(own).parent.name
    return [
        f"SELECT * FROM read_parquet('{g}')",
        f"SELECT * FROM '{g}'",
        f"SELECT * FROM read_parquet('{ev}/tenant=globex/*/*.parquet')",
        f"SELECT * FROM read_parquet('{ev}/tenant=*/*/*.parquet')",
        f"SELECT * FROM read_parquet('{ev}/**/*.parquet')",
        f"SELECT * FROM read_parquet('{ev}/tenant=acme*/*/*.parquet')",
        f"SELECT * FROM read_parquet('{a2}')",
        f"SELECT * FROM read_parquet(['{own}', '{g}'])",
        f"SELECT * FROM read_parquet('{ev}/tenant=acme/../tenant=globex/{date_dir}/"
        f"{Path(g).name}')",
        f"SELECT * FROM read_parquet('{ev}/tenant=acme/{date_dir}/../../tenant=globex/"
        f"{Path(g).parent.name}/{Path(g).name}')",
        f"SELECT * FROM read_parquet('{ev}//tenant=globex/{Path(g).parent.name}/"
        f"{Path(g).name}')",
        f"SELECT * FROM read_parquet('file://{g}')",
        "SELECT * FROM read_parquet('events/tenant=globex/*/*.parquet')",
        f"SELECT * FROM parquet_metadata('{g}')",
        f"SELECT * FROM parquet_schema('{g}')",
        f"SELECT * FROM parquet_file_metadata('{g}')",
        f"SELECT * FROM parquet_kv_metadata('{g}')",
        f"SELECT * FROM glob('{ev}/*')",
        f"SELECT * FROM glob('{lake}/**')",
        f"SELECT * FROM read_text('{g}')",
        f"SELECT * FROM read_blob('{g}')",
        f"SELECT * FROM read_text('{lake}/tenants.toml')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_csv_auto('{lake}/tenants.toml')",
        f"SELECT * FROM sniff_csv('{lake}/tenants.toml')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        f"SELECT * FROM read_json('{lake}/tenants.toml')",
        f"SELECT * FROM read_json_objects('{lake}/tenants.toml')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
        "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
        f"CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet('{g}')",
        f"CREATE TABLE stolen AS SELECT * FROM read_parquet('{g}')",
        f"ATTACH '{lake}/x.db' AS x",
        f"COPY (SELECT 1) TO '{lake}/x.csv'",
        f"IMPORT DATABASE '{lake}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "LOAD '/tmp/evil.duckdb_extension'",
        "CREATE PERSISTENT SECRET (TYPE s3, KEY_ID 'a', SECRET 'b')",
        "SET enable_external_access = true",
        f"SET allowed_directories = ['{lake}/']",
        f"SET allowed_paths = ['{g}']",
        "RESET allowed_directories",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET GLOBAL enable_external_access = true",
        f"SET temp_directory = '{ev}/tenant=globex'",
        "SET disabled_filesystems = ''",
        "SET autoinstall_known_extensions = true",
        "SET allow_unsigned_extensions = true",
        "PRAGMA enable_profiling; PRAGMA profile_output = '/tmp/profile.json'",
        # the snapshot filesystem (analytics/snapshot_fs.py) knows only acme's files
        f"SELECT * FROM read_parquet('dnsnap://events/tenant=globex/{Path(g).parent.name}/"
        f"{Path(g).name}')",
        f"SELECT * FROM read_parquet('dnsnap://events/tenant=acme/../tenant=globex/"
        f"{Path(g).parent.name}/{Path(g).name}')",
        "SELECT * FROM read_parquet('dnsnap://events/tenant=globex/*/*.parquet')",
        "SELECT * FROM read_text('dnsnap://tenants.toml')",
        "SELECT * FROM read_text('dnsnap:///etc/passwd')",
        f"SELECT * FROM read_text('dnsnap://{lake}/tenants.toml')",
    ]


def test_every_read_escape_fails(lake: Path, con: duckdb.DuckDBPyConnection,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lake)  # relative paths resolve inside the lake
    ran = []
    for sql in read_attempts(lake):
        try:
            result = con.sql(sql)
            ran.append((sql, result.fetchall() if result is not None else None))
        except duckdb.Error:
            continue
    assert ran == []
    # the session still works, and only on acme
    assert con.sql("SELECT DISTINCT tenant, page_title FROM events").fetchall() == [
        ("acme", "acme page")]
    assert SECRET not in repr(con.sql("SELECT * FROM sessions").fetchall())


def test_python_api_is_scoped_too(lake: Path, con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.Error):
        con.read_parquet(_file(lake, "globex")).fetchall()
    with pytest.raises(duckdb.Error):
        con.read_csv(str(lake / "tenants.toml")).fetchall()


def test_hive_filter_on_tenant_cannot_widen_the_scope(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.sql("SELECT count(*) FROM events_all WHERE tenant <> 'acme'").fetchall()
    assert rows == [(0,)]


WRITES = [
    "COPY (SELECT 1 AS a) TO '{own}/evil.parquet' (FORMAT parquet)",
    "COPY (SELECT 1) TO '{own}/evil.csv'",
    "SELECT 1; COPY (SELECT 1) TO '{own}/evil.csv'",
    "ATTACH '{own}/evil.db' AS evil",
    "EXPORT DATABASE '{own}/evil'",
    "IMPORT DATABASE '{own}'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "DETACH memory",
]


@pytest.mark.parametrize("template", WRITES)
def test_sql_entry_points_refuse_writes_into_the_lake(lake: Path, template: str) -> None:
    """DuckDB lets a session write into its allowed directories; our guard must not."""
    own_dir = Path(_file(lake, "acme")).parent
    sql = template.format(own=own_dir)
    before = sorted(os.listdir(own_dir))
    with connect(lake, "acme") as con, pytest.raises(TenantScopeError):
        check_read_only(con, sql)
    result = CliRunner().invoke(main, ["sql", "--lake", str(lake), "--tenant", "acme", sql])
    assert result.exit_code != 0
    assert "not allowed" in result.output
    assert sorted(os.listdir(own_dir)) == before


def test_harmless_statements_pass_the_guard(con: duckdb.DuckDBPyConnection) -> None:
    for sql in ["SELECT 1", "DESCRIBE sessions", "SUMMARIZE events", "EXPLAIN SELECT 1",
                "CREATE TEMP TABLE t AS SELECT * FROM events", "PRAGMA version",
                "WITH x AS (SELECT 1) SELECT * FROM x"]:
        check_read_only(con, sql)
        con.sql(sql)


def test_large_sorts_spill_to_disk_with_external_access_disabled(lake: Path) -> None:
    """A sort that cannot fit in memory_limit needs DuckDB's temp directory: still allowed."""
    query = ("SELECT sum(hash(h, rn)) FROM (SELECT h, row_number() OVER (ORDER BY h) AS rn "
             "FROM (SELECT md5(i::VARCHAR) AS h FROM range(3000000) t(i)))")
    without_spill = duckdb.connect(config={"memory_limit": "64MB", "temp_directory": ""})
    with pytest.raises(duckdb.OutOfMemoryException):
        without_spill.sql(query).fetchall()  # proves the query needs to spill
    without_spill.close()
    with connect(lake, "acme", memory_limit="64MB") as scoped:
        expected = duckdb.sql(query).fetchall()
        assert scoped.sql(query).fetchall() == expected


def test_a_session_cannot_read_another_sessions_spill_files(lake: Path) -> None:
    """Each connection spills into a private directory that no other session may read, even
    while it is spilling."""
    import threading

    query = ("SELECT sum(hash(h, rn)) FROM (SELECT h, row_number() OVER (ORDER BY h) AS rn "
             "FROM (SELECT md5(i::VARCHAR) AS h FROM range(3000000) t(i)))")
    spilling = connect(lake, "acme", memory_limit="64MB")
    other = connect(lake, "globex")
    acme_dir = spilling.sql("SELECT current_setting('temp_directory')").fetchall()[0][0]
    other_dir = other.sql("SELECT current_setting('temp_directory')").fetchall()[0][0]
    assert acme_dir != other_dir and not acme_dir.startswith(str(Path.cwd()))
    done = threading.Event()
    worker = threading.Thread(target=lambda: (spilling.sql(query).fetchall(), done.set()))
    worker.start()
    attempts = 0
    while not done.is_set() or attempts == 0:
        attempts += 1
        for sql in (f"SELECT * FROM glob('{acme_dir}/*')",
                    f"SELECT * FROM read_blob('{acme_dir}/*')",
                    "SELECT * FROM read_blob('.tmp/*')"):
            with pytest.raises(duckdb.Error):
                other.execute(sql).fetchall()
    worker.join()
    assert done.is_set()
    spilling.close()
    other.close()


def test_the_python_api_cannot_write_into_the_lake(lake: Path, tmp_path: Path) -> None:
    """No statement and no relation method of a tenant connection reaches the lake's files:
    not a new file, not an overwrite of a data file, not a database file."""
    from schemas.delta import table_snapshot
    from schemas.storage import LakeLocation

    data = table_snapshot(LakeLocation.parse(lake), "events", "acme").files[0]
    target = Path(data.uri)
    before = target.read_bytes()
    files_before = sorted(p for p in lake.rglob("*") if p.is_file())
    with connect(lake, "acme") as con:
        for sql in (f"COPY (SELECT 1 AS x) TO '{target.parent}/forged.parquet'",
                    f"COPY (SELECT 1 AS x) TO '{target}' (USE_TMP_FILE false)",
                    f"COPY (SELECT 1 AS x) TO '{target}'",
                    f"ATTACH '{lake}/raw/tenant=acme/x.duckdb'",
                    f"EXPORT DATABASE '{lake}/events/tenant=acme/dump'",
                    f"COPY (SELECT 1 AS x) TO 'dnsnap://events/{data.path}' "
                    "(USE_TMP_FILE false)",
                    f"COPY (SELECT 1 AS x) TO 'dnsnap://events/{data.path}'",
                    "COPY (SELECT 1 AS x) TO 'dnsnap://events/tenant=acme/forged.parquet'",
                    "ATTACH 'dnsnap://events/tenant=acme/x.duckdb'"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        with pytest.raises(duckdb.Error):
            con.sql("SELECT 1 AS x").to_parquet(str(target))
        with pytest.raises(duckdb.Error):
            con.sql("SELECT 1 AS x").write_csv(str(target.parent / "forged.csv"))
        with pytest.raises(duckdb.Error):
            con.sql("SELECT 1 AS x").to_parquet(f"dnsnap://events/{data.path}")
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] > 0
    assert target.read_bytes() == before
    assert sorted(p for p in lake.rglob("*") if p.is_file()) == files_before
