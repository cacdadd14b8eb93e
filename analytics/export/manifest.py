"""The export manifest: what was read, with which code, what came out.

``tables`` pins the Delta version of each lake table the export read, and ``inputs`` lists
the data files of that version it read (the tenant's), relative to the lake root, with
size and SHA-256. A re-run reads exactly these files (never the table's current version)
and stops if one is missing or changed, saying why: compaction only supersedes files (they
stay readable until vacuum), so an export reproduces byte for byte after maintenance, until
vacuum or `driftnet forget` deletes a pinned file. ``outputs`` records each split's file,
rows and SHA-256, so a re-run can prove it produced the same bytes. The manifest holds no
wall-clock time: exporting the same spec over the same files gives the same manifest too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analytics.connect import pinned_uris
from analytics.export.errors import ExportError, InputChangedError
from analytics.export.spec import ExportSpec
from analytics.export.writers import sha256_stream
from analytics.views import DERIVED_VIEWS
from schemas.audit import forgotten_files
from schemas.delta import table_snapshot
from schemas.errors import validation_problems
from schemas.lake import TABLES, Table
from schemas.storage import LakeLocation
from schemas.version import PIPELINE_VERSION

MANIFEST_VERSION = 2
MANIFEST_NAME = "manifest.json"

# Which lake tables a view reads; a `sql` export pins the tables its query names.
VIEW_TABLES: dict[str, tuple[Table, ...]] = {
    "events": ("events",), "events_all": ("events",), "raw": ("raw",),
    "quarantine": ("quarantine",),
    # every derived view (sessions, orders, users, ...) is built on events
    **{name: ("events",) for name, _ in DERIVED_VIEWS},
}


class TableVersion(BaseModel):
    """The Delta version of one lake table an export read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table
    version: int | None = Field(description="None: the table did not exist yet.")


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
    lake: str = Field(description="Lake root the inputs were read from (absolute path or URL).")
    tables: list[TableVersion] = Field(default_factory=list)
    inputs: list[InputFile]
    outputs: list[OutputFile] = Field(default_factory=list)
    code: CodeVersion

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.manifest_version != MANIFEST_VERSION:
            raise ValueError(f"manifest_version {self.manifest_version} is not the one this "
                             f"driftnet reads ({MANIFEST_VERSION})")
        if (self.tenant, self.recipe) != (self.parameters.tenant, self.parameters.recipe):
            raise ValueError("tenant and recipe differ from those in parameters")
        return self

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


def list_inputs(lake: LakeLocation, tenant: str, tables: tuple[Table, ...],
                on_bytes: Callable[[int], object] | None = None
                ) -> tuple[list[TableVersion], list[InputFile]]:
    """The current version of each table, and the tenant's files of it with SHA-256."""
    versions: list[TableVersion] = []
    out: list[InputFile] = []
    for table in tables:
        snapshot = table_snapshot(lake, table, tenant)
        versions.append(TableVersion(table=table, version=snapshot.version))
        for f in snapshot.files:
            out.append(InputFile(table=table, path=f"{table}/{f.path}", bytes=f.size,
                                 sha256=_sha256(lake, f"{table}/{f.path}")))
            if on_bytes:
                on_bytes(f.size)
    return versions, out


def input_bytes(lake: LakeLocation, tenant: str, tables: tuple[Table, ...]) -> int:
    """Total size of the tenant's current files of ``tables`` (for a progress bar)."""
    return sum(f.size for t in tables for f in table_snapshot(lake, t, tenant).files)


def _sha256(lake: LakeLocation, relative: str) -> str:
    fs, root = lake.filesystem()
    with fs.open_input_stream(f"{root}/{relative}") as stream:
        return sha256_stream(stream)


def _exists(lake: LakeLocation, relative: str) -> tuple[bool, int]:
    fs, root = lake.filesystem()
    info = fs.get_file_info(f"{root}/{relative}")
    return info.type.name == "File", int(info.size or 0)


def _why_missing(lake: LakeLocation, manifest: Manifest, f: InputFile) -> str:
    version = next((t.version for t in manifest.tables if t.table == f.table), None)
    pinned = (f"version {version} of table {f.table}" if version is not None
              else f"the table {f.table} as exported")
    deletion = forgotten_files(lake).get(f.path)
    if deletion is not None:
        return (f"{pinned} can no longer be read: `driftnet forget` deleted its file "
                f"{f.path} on {deletion.deleted_at.isoformat()} (receipt "
                f"{deletion.receipt_id})")
    return (f"{pinned} can no longer be read: its file {f.path} is gone (vacuum deletes "
            f"files superseded longer ago than the lake's vacuum retention)")


def verify_inputs(lake: LakeLocation, manifest: Manifest,
                  on_bytes: Callable[[int], object] | None = None) -> None:
    """Raise InputChangedError unless every input is present with its recorded checksum.

    Every path is first checked to lie in the scope of the manifest's tenant (the check
    the pinned connection makes, TenantScopeError otherwise), before any file is looked
    at: a crafted manifest must not learn whether a file elsewhere exists, its size or its
    checksum."""
    for table, paths in manifest.files_by_table().items():
        pinned_uris(lake, table, manifest.parameters.tenant, paths)
    for f in manifest.inputs:
        exists, size = _exists(lake, f.path)
        if not exists:
            raise InputChangedError(_why_missing(lake, manifest, f), file=f.path,
                                    lake=lake.uri)
        digest = _sha256(lake, f.path) if size == f.bytes else None
        if size != f.bytes or digest != f.sha256:
            raise InputChangedError("input file changed since the export", file=f.path,
                                    expected_sha256=f.sha256, actual_sha256=digest,
                                    expected_bytes=f.bytes, actual_bytes=size)
        if on_bytes:
            on_bytes(size)


def write_manifest(manifest: Manifest, out_dir: Path) -> Path:
    """Write ``manifest.json`` (stable key order, indented) into ``out_dir``."""
    path = out_dir / MANIFEST_NAME
    with open(path, "w") as fh:
        fh.write(manifest.model_dump_json(indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_manifest(path: Path) -> Manifest:
    """Load and validate a manifest; an :class:`ExportError` says why one cannot be used."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read the manifest: {exc.strerror or exc}",
                          path=str(path)) from exc
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        raise ExportError(f"not a driftnet export manifest: {validation_problems(exc)}",
                          path=str(path)) from exc
