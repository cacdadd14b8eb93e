"""``driftnet export``: reproducible per-tenant training sets.

Recipes (recipes.py): ``sessions`` (ordered item sequences per session, for next-item
recommendation), ``intent`` (session prefixes labelled by a later purchase) and ``sql``
(any query over the views). Time splits never leak (spec.py); columns a format cannot hold
are converted the same way every time (columns.py); every export writes a
manifest of its exact inputs and outputs (manifest.py) from which ``--from-manifest``
reproduces the same bytes (run.py); api.py returns the splits as Arrow tables.
"""

from analytics.export.api import (
    export_tables,
    export_to_dir,
    reproduce_from_manifest,
    tables_from_manifest,
)
from analytics.export.spec import ExportSpec

__all__ = ["ExportSpec", "export_tables", "export_to_dir", "reproduce_from_manifest",
           "tables_from_manifest"]
