"""Stored sessions (closed days in a Delta table, the rest computed) equal the sessions
computed from events alone, on a real lake."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import analytics.stored_sessions as stored_sessions
from analytics import connect
from analytics.stored_sessions import build_sessions, closed_cutoff, stored
from ingest.lake.forget import Forgetter, Identifier
from schemas.storage import LakeLocation
from tests.analytics.lakes import event, write_events

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC)   # closed: up to 03-04; 03-05 is open
HOURS = 6


def at(day: int, hour: float, received: dt.datetime | None = None, **fields: Any
       ) -> dict[str, Any]:
    ts = DAY0 + dt.timedelta(days=day, hours=hour)
    row = event(**fields)
    row.update(client_ts=ts, sent_ts=ts, derived_ts=ts, received_at=received or ts)
    return row


def _rows() -> list[dict[str, Any]]:
    buy = {"product_action": "purchase", "event_name": "Order Completed"}
    return [
        # closed sessions, one with an order
        at(0, 9, session_id="closed1", anonymous_id="a1"),
        at(0, 9.2, session_id="closed1", anonymous_id="a1", order_id="o1", revenue=5.0,
           currency="EUR", **buy),
        at(1, 10, session_id="closed2", anonymous_id="a2", event_type="page",
           event_name="page_view", utm_source="mail"),
        # crosses midnight into the open day
        at(3, 23.9, session_id="cross", anonymous_id="a3"),
        at(4, 0.1, session_id="cross", anonymous_id="a3"),
        # closed; one more of its events arrives late, after the build (_late)
        at(1, 12, session_id="late", anonymous_id="a4"),
        # no session id: inactivity sessions, one crossing into the open day
        at(2, 8, session_id=None, anonymous_id="v1"),
        at(3, 23.95, session_id=None, anonymous_id="v1"),
        at(4, 0.2, session_id=None, anonymous_id="v1"),
        at(4, 9, session_id="open", anonymous_id="a5"),
    ]


def _late() -> dict[str, Any]:
    return at(1, 12.1, received=NOW - dt.timedelta(hours=1), session_id="late",
              anonymous_id="a4", order_id="o2", revenue=7.0, currency="USD",
              product_action="purchase", event_name="Order Completed")


def _sessions(lake: Path, **kw: Any) -> list[dict[str, Any]]:
    with connect(lake, "acme", **kw) as con:
        return con.sql("SELECT * FROM sessions ORDER BY session_id").to_arrow_table().to_pylist()


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    write_events(tmp_path, _rows())
    write_events(tmp_path, [at(0, 9, tenant="globex", session_id="g")])
    return tmp_path


def test_stored_and_computed_sessions_equal_the_computation_from_events(lake: Path) -> None:
    report = build_sessions(LakeLocation.parse(lake), NOW, HOURS)
    assert set(report.rebuilt) == {"acme", "globex"}
    store = stored(LakeLocation.parse(lake), "acme")
    assert store is not None and store.cutoff == dt.date(2026, 3, 4) and store.uris
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)
    write_events(lake, [_late()])          # a stored session gets a late event
    expected = _sessions(lake, stored_sessions=False)
    assert _sessions(lake) == expected
    by_id = {r["session_id"]: r for r in expected}
    assert by_id["late"]["revenue_by_currency"] == [("USD", 7.0)]
    assert by_id["cross"]["events"] == 2
    # the rows of closed sessions do come from the table: remove their events and they stay
    with connect(lake, "acme") as con:
        stored_ids = {r[0] for r in con.sql(
            "SELECT session_id FROM lake_stored_sessions").fetchall()}
    assert stored_ids == {"closed1", "closed2", "late"} | {
        r["session_id"] for r in expected
        if r["session_inferred"] and r["start"] < DAY0 + dt.timedelta(days=3)}


def test_a_second_build_waits_for_the_next_closed_day(lake: Path) -> None:
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    assert build_sessions(location, NOW + dt.timedelta(hours=1), HOURS).rebuilt == {}
    later = NOW + dt.timedelta(days=1)
    assert closed_cutoff(later, HOURS) == dt.date(2026, 3, 5)
    assert set(build_sessions(location, later, HOURS).rebuilt) == {"acme", "globex"}
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)


def test_another_session_definition_ignores_and_replaces_the_table(
        lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    monkeypatch.setattr(stored_sessions, "DEFINITION", "another-version")
    assert stored(location, "acme") is None            # not read
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)
    assert set(build_sessions(location, NOW, HOURS).rebuilt) == {"acme", "globex"}
    assert stored(location, "acme") is not None


def test_the_definition_covers_the_inferred_sessions_ids(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored rows hold inferred session ids: another way of writing them (e.g. the visitor
    with its kind, a:bob) is another definition, or stored and computed ids would mix."""
    import importlib

    import analytics.views as views

    before = stored_sessions.DEFINITION
    monkeypatch.setattr(views, "INFERRED_SESSIONS",
                        views.INFERRED_SESSIONS.replace("'a:'", "'anonymous:'"))
    try:
        assert before != importlib.reload(stored_sessions).DEFINITION
    finally:
        monkeypatch.undo()
        importlib.reload(stored_sessions)
    assert before == stored_sessions.DEFINITION


