"""A session for tenant A cannot read tenant B's rows, whatever SQL it runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pytest

from analytics import connect
from analytics.errors import TenantScopeError
from tests.support import Server


@pytest.fixture(scope="module")
def two_tenant_lake(shared_server: Server) -> Path:
    for tenant, key in (("acme", "acme-key"), ("globex", "globex-key")):
        r = shared_server.post("/v1/track", {"type": "track", "event": f"secret-{tenant}",
                                             "anonymousId": "a",
                                             "messageId": str(uuid.uuid4())}, key=key)
        assert r.status_code == 200
    shared_server.wait_loaded()
    return shared_server.lake


def test_views_hold_only_the_tenants_rows(two_tenant_lake: Path) -> None:
    with connect(two_tenant_lake, "acme") as con:
        for view in ("events", "raw", "quarantine"):
            tenants = {r[0] for r in con.execute(f"SELECT DISTINCT tenant FROM {view}").fetchall()}
            assert tenants <= {"acme"}, view
        names = {r[0] for r in con.execute("SELECT event_name FROM events").fetchall()}
        assert "secret-acme" in names and "secret-globex" not in names


ESCAPES = [
    "SELECT * FROM read_parquet('{lake}/events/tenant=globex/*/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/*/*/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/**/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/tenant=acme/../tenant=globex/*/*.parquet')",
    "SELECT * FROM parquet_metadata('{lake}/events/tenant=globex/*/*.parquet')",
    "SELECT * FROM glob('{lake}/**')",
    "SELECT * FROM read_text('{lake}/events/tenant=globex/*/*.parquet')",
    "SELECT * FROM read_blob('{lake}/raw/tenant=globex/*/*.parquet')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY (SELECT 1) TO '{lake}/x.csv'",
    "ATTACH '{lake}/x.duckdb'",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE VIEW sneaky AS SELECT * FROM read_parquet('{lake}/events/tenant=globex/*/*.parquet')",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_escapes_are_refused(two_tenant_lake: Path, sql: str) -> None:
    with connect(two_tenant_lake, "acme") as con, pytest.raises(duckdb.Error):
        con.execute(sql.format(lake=two_tenant_lake)).fetchall()


def test_tenant_must_be_named(two_tenant_lake: Path) -> None:
    with pytest.raises(TenantScopeError):
        connect(two_tenant_lake)
    with pytest.raises(TenantScopeError):
        connect(two_tenant_lake, "../globex")


def test_operators_can_read_all(two_tenant_lake: Path) -> None:
    with connect(two_tenant_lake, all_tenants=True) as con:
        tenants = {r[0] for r in con.execute("SELECT DISTINCT tenant FROM events").fetchall()}
    assert {"acme", "globex"} <= tenants
