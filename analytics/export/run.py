"""Running an export: pin the inputs, query each split, write files and the manifest.

The same code path serves a fresh export (inputs = the tenant's files now, checksummed)
and ``--from-manifest`` (inputs = the manifest's list, verified first): in both cases the
DuckDB views are bound to exactly that file list, never to a glob, so files landing in
the lake meanwhile change nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.connect import connect
from analytics.export.columns import written_as
from analytics.export.errors import ExportError, NotReproducedError
from analytics.export.manifest import (
    MANIFEST_NAME,
    InputFile,
    Manifest,
    OutputFile,
    TableVersion,
    current_code,
    input_bytes,
    list_inputs,
    read_manifest,
    tables_read,
    verify_inputs,
    write_manifest,
)
from analytics.export.progress import Progress
from analytics.export.recipes import Query, prepare, recipe_query
from analytics.export.spec import EXTENSIONS, ExportFormat, ExportSpec, Split
from analytics.export.writers import unwritable_field, write_batches
from analytics.readonly import check_read_only
from schemas.sql import quote_ident
from schemas.storage import LakeLocation

BATCH_ROWS = 65_536


def _iso(value: object) -> str | None:
    return None if value is None else value.isoformat()  # type: ignore[attr-defined]


def open_pinned(lake: LakeLocation, spec: ExportSpec, inputs: list[InputFile],
                memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A tenant connection whose views read exactly ``inputs``."""
    files: dict[str, list[str]] = {}
    for f in inputs:
        files.setdefault(f.table, []).append(f.path)
    con = connect(lake, spec.tenant, files=files,  # type: ignore[arg-type]
                  memory_limit=memory_limit, rates=spec.rates)
    prepare(con, spec)
    return con


def formatted(con: duckdb.DuckDBPyConnection, query: Query, fmt: ExportFormat | None) -> str:
    """The split's SQL, totally ordered, shaped for ``fmt`` (None: Arrow, as for parquet).

    The rows are ordered by the query's own values (its order keys, or all its columns),
    then shaped (columns.py: JSON text, NaN as null...): ordering the shaped values instead
    would sort a list by its JSON text, or a JSON line by its characters. Projections keep
    the order (preserve_insertion_order)."""
    source = f"({query.sql}) AS x"
    if query.order_by is not None:
        source = f"(SELECT * FROM {source} ORDER BY {query.order_by}) AS x"
    rel = con.sql(f"SELECT * FROM {source}", params=query.params or None)
    repl = {name: sql for name, kind in zip(rel.columns, rel.types, strict=True)
            if (sql := written_as(name, kind, fmt)) is not None}
    if repl:
        items = ", ".join(f"{sql} AS {quote_ident(name)}" for name, sql in repl.items())
        source = f"(SELECT * REPLACE ({items}) FROM {source}) AS x"
    if fmt == "jsonl":
        return f"SELECT to_json(x)::VARCHAR AS line FROM {source}"
    return f"SELECT * FROM {source}"


def split_tables(con: duckdb.DuckDBPyConnection, spec: ExportSpec) -> dict[str, pa.Table]:
    """Each split's rows as an Arrow table (the rows of the Parquet export)."""
    out = {}
    for split in spec.splits():
        q = recipe_query(spec, split)
        out[split.name] = con.sql(formatted(con, q, None),
                                  params=q.params or None).to_arrow_table()
    return out


STAGING_PREFIX = ".partial-"
"""An export is written into a hidden directory of this prefix inside the output
directory, and moved into place only once complete (and, for a reproduction, identical)."""