def test_pinned_connections_never_read_stored_rows(lake: Path) -> None:
    files = write_events(lake, [at(0, 8, session_id="pinned", anonymous_id="p")])
    build_sessions(LakeLocation.parse(lake), NOW, HOURS)
    with connect(lake, "acme", files={"events": files}) as con:
        assert [r[0] for r in con.sql("SELECT session_id FROM sessions").fetchall()] == [
            "pinned"]


def test_forget_drops_the_tenants_stored_rows_at_once(lake: Path) -> None:
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    store = stored(location, "acme")
    assert store is not None
    stored_files = [Path(u) for u in store.uris]
    forgetter = Forgetter(location)
    try:
        receipt = forgetter.forget("acme", [Identifier("anonymous_id", "a2")])
    finally:
        forgetter.close()
    assert receipt.stored_session_files_removed == len(stored_files) > 0
    assert not any(f.exists() for f in stored_files)       # deleted, not left for vacuum
    assert stored(location, "acme") is None and stored(location, "globex") is not None
    rows = _sessions(lake)
    assert "closed2" not in {r["session_id"] for r in rows}  # a2's only session
    assert rows == _sessions(lake, stored_sessions=False)
    build_sessions(location, NOW, HOURS)                     # stored again, without a2
    assert stored(location, "acme") is not None and _sessions(lake) == rows


def test_a_maintenance_pass_stores_the_sessions_of_closed_days(lake: Path) -> None:
    """`driftnet maintain` and the maintenance task of `driftnet up` store sessions."""
    from driftnet.runner import run_maintain
    from ingest.settings import DriftnetSettings

    assert stored(LakeLocation.parse(lake), "acme") is None
    settings = DriftnetSettings.model_validate({"loader": {"lake": str(lake)}})
    assert run_maintain(settings, None, once=True) == 0
    store = stored(LakeLocation.parse(lake), "acme")
    assert store is not None and store.cutoff >= dt.date(2026, 3, 5)   # all days closed now
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)


def test_stitching_combines_stored_identities_with_todays_logins(lake: Path) -> None:
    """A device seen on closed days logs in today: its stored sessions get the user."""
    build_sessions(LakeLocation.parse(lake), NOW, HOURS)
    before = {r["session_id"]: r for r in _sessions(lake)}
    assert before["closed1"]["stitched_user_id"] is None
    write_events(lake, [at(4, 10, session_id="login", anonymous_id="a1", user_id="u1",
                           event_type="identify", event_name="identify")])
    rows = _sessions(lake)
    assert rows == _sessions(lake, stored_sessions=False)
    assert {r["session_id"]: r for r in rows}["closed1"]["person_id"] == "u:u1"


