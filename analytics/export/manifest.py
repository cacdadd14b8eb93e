"""The export manifest: what was read, with which code, what came out.

``inputs`` lists every lake file the export read, relative to the lake root, with its
size and SHA-256; a re-run reads exactly these files (never a glob) and stops if one is
missing or changed. ``outputs`` records each split's file, rows and SHA-256, so a re-run
can prove it produced the same bytes. The manifest holds no wall-clock time: exporting
the same spec over the same files gives the same manifest too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from analytics.export.errors import InputChangedError
from analytics.export.spec import ExportSpec
from analytics.export.writers import sha256_file
from schemas.lake import TABLES, Table, tenant_dir
from schemas.version import PIPELINE_VERSION

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"

# Which lake tables a view reads; a `sql` export pins the tables its query names.
VIEW_TABLES: dict[str, tuple[Table, ...]] = {
    "events": ("events",), "events_all": ("events",), "session_events": ("events",),
    "sessions": ("events",), "raw": ("raw",), "quarantine": ("quarantine",),
}


class InputFile(BaseModel):
    """One lake file read by the export."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table
    path: str = Field(description="Relative to the lake root.")
    bytes: int
    sha256: str


class OutputFile(BaseModel):
    """One split's output file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str
    file: str = Field(description="Relative to the export directory.")
    start: str | None = Field(description="Sessions starting at or after (ISO), or None.")
    end: str | None = Field(description="Sessions starting before, and no event read at or "
                            "after (ISO), or None.")
    rows: int
    bytes: int
    sha256: str


class CodeVersion(BaseModel):
    """The code that produced the export; bytes are reproducible with the same versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driftnet: str
    pipeline_version: str
    duckdb: str
    pyarrow: str


class Manifest(BaseModel):
    """Everything needed to reproduce an export byte for byte."""

    model_config = ConfigDict(extra="forbid")

    manifest_version: int = MANIFEST_VERSION
    tenant: str
    recipe: str
    parameters: ExportSpec
    lake: str = Field(description="Lake root the inputs were read from (absolute).")
    inputs: list[InputFile]
    outputs: list[OutputFile] = Field(default_factory=list)
    code: CodeVersion

    def files_by_table(self) -> dict[Table, list[str]]:
        """Input paths grouped by table, for ``analytics.connect(files=...)``."""
        out: dict[Table, list[str]] = {}
        for f in self.inputs:
            out.setdefault(f.table, []).append(f.path)
        return out


def current_code() -> CodeVersion:
    """Versions of the running code."""
    return CodeVersion(driftnet=version("driftnet"), pipeline_version=PIPELINE_VERSION,
                       duckdb=duckdb.__version__, pyarrow=pa.__version__)


def tables_read(spec: ExportSpec) -> tuple[Table, ...]:
    """Lake tables the recipe reads (for sql: the tables its query's view names need)."""
    if spec.recipe != "sql":
        return ("events",)
    assert spec.query is not None
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", spec.query.lower()))
    needed = {t for view, tables in VIEW_TABLES.items() if view in words for t in tables}
    return tuple(t for t in TABLES if t in needed)


def list_inputs(lake: Path, tenant: str, tables: tuple[Table, ...],
                on_bytes: Callable[[int], object] | None = None) -> list[InputFile]:
    """Every data file of the tenant's ``tables``, sorted, with size and SHA-256."""
    paths: list[tuple[Table, Path]] = []
    for table in tables:
        root = tenant_dir(lake, table, tenant)
        paths += [(table, p) for p in sorted(root.glob("date=*/*.parquet"))]
    out = []
    for table, path in paths:
        size = path.stat().st_size
        out.append(InputFile(table=table, path=path.relative_to(lake).as_posix(), bytes=size,
                             sha256=sha256_file(path)))
        if on_bytes:
            on_bytes(size)
    return out


def verify_inputs(lake: Path, inputs: list[InputFile],
                  on_bytes: Callable[[int], object] | None = None) -> None:
    """Raise InputChangedError unless every input is present with its recorded checksum."""
    for f in inputs:
        path = lake / f.path
        if not path.is_file():
            raise InputChangedError("input file of the manifest is missing", file=f.path,
                                    lake=str(lake))
        size = path.stat().st_size
        digest = sha256_file(path) if size == f.bytes else None
        if size != f.bytes or digest != f.sha256:
            raise InputChangedError("input file changed since the export", file=f.path,
                                    expected_sha256=f.sha256, actual_sha256=digest,
                                    expected_bytes=f.bytes, actual_bytes=size)
        if on_bytes:
            on_bytes(size)


def write_manifest(manifest: Manifest, out_dir: Path) -> Path:
    """Write ``manifest.json`` (stable key order, indented) into ``out_dir``."""
    path = out_dir / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    return path


def read_manifest(path: Path) -> Manifest:
    """Load and validate a manifest."""
    return Manifest.model_validate_json(path.read_text())
