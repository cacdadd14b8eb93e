"""Exports pin table versions: they reproduce after maintenance, until vacuum removes a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.export import ExportSpec, export_to_dir, reproduce_from_manifest
from analytics.export.errors import InputChangedError
from analytics.export.manifest import read_manifest
from ingest.lake.config import MaintainSettings
from ingest.lake.maintain import Maintainer
from schemas.delta import table_snapshot
from schemas.storage import LakeLocation
from tests.analytics.lakes import event, write_events

SPEC = ExportSpec(tenant="acme", recipe="sessions")


def _lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    for i in range(12):  # twelve small files of one (old, so closed) day
        write_events(lake, [event(minute=i, session_id=f"s{i % 3}", product_id=f"p{i}",
                                  product_action="view")])
    return lake


def test_export_reproduces_byte_for_byte_after_compaction(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    manifest = export_to_dir(lake, SPEC, tmp_path / "a")
    assert [t.model_dump() for t in manifest.tables] == [{"table": "events", "version": 12}]
    assert len(manifest.inputs) == 12
    Maintainer(LakeLocation.parse(lake), MaintainSettings()).run_once(vacuum=False)
    assert len(table_snapshot(LakeLocation.parse(lake), "events").files) == 1  # sorted day
    again = reproduce_from_manifest(tmp_path / "a" / "manifest.json", tmp_path / "b")
    assert [o.sha256 for o in again.outputs] == [o.sha256 for o in manifest.outputs]
    # a fresh export reads the new version: same rows, one input file
    fresh = export_to_dir(lake, SPEC, tmp_path / "c")
    assert len(fresh.inputs) == 1 and fresh.tables[0].version == 13
    assert fresh.outputs[0].rows == manifest.outputs[0].rows


def test_a_pinned_version_removed_by_vacuum_says_so(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    export_to_dir(lake, SPEC, tmp_path / "a")
    settings = MaintainSettings(vacuum_retention_hours=0)
    Maintainer(LakeLocation.parse(lake), settings).run_once(vacuum=True)
    pinned = read_manifest(tmp_path / "a" / "manifest.json")
    with pytest.raises(InputChangedError, match=r"version 12 of table events can no longer be "
                                                r"read: its file .* is gone .*vacuum"):
        reproduce_from_manifest(tmp_path / "a" / "manifest.json", tmp_path / "b")
    assert pinned.inputs