def test_a_build_that_overlapped_a_forget_is_dropped(
        lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build read events before the person was forgotten: its rows must not stay."""
    location = LakeLocation.parse(lake)
    original = stored_sessions._write

    def forget_then_write(*args: Any) -> None:
        forgetter = Forgetter(location)
        try:
            forgetter.forget("acme", [Identifier("anonymous_id", "a2")])
        finally:
            forgetter.close()
        monkeypatch.setattr(stored_sessions, "_write", original)
        original(*args)

    monkeypatch.setattr(stored_sessions, "_write", forget_then_write)
    report = build_sessions(location, NOW, HOURS, tenants=["acme"])
    assert report.skipped == ["acme"] and report.rebuilt == {}
    assert stored(location, "acme") is None
    assert "closed2" not in {r["session_id"] for r in _sessions(lake)}


@pytest.mark.parametrize("late_hour", [7.8, 8.5])
def test_a_late_event_that_moves_or_joins_inactivity_sessions(lake: Path,
                                                               late_hour: float) -> None:
    """Visitor v1 (no client session id) has a stored inactivity session at day 2, 08:00. A
    late event of day 2 moves its start to 07:48 (a new id), or joins it with another one
    at 09:00: the stored rows of v1 give way to the computed ones, not only the one whose
    id the computation still gives (the moved session was counted twice)."""
    location = LakeLocation.parse(lake)
    write_events(lake, [at(2, 9, session_id=None, anonymous_id="v1")])
    build_sessions(location, NOW, HOURS)
    write_events(lake, [at(2, late_hour, received=NOW - dt.timedelta(hours=1),
                           session_id=None, anonymous_id="v1")])
    expected = _sessions(lake, stored_sessions=False)
    assert _sessions(lake) == expected
    day2 = [r for r in expected if r["anonymous_id"] == "v1"
            and r["start"].date() == dt.date(2026, 3, 3)]
    assert [r["events"] for r in day2] == ([2, 1] if late_hour < 8 else [3])


def test_rows_a_late_loader_adds_to_a_closed_day_are_not_missed(lake: Path) -> None:
    """A loader running behind appends events received on day 3 (closed, before the build)
    after the build: readers see the build no longer covers the closed days and compute,
    and the next maintenance pass rebuilds, though the cutoff did not move."""
    location = LakeLocation.parse(lake)
    assert "acme" in build_sessions(location, NOW, HOURS).rebuilt
    write_events(lake, [at(3, 20, session_id="behind", anonymous_id="b1"),
                        at(1, 12.2, session_id="late", anonymous_id="a4")])
    expected = _sessions(lake, stored_sessions=False)
    assert "behind" in {r["session_id"] for r in expected}
    assert _sessions(lake) == expected
    assert set(build_sessions(location, NOW + dt.timedelta(hours=1), HOURS).rebuilt) == {"acme"}
    store = stored(location, "acme")
    assert store is not None and store.closed_rows is not None
    assert _sessions(lake) == expected
    assert build_sessions(location, NOW + dt.timedelta(hours=2), HOURS).rebuilt == {}


def test_a_visitor_id_with_a_newline_is_one_visitor(lake: Path) -> None:
    """Ids are kept as sent: the stored inactivity sessions of "v\nx" give way to the
    computed ones when a late event moves their start, as any visitor's do."""
    location = LakeLocation.parse(lake)
    write_events(lake, [at(2, 8, session_id=None, anonymous_id="v\nx"),
                        at(2, 9, session_id=None, anonymous_id="v\nx")])
    build_sessions(location, NOW, HOURS)
    write_events(lake, [at(2, 7.8, received=NOW - dt.timedelta(hours=1), session_id=None,
                           anonymous_id="v\nx")])
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)


def test_retention_of_events_drops_the_tenants_stored_rows(lake: Path) -> None:
    """Stored sessions and identities summarise every closed day: when retention removes
    one from events, a link seen only there (a1 -> u1 on day 0) must go with it."""
    from ingest.lake.config import MaintainSettings
    from ingest.lake.maintain import Maintainer
    from schemas.tenants import Tenant, Tenants

    write_events(lake, [at(0, 9.5, session_id="closed1", anonymous_id="a1", user_id="u1",
                           event_type="identify", event_name="identify")])
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    assert stored(location, "acme") is not None
    with connect(lake, "acme") as con:
        assert con.sql("SELECT anonymous_id, user_id FROM identities").fetchall() == [
            ("a1", "u1")]
    today = DAY0 + dt.timedelta(days=3, hours=12)  # day 0 is past a 2-day retention
    tenants = Tenants([Tenant(id="acme", write_keys=("k",), retention_days=2),
                       Tenant(id="globex", write_keys=("g",), retention_days=400)])
    report = Maintainer(location, MaintainSettings(), tenants,
                        clock=lambda: today).run_once(vacuum=False)
    assert report.tables["events"].expired_files > 0
    assert stored(location, "acme") is None and stored(location, "globex") is not None
    with connect(lake, "acme") as con:
        assert con.sql("SELECT anonymous_id, user_id FROM identities").fetchall() == []
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)


def test_stored_rows_have_the_columns_of_computed_ones_in_order(lake: Path) -> None:
    """All days closed, so every row is stored: ``SELECT *`` (and a CSV of it) must not
    change its columns' order when maintenance has run (the partition column came last)."""
    build_sessions(LakeLocation.parse(lake), NOW + dt.timedelta(days=2), HOURS)
    for view in ("sessions", "sessions_base"):
        columns = []
        for kw in ({}, {"stored_sessions": False}):
            with connect(lake, "acme", **kw) as con:
                columns.append(con.sql(f"SELECT * FROM {view}").columns)
        assert columns[0] == columns[1], view


