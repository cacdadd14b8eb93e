"""Forget against writers committing meanwhile, on a real lake: a file no commit added yet
may be a loader's flush between its write and its commit, and must outlive the forget."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import ingest.lake.writer as writer
from analytics.connect import connect
from ingest.lake.files import FileWriter
from ingest.lake.forget import Forgetter, Identifier
from ingest.lake.writer import append_rows
from schemas.delta import UNCOMMITTED_GRACE_S, table_snapshot
from schemas.storage import LakeLocation
from tests.ingest.lake.rows import NOW, event_row, table

PERSON = "person-0123456789"


def _forget(lake: LakeLocation) -> None:
    forgetter = Forgetter(lake)
    try:
        forgetter.forget("acme", [Identifier("anonymous_id", PERSON)])
    finally:
        forgetter.close()


def test_a_loaders_flush_in_flight_during_a_forget_commits_a_readable_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flush wrote its file (an event of the person received while forget runs), then
    forget runs, then the flush commits: the file must still be there (deleted, the table
    named a missing file and every query of the tenant failed). Its rows are new data: they
    stay, as an event received after the forget would."""
    lake = LakeLocation.parse(tmp_path)
    append_rows(lake, "events", table("events", [event_row("acme", 1, anonymous_id="other")]))
    real = writer.commit

    def forget_first(*args: Any, **kwargs: Any) -> int:
        monkeypatch.setattr(writer, "commit", real)
        _forget(lake)
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "commit", forget_first)
    append_rows(lake, "events", table("events", [event_row("acme", 2, anonymous_id=PERSON)]))
    files = table_snapshot(lake, "events", "acme").files
    assert all(Path(f.uri).exists() for f in files)
    with connect(lake, "acme") as con:
        assert sorted(con.sql("SELECT anonymous_id FROM events").fetchall()) == [
            ("other",), (PERSON,)]


def test_forget_deletes_an_uncommitted_file_once_it_is_older_than_the_grace(
        tmp_path: Path) -> None:
    """A file no commit added, holding the person: young, it may still be committed and
    stays; older than the grace period its writer is gone, and forget deletes it."""
    lake = LakeLocation.parse(tmp_path)
    append_rows(lake, "events", table("events", [event_row("acme", 1, anonymous_id="other")]))
    orphan = FileWriter(lake).write("events", "acme", NOW.date(), table(
        "events", [event_row("acme", 2, anonymous_id=PERSON)]))
    path = tmp_path / "events" / orphan.path
    _forget(lake)
    assert path.exists()
    old = time.time() - UNCOMMITTED_GRACE_S - 60
    os.utime(path, (old, old))
    _forget(lake)
    assert not path.exists()


def test_forget_deletes_a_superseded_file_at_any_age(tmp_path: Path) -> None:
    """A file a commit removed can never be committed again: forget deletes it at once."""
    from ingest.lake.maintain import maintenance_commit, remove_action
    from ingest.lake.tables import open_for_write

    lake = LakeLocation.parse(tmp_path)
    append_rows(lake, "events", table("events", [event_row("acme", 1, anonymous_id=PERSON)]))
    delta = open_for_write(lake, "events")
    [gone] = table_snapshot(lake, "events", "acme").files
    maintenance_commit(delta, "events", [remove_action(gone, True)], "retention")
    _forget(lake)
    assert not Path(gone.uri).exists()