def _prepare(out_dir: Path, overwrite: bool) -> None:
    if (out_dir.exists() and not overwrite
            and any(not p.name.startswith(STAGING_PREFIX) for p in out_dir.iterdir())):
        raise ExportError("output directory is not empty (use --overwrite)", out=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_split(con: duckdb.DuckDBPyConnection, spec: ExportSpec, split: Split, out_dir: Path,
                 progress: Progress) -> OutputFile:
    q = recipe_query(spec, split)
    path = out_dir / f"{split.name}{EXTENSIONS[spec.format]}"
    schema: list[pa.Schema] = []

    def work(on_rows: object) -> OutputFile:
        sql = formatted(con, q, spec.format)
        reader = con.sql(sql, params=q.params or None).to_arrow_reader(BATCH_ROWS)
        schema.append(reader.schema)
        written = write_batches(reader, spec.format, path, on_rows)
        return OutputFile(split=split.name, file=path.name, start=_iso(split.start),
                          end=_iso(split.end), rows=written.rows, bytes=written.bytes,
                          sha256=written.sha256)

    try:
        return progress.run_query(con, f"{spec.recipe}/{split.name}", work)
    except duckdb.Error as exc:
        raise ExportError(f"export query failed: {exc}", recipe=spec.recipe,
                          split=split.name) from exc
    except pa.ArrowException as exc:
        culprit = unwritable_field(schema[0], spec.format) if schema else None
        what = (f"column {culprit.name!r} of type {culprit.type}" if culprit is not None
                else "a value")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot write {what} as {spec.format}: {reason} (convert it in "
                          f"the query, e.g. to text)", recipe=spec.recipe,
                          split=split.name) from exc


def _publish(staging: Path, out_dir: Path, manifest: Manifest) -> None:
    """Move a complete export from ``staging`` into ``out_dir``, the manifest last.

    The split files an earlier export in ``out_dir`` listed and this one does not (another
    split or format) are removed, so the directory holds one export. The old manifest goes
    first: a crash midway leaves no manifest describing files it does not match."""
    old = out_dir / MANIFEST_NAME
    earlier: set[str] = set()
    if old.is_file():
        try:
            earlier = {o.file for o in read_manifest(old).outputs}
        except ExportError:
            earlier = set()
    ours = {f"{name}{ext}" for name in ("all", "train", "valid", "test")
            for ext in EXTENSIONS.values()}
    old.unlink(missing_ok=True)
    for out in manifest.outputs:
        os.replace(staging / out.file, out_dir / out.file)
    for name in (earlier & ours) - {o.file for o in manifest.outputs}:
        (out_dir / name).unlink(missing_ok=True)
    os.replace(staging / MANIFEST_NAME, old)


def _check_reproduced(expected: Manifest, new: Manifest) -> None:
    before = {o.split: o for o in expected.outputs}
    if set(before) != {o.split for o in new.outputs}:
        raise NotReproducedError("reproduced splits differ from the manifest's; nothing was "
                                 "written", expected=sorted(before),
                                 actual=[o.split for o in new.outputs])
    for out in new.outputs:
        was = before[out.split]
        if (was.sha256, was.rows) != (out.sha256, out.rows):
            raise NotReproducedError("reproduced file differs from the manifest; nothing was "
                                     "written", split=out.split,
                                     expected_sha256=was.sha256, actual_sha256=out.sha256,
                                     expected_rows=was.rows, actual_rows=out.rows)


def run_export(lake: str | Path | LakeLocation, spec: ExportSpec, out_dir: Path, *,
               pinned: tuple[list[TableVersion], list[InputFile]] | None = None,
               overwrite: bool = False, progress: Progress | None = None,
               memory_limit: str | None = None, expected: Manifest | None = None) -> Manifest:
    """Export ``spec`` from ``lake`` into ``out_dir``; return (and write) the manifest.

    ``pinned`` (table versions and input files of an earlier manifest) replaces the tables'
    current versions. ``memory_limit`` (DuckDB syntax, e.g. ``4GB``) makes DuckDB spill
    earlier; it does not change the output, so it is not part of the spec. With
    ``expected`` (the manifest being reproduced), the outputs must be identical to its
    own, else NotReproducedError. Files are written into a hidden directory in ``out_dir``
    and moved into place only once complete (and identical): a failed export leaves
    ``out_dir`` as it was.
    """
    location = LakeLocation.parse(lake)
    progress = progress or Progress()
    created = not out_dir.exists()
    _prepare(out_dir, overwrite)
    if pinned is None:
        tables = tables_read(spec)
        total = input_bytes(location, spec.tenant, tables)
        with progress.bytes_bar("checksum inputs", total) as bar:
            pinned = list_inputs(location, spec.tenant, tables, bar.update)
    versions, inputs = pinned
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        con = open_pinned(location, spec, inputs, memory_limit)
        try:
            if spec.query is not None:
                check_read_only(con, spec.query)
            outputs = [_write_split(con, spec, split, staging, progress)
                       for split in spec.splits()]
        finally:
            con.close()
        manifest = Manifest(tenant=spec.tenant, recipe=spec.recipe, parameters=spec,
                            lake=location.uri, tables=versions, inputs=inputs,
                            outputs=outputs, code=current_code())
        if expected is not None:
            _check_reproduced(expected, manifest)
        write_manifest(manifest, staging)
        _publish(staging, out_dir, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):  # not empty: something else wrote there
                out_dir.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def reproduce(manifest_path: Path, out_dir: Path, *, lake: str | Path | None = None,
              overwrite: bool = False, progress: Progress | None = None,
              memory_limit: str | None = None) -> Manifest:
    """Re-run a manifest; raise unless the inputs are unchanged and the outputs identical.

    Nothing is written to ``out_dir`` unless every output is identical (so reproducing
    into the manifest's own directory with ``overwrite`` can never replace it)."""
    old = read_manifest(manifest_path)
    root = LakeLocation.parse(lake or old.lake)
    progress = progress or Progress()
    with progress.bytes_bar("verify inputs", sum(f.bytes for f in old.inputs)) as bar:
        verify_inputs(root, old, bar.update)
    code = current_code()
    if code != old.code:
        print(f"driftnet: warning: code versions differ from the manifest ({old.code} now "
              f"{code}); the bytes may differ", file=sys.stderr)
    return run_export(root, old.parameters, out_dir, pinned=(old.tables, old.inputs),
                      overwrite=overwrite, progress=progress, memory_limit=memory_limit,
                      expected=old)


def tables_of_manifest(manifest_path: Path, lake: str | Path | None = None
                       ) -> dict[str, pa.Table]:
    """The splits recorded by a manifest, re-read from its verified inputs, as Arrow tables."""
    old = read_manifest(manifest_path)
    root = LakeLocation.parse(lake or old.lake)
    verify_inputs(root, old)
    con = open_pinned(root, old.parameters, old.inputs)
    try:
        return split_tables(con, old.parameters)
    finally:
        con.close()