def test_forget_leaves_no_byte_of_the_person_in_the_stored_rows(lake: Path) -> None:
    """Two daily builds (the second overwrites the first's files, which stay on storage),
    then forget: neither the Delta log (no id statistics) nor a superseded file holds the
    person."""
    person = "person-0123456789"
    write_events(lake, [at(1, 15, session_id="p1", anonymous_id=person, user_id="u-person")])
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    build_sessions(location, NOW + dt.timedelta(days=1), HOURS)
    derived = [p for p in (lake / "_derived").rglob("*") if p.is_file()]
    assert any(person.encode() in p.read_bytes() for p in derived)
    forgetter = Forgetter(location)
    try:
        forgetter.forget("acme", [Identifier("anonymous_id", person)])
    finally:
        forgetter.close()
    holding = [str(p.relative_to(lake)) for p in (lake / "_derived").rglob("*")
               if p.is_file() and (person.encode() in p.read_bytes()
                                   or b"u-person" in p.read_bytes())]
    assert holding == []
    assert stored(location, "globex") is not None  # the other tenant's rows stay


def test_dropping_stored_rows_keeps_a_build_committed_meanwhile(
        lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forget (or replay, retention) drops the stored rows while maintenance's next build
    commits: the drop's clean-up after its commit must not delete the build's files, which
    the table now holds (it did: every query of the tenant failed, and builds did not
    repair it)."""
    import pyarrow.fs as pafs

    from schemas.derived import drop_stored_sessions

    write_events(lake, [at(0, 9.5, session_id="closed1", anonymous_id="a1", user_id="u1",
                           event_type="identify", event_name="identify")])
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    real = pafs.FileSelector
    built: list[dict[str, int]] = []

    def build_first(path: str, *args: Any, **kwargs: Any) -> Any:
        if "_derived/identities/tenant=acme" in path and not built:
            built.append(build_sessions(location, NOW + dt.timedelta(days=1), HOURS).rebuilt)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pafs, "FileSelector", build_first)
    assert drop_stored_sessions(location, "acme") > 0
    monkeypatch.setattr(pafs, "FileSelector", real)
    assert built and "acme" in built[0]
    store = stored(location, "acme")
    assert store is not None and store.identity_uris
    assert all(Path(u).exists() for u in (*store.uris, *store.identity_uris))
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)


def test_stored_files_missing_from_storage_are_computed_instead(lake: Path) -> None:
    """A forget deletes the stored files right after a connection read the log (or a lake
    damaged by hand): the connection computes the sessions, as without stored ones, rather
    than failing on a missing file."""
    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    store = stored(location, "acme")
    assert store is not None and store.uris
    Path(store.uris[0]).unlink()
    rows = _sessions(lake)
    assert rows and rows == _sessions(lake, stored_sessions=False)


def test_retention_keeps_stored_files_for_open_connections_until_vacuum(lake: Path) -> None:
    """A connection reading stored sessions outlives a retention pass (its views stay on
    their snapshot, as they do for the events retention removes); vacuum deletes the files
    later."""
    from ingest.lake.config import MaintainSettings
    from ingest.lake.maintain import Maintainer
    from schemas.tenants import Tenant, Tenants

    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    store = stored(location, "acme")
    assert store is not None
    tenants = Tenants([Tenant(id="acme", write_keys=("k",), retention_days=2),
                       Tenant(id="globex", write_keys=("g",), retention_days=400)])
    today = DAY0 + dt.timedelta(days=3, hours=12)
    with connect(lake, "acme") as con:
        before = con.sql("SELECT count(*) FROM sessions").fetchall()
        report = Maintainer(location, MaintainSettings(), tenants,
                            clock=lambda: today).run_once(vacuum=False)
        assert report.tables["events"].expired_files > 0 and stored(location, "acme") is None
        assert con.sql("SELECT count(*) FROM sessions").fetchall() == before
    assert all(Path(u).exists() for u in store.uris)
    Maintainer(location, MaintainSettings(vacuum_retention_hours=0), tenants,
               clock=lambda: today).run_once(vacuum=True)
    assert not any(Path(u).exists() for u in store.uris)


def test_a_build_committed_before_the_drop_commits_is_dropped_too(
        lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build commits between the drop's read of the table and its commit: Delta refuses
    the drop (same application id), which reads again and drops the new rows too."""
    from deltalake import DeltaTable

    from schemas.derived import drop_stored_sessions

    location = LakeLocation.parse(lake)
    build_sessions(location, NOW, HOURS)
    real = DeltaTable.delete
    built: list[dict[str, int]] = []

    def build_first(self: DeltaTable, *args: Any, **kwargs: Any) -> Any:
        if not built:
            built.append(build_sessions(location, NOW + dt.timedelta(days=1), HOURS).rebuilt)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "delete", build_first)
    assert drop_stored_sessions(location, "acme") > 0
    assert built and "acme" in built[0]
    assert stored(location, "acme") is None
    assert _sessions(lake) == _sessions(lake, stored_sessions=False)
