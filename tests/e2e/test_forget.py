"""`driftnet forget` on a live lake: afterwards no file under the lake holds the person.

The person arrives through several trackers (Segment, Snowplow, the pixel, a PostHog lz64
body whose bytes do not contain the id), identifies, and sends a malformed hit that is
quarantined; maintenance compacts meanwhile, so superseded files hold the person too. After
forget, every file under the lake is searched twice: its raw bytes (Delta log, checkpoints,
the session store, Parquet footers) and every decoded string and binary value of every
Parquet file, active or not.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import lzstring  # type: ignore[import-untyped]
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from analytics.export import ExportSpec, export_to_dir, reproduce_from_manifest
from analytics.export.errors import InputChangedError
from ingest.lake.forget import Identifier, identifier_hash
from schemas.storage import LakeLocation
from tests.support import Server, basic, lake_rows

PERSON = "visitor-4f1c9a8e2b7d"
PERSON_USER = "user-x-0a9b8c7d"
OTHER = "visitor-77aa66bb55cc"
MAINTAIN_FAST = {"DRIFTNET_MAINTAIN__INTERVAL_S": "0.3", "DRIFTNET_MAINTAIN__FANOUT": "2",
                 "DRIFTNET_MAINTAIN__SMALL_FILE_BYTES": "1024"}


def occurrences(lake: Path, needle: str) -> list[str]:
    """Where ``needle`` appears under ``lake``: raw bytes of any file, decoded Parquet values."""
    found = []
    raw = needle.encode()
    for path in sorted(p for p in lake.rglob("*") if p.is_file()):
        if raw in path.read_bytes():
            found.append(f"bytes of {path.relative_to(lake)}")
        if path.suffix != ".parquet":
            continue
        table = pq.read_table(path)
        for name, column in zip(table.column_names, table.columns, strict=True):
            if not (pa.types.is_string(column.type) or pa.types.is_binary(column.type)):
                continue
            for value in column.to_pylist():
                if value is not None and (raw in value if isinstance(value, bytes)
                                          else needle in value):
                    found.append(f"value of {name} in {path.relative_to(lake)}")
                    break
    return found


def _send_person(server: Server, who: str, user_id: str | None, n: int) -> None:
    headers = {"Authorization": basic("acme-key"), "Content-Type": "application/json"}
    for i in range(n):  # one request each: many small flushes, so compaction has work
        event = {"type": "track", "event": "Product Viewed", "anonymousId": who,
                 "messageId": str(uuid.uuid4()), "properties": {"product_id": f"p{i}",
                                                                "note": f"seen by {who}"}}
        assert httpx.post(f"{server.url}/v1/track", content=orjson.dumps(event),
                          headers=headers).status_code == 200
        time.sleep(0.15)
    if user_id:
        identify = {"type": "identify", "anonymousId": who, "userId": user_id,
                    "messageId": str(uuid.uuid4()), "traits": {"plan": "pro"}}
        assert httpx.post(f"{server.url}/v1/identify", content=orjson.dumps(identify),
                          headers=headers).status_code == 200
    assert httpx.get(f"{server.url}/i", params={"e": "pv", "tv": "js-4", "p": "web",
                                                "aid": "acme-key", "duid": who,
                                                "eid": str(uuid.uuid4()),
                                                "url": "https://shop.acme.example/"}
                     ).status_code == 200
    assert httpx.get(f"{server.url}/p.gif", params={"k": "acme-key", "e": "page_view",
                                                    "a": who}).status_code == 200
    hog = [{"event": "$pageview", "distinct_id": who, "properties": {"token": "acme-key",
                                                                    "$current_url": "x"}}]
    lz = lzstring.LZString().compressToBase64(orjson.dumps(hog).decode())
    assert httpx.post(f"{server.url}/e/?compression=lz64", content=lz).status_code == 200
    bad = {"type": "track", "event": 42, "anonymousId": who, "messageId": str(uuid.uuid4())}
    assert httpx.post(f"{server.url}/v1/track", content=orjson.dumps(bad),
                      headers=headers).status_code == 200


def test_forget_leaves_no_byte_of_the_person_in_the_lake(tmp_path: Path,
                                                          tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file, extra_env=MAINTAIN_FAST).start()
    try:
        _send_person(server, PERSON, PERSON_USER, 8)
        _send_person(server, OTHER, None, 3)
        server.wait_loaded()
        deadline = time.monotonic() + 60
        while not any(h.get("driftnet.operation") == "compact"
                      for h in DeltaTable(str(server.lake / "raw")).history()):
            assert time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.2)
        export = export_to_dir(server.lake, ExportSpec(tenant="acme", recipe="sql",
                                                       query="select * from raw"),
                               tmp_path / "export")
        assert export.inputs
        before = occurrences(server.lake, PERSON)
        assert any("raw/" in o for o in before) and any("events/" in o for o in before)
        assert any("quarantine/" in o for o in before) and any("sessions" in o for o in before)
        out = subprocess.run(
            [sys.executable, "-m", "driftnet", "forget", "--lake", str(server.lake), "--tenant",
             "acme", "--anonymous-id", PERSON, "--user-id", PERSON_USER, "--json"],
            capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr + server.logs()[-3000:]
        summary = orjson.loads(out.stdout)
    finally:
        code = server.stop()
    assert code == 0, server.logs()[-3000:]
    assert summary["rows_removed"]["events"] >= 11 and summary["rows_removed"]["raw"] >= 12
    assert summary["rows_removed"]["quarantine"] >= 1
    assert summary["session_states_removed"] >= 1
    assert occurrences(server.lake, PERSON) == []
    assert occurrences(server.lake, PERSON_USER) == []
    # the person's PostHog hit is gone too although its lz64 bytes never held the id (it
    # carried the person's event); the other person's stays
    assert lake_rows(server.lake, "raw", "SELECT count(*) FROM t WHERE path = '/e/'") == [(1,)]
    # everyone else is untouched
    assert lake_rows(server.lake, "events",
                     f"SELECT count(*) FROM t WHERE anonymous_id = '{OTHER}'") == [(6,)]
    # the receipt: the identifier only as a salted hash, and what was done
    receipts = DeltaTable(str(server.lake / "_audit")).to_pyarrow_table().to_pylist()
    assert {r["identifier_kind"] for r in receipts} == {"anonymous_id", "user_id"}
    lake = LakeLocation.parse(server.lake)
    assert {r["identifier_hash"] for r in receipts} == {
        identifier_hash(lake, "acme", Identifier("anonymous_id", PERSON)),
        identifier_hash(lake, "acme", Identifier("user_id", PERSON_USER))}
    assert all(r["files_deleted_at"] is not None for r in receipts)
    # an export pinned to the old version says exactly why it can no longer be reproduced
    with pytest.raises(InputChangedError, match="driftnet forget"):
        reproduce_from_manifest(tmp_path / "export" / "manifest.json", tmp_path / "again")


def test_short_identifiers_are_matched_exactly_not_inside_payloads(tmp_path: Path,
                                                                    tenants_file: Path) -> None:
    server = Server(tmp_path, tenants_file).start()
    try:
        _send_person(server, "u7", None, 1)
        _send_person(server, "xu7x-other-person", None, 1)
        server.wait_loaded()
    finally:
        assert server.stop() == 0
    out = subprocess.run(
        [sys.executable, "-m", "driftnet", "forget", "--lake", str(server.lake), "--tenant",
         "acme", "--anonymous-id", "u7", "--json"], capture_output=True, text=True,
        timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    left = lake_rows(server.lake, "events", "SELECT DISTINCT anonymous_id FROM t ORDER BY 1")
    assert left == [("xu7x-other-person",)]


def test_a_running_loader_forgets_the_dedupe_keys_of_forgotten_events(
        tmp_path: Path, tenants_file: Path) -> None:
    """A retry of a forgotten event, arriving later, is a new event, not a hidden duplicate."""
    server = Server(tmp_path, tenants_file,
                    extra_env={"DRIFTNET_LOADER__FORGET_POLL_S": "0.2"}).start()
    event = {"type": "track", "event": "Signed Up", "anonymousId": PERSON, "messageId": "m-42"}
    try:
        assert server.post("/v1/track", event, key="acme-key").status_code == 200
        server.wait_loaded()
        out = subprocess.run(
            [sys.executable, "-m", "driftnet", "forget", "--lake", str(server.lake), "--tenant",
             "acme", "--anonymous-id", PERSON], capture_output=True, text=True, timeout=300,
            check=False)
        assert out.returncode == 0, out.stderr
        time.sleep(2.0)  # the loader looks at the receipts every 0.2 s
        assert server.post("/v1/track", event, key="acme-key").status_code == 200
        rows = server.query("acme", "SELECT is_duplicate FROM events_all WHERE event_id = 'm-42'")
    finally:
        assert server.stop() == 0
    assert rows == [(False,)]


def _track(who: str, **properties: str) -> bytes:
    from tests.ingest.loader.helpers import envelope

    return envelope("segment", orjson.dumps({
        "type": "track", "event": "Signed Up", "anonymousId": who,
        "messageId": str(uuid.uuid4()), "properties": properties}), "/v1/track")


def _loaded(lake: Path, frames: list[bytes]) -> LakeLocation:
    """A lake holding ``frames``, loaded by the real pipeline and lake writer (no server)."""
    from ingest.lake.writer import LakeWriter
    from ingest.loader.config import LoaderSettings
    from ingest.loader.pipeline import Pipeline
    from ingest.transport.base import Record
    from schemas.envelope import encode_bundle

    lake.mkdir()
    pipeline = Pipeline(LoaderSettings(lake=str(lake)))
    try:
        out = pipeline.process([Record(0, 1, encode_bundle(frames))], "log")
    finally:
        pipeline.close()
    location = LakeLocation.parse(lake)
    LakeWriter(location).append("log", {"raw": out.raw, "events": out.events,
                                        "quarantine": out.quarantine}, {0: 1})
    return location


def _forget(lake: LakeLocation, person: str) -> Any:
    from ingest.lake.forget import Forgetter

    forgetter = Forgetter(lake)
    try:
        return forgetter.forget("acme", [Identifier("anonymous_id", person)])
    finally:
        forgetter.close()


@pytest.mark.parametrize("person", ["jürgen.müller@example.de", "CORP\\jdoe-12345",
                                    'o"brien-4f1c9a8e'])
def test_an_identifier_outside_ascii_or_with_escapes_is_found_in_text(tmp_path: Path,
                                                                      person: str) -> None:
    """Another person's event that names this one (a referral, a URL) goes with the person's
    own rows: in text columns the id is as sent, in the JSON columns escaped as in a JSON
    string, in a URL percent-encoded, in the raw archive's bytes as UTF-8 (it used to be
    looked for as BLOB text, ``j\\xC3\\xBC...``, everywhere, and missed in text whatever
    was not printable ASCII)."""
    from tests.ingest.loader.helpers import envelope

    pixel = envelope("pixel", b"", "/p.gif", urlencode(
        {"k": "acme-live-3f9c1e7a", "e": "page_view", "a": "referrer-2",
         "url": f"https://shop.acme.example/?ref={quote(person, safe='')}"}), "GET")
    lake = _loaded(tmp_path / "lake", [_track(person), _track("referrer-1", referred_by=person),
                                       pixel, _track("bystander-1", note="nobody")])
    receipt = _forget(lake, person)
    assert receipt.tables["events"].rows == 3 and receipt.tables["raw"].rows == 3
    assert lake_rows(tmp_path / "lake", "events",
                     "SELECT anonymous_id FROM t ORDER BY 1") == [("bystander-1",)]


def test_a_replay_between_forgets_commits_cannot_bring_the_person_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget commits one table after the other, and a replay of the day may run between
    two commits: raw goes first, so the replay either gives up (raw changed under it) or
    rebuilds the day without the person (events first let it rebuild them from raw)."""
    import datetime as dt

    from ingest.lake import forget as forget_module
    from ingest.loader.config import LoaderSettings
    from ingest.loader.replay import replay

    person = "person-0123456789"
    lake = _loaded(tmp_path / "lake", [_track(person), _track("other-visitor")])
    forget_table = forget_module.Forgetter._forget_table
    today = dt.datetime.now(dt.UTC).date()

    def then_replay(self: Any, table: str, *args: Any) -> Any:
        result = forget_table(self, table, *args)
        if table == forget_module._ORDER[0]:
            replay(lake, "acme", today, today, LoaderSettings(lake=str(tmp_path / "lake")),
                   force=True)
        return result

    monkeypatch.setattr(forget_module.Forgetter, "_forget_table", then_replay)
    _forget(lake, person)
    assert lake_rows(tmp_path / "lake", "events",
                     "SELECT anonymous_id FROM t ORDER BY 1") == [("other-visitor",)]
    assert occurrences(tmp_path / "lake", person) == []
