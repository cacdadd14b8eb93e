"""Python API of exports: the same splits as the files, as Arrow tables.

For a notebook or any orchestrator (Metaflow, Airflow, Dagster steps are plain calls)::

    from analytics.export import ExportSpec, export_tables
    splits = export_tables("lake", ExportSpec(tenant="acme", recipe="sessions",
                                              train_end="2026-03-01", valid_end="2026-03-15"))
    splits["train"].num_rows

``export_to_dir`` writes files and a manifest (what ``driftnet export`` does);
``tables_from_manifest`` re-reads a manifest's exact inputs and returns its splits.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from analytics.export.manifest import Manifest, list_inputs, tables_read
from analytics.export.progress import Progress
from analytics.export.run import (
    open_pinned,
    reproduce,
    run_export,
    split_tables,
    tables_of_manifest,
)
from analytics.export.spec import ExportSpec
from schemas.storage import LakeLocation


def export_tables(lake: str | Path, spec: ExportSpec) -> dict[str, pa.Table]:
    """Each split (``all``; ``train``/``test``; or ``train``/``valid``/``test``) as a table.

    Reads the tenant's files as they are now (pinned at the start of the call); the rows
    equal those of a Parquet export of the same spec.
    """
    root = LakeLocation.parse(lake)
    _, inputs = list_inputs(root, spec.tenant, tables_read(spec))
    con = open_pinned(root, spec, inputs)
    try:
        return split_tables(con, spec)
    finally:
        con.close()


def export_to_dir(lake: str | Path, spec: ExportSpec, out_dir: str | Path, *,
                  overwrite: bool = False, progress: bool | None = False) -> Manifest:
    """Write each split and ``manifest.json`` into ``out_dir``; return the manifest."""
    return run_export(lake, spec, Path(out_dir), overwrite=overwrite,
                      progress=Progress(progress))


def reproduce_from_manifest(manifest: str | Path, out_dir: str | Path, *,
                            lake: str | Path | None = None, overwrite: bool = False,
                            progress: bool | None = False) -> Manifest:
    """Re-run a manifest into ``out_dir``; raises if an input changed or a byte differs."""
    return reproduce(Path(manifest), Path(out_dir), lake=lake,
                     overwrite=overwrite, progress=Progress(progress))


def tables_from_manifest(manifest: str | Path,
                         lake: str | Path | None = None) -> dict[str, pa.Table]:
    """The splits of a manifest, from its verified input files, as Arrow tables."""
    return tables_of_manifest(Path(manifest), lake)
