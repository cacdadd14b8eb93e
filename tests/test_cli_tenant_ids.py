"""Every command that takes --tenant refuses what is not a tenant id before touching a path."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from driftnet.cli import main

BAD = ["acme/../../..", "*", "../globex", "acme/x", "", "a" * 200, "acme\n"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("command", [
    ["replay", "--from", "2026-01-01", "--to", "2026-01-02"],
    ["compact", "--before", "2026-01-01"],
    ["forget", "--anonymous-id", "someone"],
    ["sql", "SELECT 1"],
    ["discover"],
    ["export", "--recipe", "sessions", "--out", "{tmp}/out"],
])
def test_a_tenant_argument_that_is_not_an_id_is_refused(tmp_path: Path, command: list[str],
                                                        bad: str) -> None:
    lake = tmp_path / "lake"
    (lake / "events").mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = CliRunner().invoke(main, [args[0], "--lake", str(lake), "--tenant", bad, *args[1:]])
    assert result.exit_code == 2, result.output
    assert "tenant" in result.output.lower()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("command", [
    ["sql", "SELECT count(*) FROM events"],
    ["discover"],
    ["export", "--recipe", "sessions", "--out", "{tmp}/out"],
])
def test_an_unknown_tenant_is_an_error_that_lists_the_known_ones(tmp_path: Path,
                                                                 command: list[str]) -> None:
    from ingest.lake.writer import append_rows
    from schemas.storage import LakeLocation
    from tests.ingest.lake.rows import event_row, table

    lake = tmp_path / "lake"
    append_rows(LakeLocation.parse(lake), "events", table("events", [event_row("acme", 1)]))
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = CliRunner().invoke(main, [args[0], "--lake", str(lake), "--tenant", "acmee",
                                       *args[1:]])
    assert result.exit_code == 2, result.output
    assert "unknown tenant 'acmee'" in result.output and "acme" in result.output
    # a tenant of the tenants file without data yet is known: empty results, no error
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[[tenant]]\nid = "acmee"\nwrite_keys = ["k"]\n')
    result = CliRunner().invoke(main, [args[0], "--lake", str(lake), "--tenant", "acmee",
                                       "--tenants", str(tenants), *args[1:]])
    assert result.exit_code == 0, result.output
