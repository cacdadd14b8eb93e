"""The interactive `driftnet sql` shell, driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics import connect
from analytics.repl import Shell
from tests.analytics.lakes import event, write_events


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    write_events(root, [event(minute=0, session_id="s1", page_url="https://x/landing",
                              event_type="page", event_name="page_view")])
    return root


def test_completion_knows_every_view_and_its_columns(lake: Path) -> None:
    shell = Shell(lambda: connect(lake, "acme"), "table")
    assert {"events", "events_all", "sessions", "session_events", "raw", "quarantine"} <= set(
        shell.views)
    assert shell.complete("landing_p", 0) == "landing_page"
    assert shell.complete("sessi", 0) == "session_events"
    assert [shell.complete("sel", i) for i in range(2)] == ["select", None]
    shell.con.close()


def _read_until(fd: int, marker: bytes, timeout_s: float = 20.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while marker not in out:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} in {out[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            out += os.read(fd, 65536)
    return out


def test_interactive_session_with_history_and_tab_completion(lake: Path, tmp_path: Path) -> None:
    master, slave = pty.openpty()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftnet", "sql", "--lake", str(lake), "--tenant", "acme"],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    try:
        _read_until(master, b"sql> ")
        os.write(master, b"select landing_pag\t from sessions;\n")
        out = _read_until(master, b"sql> ")
        assert b"https://x/landing" in out          # Tab completed landing_page
        os.write(master, b"copy (select 1) to 'x.csv';\n")
        assert b"not allowed" in _read_until(master, b"sql> ")
        os.write(master, b".tables\n")
        assert b"sessions" in _read_until(master, b"sql> ")
        os.write(master, b".quit\n")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    history = (tmp_path / ".driftnet_history").read_text()
    assert "select landing_page from sessions;" in history
