"""Dedupe under retries: the same (tenant, event_id) appears once in `events`."""

from __future__ import annotations

import uuid
from pathlib import Path

from analytics import connect
from tests.support import Server


def _counts(server: Server, event_id: str, tenant: str = "acme") -> tuple[int, int]:
    server.wait_loaded()
    with connect(server.lake, tenant) as con:
        visible = con.execute("SELECT count(*) FROM events WHERE event_id = ?",
                              [event_id]).fetchall()[0][0]
        stored = con.execute("SELECT count(*) FROM events_all WHERE event_id = ?",
                             [event_id]).fetchall()[0][0]
    return int(visible), int(stored)


def _track(event_id: str) -> dict[str, str]:
    return {"type": "track", "event": "Retry", "anonymousId": "a", "messageId": event_id}


def test_retries_in_one_batch_in_later_batches_and_after_restart(tmp_path: Path,
                                                                 tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file).start()
    try:
        same_batch = str(uuid.uuid4())
        body = {"batch": [_track(same_batch), _track(same_batch)]}
        assert server.post("/v1/batch", body, key="acme-key").status_code == 200
        assert _counts(server, same_batch) == (1, 2)

        later = str(uuid.uuid4())
        assert server.post("/v1/track", _track(later), key="acme-key").status_code == 200
        server.wait_loaded()
        assert server.post("/v1/track", _track(later), key="acme-key").status_code == 200
        assert _counts(server, later) == (1, 2)

        # The same id under another tenant is another event.
        assert server.post("/v1/track", _track(later), key="globex-key").status_code == 200
        assert _counts(server, later, "globex") == (1, 1)
        assert server.stop() == 0

        server.start()  # the window is rebuilt from the lake
        assert server.post("/v1/track", _track(later), key="acme-key").status_code == 200
        assert _counts(server, later) == (1, 3)
    finally:
        assert server.stop() == 0
    with connect(server.lake, "acme") as con:
        first = con.execute("SELECT is_duplicate FROM events_all WHERE event_id = ? "
                            "ORDER BY received_at", [later]).fetchall()
    assert [r[0] for r in first] == [False, True, True]
