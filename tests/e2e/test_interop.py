"""The lake reads the same through DuckDB, pyarrow, fastparquet and a Delta reader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import fastparquet
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from driftnet.simulate import SimulationConfig, run_simulation
from schemas.tenants import load_tenants
from tests.support import Server, lake_files

COLUMNS = ["event_id", "event_name", "anonymous_id", "received_at", "price", "properties"]


@pytest.fixture(scope="module")
def loaded_lake(shared_server: Server) -> Path:
    tenants = load_tenants(shared_server.tenants)
    report = run_simulation(SimulationConfig(url=shared_server.url, tenants=tenants,
                                             sessions=60, only_tenants=("globex",),
                                             origin="https://www.globex.example"))
    assert report.events_acked > 100
    shared_server.wait_loaded()
    return shared_server.lake


def _normalise(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    out = []
    for row in rows:
        fixed: list[object] = []
        for value in row:
            if isinstance(value, dt.datetime):
                aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
                fixed.append(aware.astimezone(dt.UTC))
            elif isinstance(value, float) and value != value:
                fixed.append(None)
            else:
                fixed.append(value)
        out.append(tuple(fixed))
    return sorted(out, key=lambda r: str(r[0]))


def test_duckdb_pyarrow_fastparquet_agree(loaded_lake: Path) -> None:
    files = lake_files(loaded_lake, "events", "globex")
    assert files
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        via_duckdb = con.execute(
            f"SELECT {', '.join(COLUMNS)}, tenant, date FROM read_parquet(?, "
            f"hive_partitioning = true)", [files]).fetchall()
    # Small files leave out columns without values: readers take the table's schema (any
    # Delta reader does) and read missing columns as nulls.
    schema = DeltaTable(str(loaded_lake / "events")).schema().to_arrow()
    dataset = ds.dataset(files, schema=pa.schema(schema), format="parquet",
                         partitioning="hive", partition_base_dir=str(loaded_lake / "events"))
    table = dataset.to_table()
    via_arrow = list(zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True))
    assert set(table.column("tenant").to_pylist()) == {"globex"}
    delta = DeltaTable(str(loaded_lake / "events")).to_pyarrow_table(
        filters=[("tenant", "=", "globex")], columns=COLUMNS)
    via_delta = list(zip(*(delta.column(c).to_pylist() for c in COLUMNS), strict=True))
    via_fastparquet = []
    for path in files:
        pf = fastparquet.ParquetFile(path)
        frame = pf.to_pandas(columns=[c for c in COLUMNS if c in pf.columns])
        for row in frame.to_dict("records"):
            via_fastparquet.append(tuple(
                None if (v := row.get(c)) is None or (isinstance(v, float) and v != v)
                else (v.to_pydatetime() if hasattr(v, "to_pydatetime") else v)
                for c in COLUMNS))
    expected = _normalise([r[: len(COLUMNS)] for r in via_duckdb])
    assert len(expected) > 100
    assert _normalise(via_arrow) == expected
    assert _normalise(via_delta) == expected
    assert _normalise(via_fastparquet) == expected
    assert {r[-2] for r in via_duckdb} == {"globex"}
    assert all(isinstance(r[-1], dt.date) for r in via_duckdb)
