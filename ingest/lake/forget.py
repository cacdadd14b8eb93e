"""Forget one person: delete their rows everywhere in the lake, then prove it with a receipt.

``driftnet forget --tenant T --anonymous-id X`` (or ``--user-id Y``, repeatable) removes,
in the tenant's partitions of every table:

- **events** whose ``anonymous_id``/``network_user_id`` (or ``user_id``) is the identifier,
  and events in which the identifier appears anywhere in a text column (properties,
  traits, URLs, ...);
- **raw** hits in which the identifier appears (body, query, headers), and the hits that
  carried a removed event (so encoded bodies, e.g. PostHog lz64, go too: a hit that carried
  several people's events is removed whole; the other people's events stay);
- **quarantine** rows in which the identifier appears (payload, detail);
- the person's **session state** (rows of the lake's ``_state/sessions`` table) and,
  through the receipt, their events' **dedupe keys** and session state in running loaders.

Identifiers shorter than :data:`MIN_SUBSTRING` bytes are matched exactly in the id columns
only (searching payloads for "42" would match everything).

Each table is rewritten in one Delta commit: every data file holding a matching row is
replaced by a copy without those rows (``dataChange = true``), under the maintenance
application id (a concurrent compaction cannot resurrect the rows; a conflicting one makes
forget re-scan). The replaced files, and any superseded file still on storage that holds a
matching row, are then deleted at once (not after the vacuum retention): older table
versions that needed them can no longer be read, which export reproduction reports. A file
no commit added is deleted only once older than
:data:`~schemas.delta.UNCOMMITTED_GRACE_S`: a younger one may be a loader's flush about to
commit it (then it is new data, like an event received after the forget). The Delta log
never holds identifiers (statistics are timestamps only, commit information names the
operation only). Finally a receipt goes to ``_audit`` with the identifier as a salted hash
(the salt is ``_loader/forget.salt`` in the lake).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote as url_quote
from urllib.parse import quote_plus as url_quote_plus

import duckdb
import orjson
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, RemoveAction

from ingest.lake.compact import kind_of
from ingest.lake.errors import ConcurrentCommitError, ForgetError
from ingest.lake.files import FileWriter, WrittenFile
from ingest.lake.maintain import maintenance_commit, remove_action
from ingest.lake.state import forget_visitors
from ingest.lake.tables import open_for_write, refresh
from ingest.loader.dedupe import KEY_SQL
from schemas.audit import RECEIPT_SCHEMA, read_receipts
from schemas.delta import (
    DataFile,
    read_files_sql,
    snapshot_files,
    table_uri,
    unreferenced_files,
)
from schemas.derived import drop_stored_sessions
from schemas.errors import DriftnetError
from schemas.lake import AUDIT_TABLE, LOADER_STATE_DIR, ROW_SCHEMAS, Table
from schemas.sql import quote
from schemas.storage import LakeLocation
from schemas.tenants import is_tenant_id

log = logging.getLogger(__name__)

IdentifierKind = Literal["anonymous_id", "user_id"]
MIN_SUBSTRING = 8
"""Identifiers at least this long are also searched for inside payloads and text columns."""
SALT_FILE = "forget.salt"
_ORDER: tuple[Table, ...] = ("raw", "events", "quarantine")
"""Raw before events: a replay that read the day's raw before forget's commit then gives up
(its raw files changed), and one after it cannot rebuild the person's events from raw
(events first let a replay between the two commits bring them back). The events' lineage,
which tells raw's hits that carried the person, is collected before either commit."""
_MAX_ATTEMPTS = 5
_LINEAGE = "source, source_partition, source_offset, source_index"


@dataclass(frozen=True)
class Identifier:
    """One identifier of the person to forget."""

    kind: IdentifierKind
    value: str


@dataclass
class TableResult:
    """What forget did to one table."""

    rows: int = 0
    files_rewritten: int = 0
    version_before: int | None = None
    version_after: int | None = None
    deleted: list[str] = field(default_factory=list)
    """Paths (relative to the lake) physically deleted."""


@dataclass
class Receipt:
    """The audit record of one forget."""

    receipt_id: str
    tenant: str
    identifier_hashes: list[tuple[IdentifierKind, str]]
    requested_at: dt.datetime
    completed_at: dt.datetime | None = None
    files_deleted_at: dt.datetime | None = None
    tables: dict[Table, TableResult] = field(default_factory=dict)
    session_states_removed: int = 0
    stored_session_files_removed: int = 0
    event_keys: list[tuple[int, int]] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    """Anonymous ids found with the user ids and forgotten too (``with_linked``)."""

    @property
    def rows_removed(self) -> int:
        """Rows removed from all tables."""
        return sum(t.rows for t in self.tables.values())


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]::VARCHAR[]"


def _json_string(value: str) -> str:
    """``value`` as it appears inside a JSON string written by DuckDB or orjson (non-ASCII
    characters as they are)."""
    return orjson.dumps(value).decode()[1:-1]


def _match_sql(table: Table, ids: Sequence[Identifier], lineage: bool) -> str:
    """SQL predicate of the rows of ``table`` that belong to the person."""
    anonymous = [i.value for i in ids if i.kind == "anonymous_id"]
    users = [i.value for i in ids if i.kind == "user_id"]
    long_ids = sorted({i.value for i in ids if len(i.value.encode()) >= MIN_SUBSTRING})
    terms: list[str] = []
    schema = ROW_SCHEMAS[table]
    if table == "events":
        if anonymous:
            terms.append(f"anonymous_id IN (SELECT unnest({_list(anonymous)}))")
            terms.append(f"network_user_id IN (SELECT unnest({_list(anonymous)}))")
        if users:
            terms.append(f"user_id IN (SELECT unnest({_list(users)}))")
    if long_ids:
        # Text (and nested values rendered as text) holds an id as it is, escaped as in a
        # JSON string (the JSON columns: a backslash or a quote doubled), or percent-encoded
        # (a URL's or a query string's parameter: `@` as %40); a BLOB cast to
        # VARCHAR shows each byte outside printable ASCII (and a backslash) as \xHH, and so
        # must the forms looked for in it: one haystack and one rendering of the forms each.
        texts = [f"coalesce({f.name}, '')" for f in schema
                 if pa.types.is_string(f.type) and f.name != "tenant"]
        texts += [f"coalesce({f.name}::VARCHAR, '')" for f in schema
                  if pa.types.is_nested(f.type)]
        blobs = [f"coalesce({f.name}::VARCHAR, '')" for f in schema
                 if pa.types.is_binary(f.type)]
        forms = sorted({form for v in long_ids for form in (
            v, _json_string(v), url_quote(v, safe=""), url_quote_plus(v, safe=""))})
        for columns, needles in ((texts, [quote(v) for v in forms]),
                                 (blobs, [f"encode({quote(v)})::VARCHAR" for v in forms])):
            if columns:
                haystack = "concat_ws(chr(0), " + ", ".join(columns) + ")"
                terms.append(f"list_bool_or([contains({haystack}, n) FOR n IN "
                             f"[{', '.join(needles)}]])")
    if lineage:
        terms.append(f"({_LINEAGE}) IN (SELECT ({_LINEAGE}) FROM forget_lineage)")
    return "(" + " OR ".join(terms or ["false"]) + ")"


class Forgetter:
    """Carries out forget requests on one lake."""

    def __init__(self, lake: LakeLocation, zstd_level: int = 3,
                 progress: Callable[[str], None] | None = None) -> None:
        self.lake = lake
        self.writer = FileWriter(lake, zstd_level)
        self.progress = progress or (lambda _: None)
        self._fs, self._root = lake.filesystem()
        self.con = duckdb.connect(config={"threads": 2})
        lake.register_duckdb(self.con)
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"CREATE TEMP TABLE forget_lineage AS SELECT * FROM (VALUES "
                         f"(NULL::VARCHAR, NULL::INTEGER, NULL::BIGINT, NULL::INTEGER)) "
                         f"t({_LINEAGE}) WHERE false")

    def close(self) -> None:
        """Release the DuckDB connection."""
        self.con.close()

    # -- the request
    def forget(self, tenant: str, ids: Sequence[Identifier], *, with_linked: bool = False
               ) -> Receipt:
        """Remove the person's rows, state and files; write and return the receipt."""
        if not is_tenant_id(tenant):
            raise ForgetError("not a valid tenant id", tenant=tenant)
        self.lake.must_exist()  # a request for a mistyped lake must not read as done
        ids = [i for i in ids if i.value]
        if not ids:
            raise ForgetError("give at least one non-empty --anonymous-id or --user-id")
        salt = self._salt()
        receipt = Receipt(uuid.uuid4().hex, tenant, [], dt.datetime.now(dt.UTC))
        if with_linked:
            receipt.linked = self._linked(tenant, ids)
            ids = [*ids, *(Identifier("anonymous_id", a) for a in receipt.linked
                           if Identifier("anonymous_id", a) not in ids)]
        receipt.identifier_hashes = [(i.kind, _hash(salt, tenant, i)) for i in ids]
        self._collect_lineage(tenant, ids, receipt)
        for table in _ORDER:
            receipt.tables[table] = self._forget_table(table, tenant, ids, receipt)
        receipt.event_keys = sorted(set(receipt.event_keys))
        # stored session rows are derived from the events just rewritten: drop them all
        receipt.stored_session_files_removed = drop_stored_sessions(self.lake, tenant)
        receipt.files_deleted_at = dt.datetime.now(dt.UTC)
        receipt.session_states_removed = self._forget_sessions(tenant, ids)
        receipt.completed_at = dt.datetime.now(dt.UTC)
        self._write_receipt(receipt)
        return receipt

    def _linked(self, tenant: str, ids: Sequence[Identifier]) -> list[str]:
        users = [i.value for i in ids if i.kind == "user_id"]
        if not users:
            return []
        files = [f.uri for f in self._active("events", tenant)]
        if not files:
            return []
        source = read_files_sql(self.con, "events", files)
        rows = self.con.execute(
            f"SELECT DISTINCT anonymous_id FROM ({source}) WHERE user_id IN "
            f"(SELECT unnest({_list(users)})) AND anonymous_id IS NOT NULL ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _active(self, table: Table, tenant: str) -> list[DataFile]:
        delta = open_for_write(self.lake, table)
        return snapshot_files(delta, self.lake, table, tenant)

    # -- one table
    def _forget_table(self, table: Table, tenant: str, ids: Sequence[Identifier],
                      receipt: Receipt) -> TableResult:
        for _ in range(_MAX_ATTEMPTS):
            try:
                return self._try_table(table, tenant, ids, receipt)
            except ConcurrentCommitError as exc:
                log.info("forget: %s changed meanwhile (%s); scanning again", table, exc)
        raise ForgetError("the table kept changing under forget; try again", table=table)

    def _try_table(self, table: Table, tenant: str, ids: Sequence[Identifier],
                   receipt: Receipt) -> TableResult:
        result = TableResult()
        delta = refresh(open_for_write(self.lake, table))
        result.version_before = delta.version()
        active = snapshot_files(delta, self.lake, table, tenant)
        predicate = _match_sql(table, ids, lineage=table == "raw")
        self.progress(f"{table}: scanning {len(active)} files")
        matched = self._matching_files(table, active, predicate)
        if table == "events":
            self._collect_events(active, predicate, receipt)
        written: list[WrittenFile] = []
        removed: list[DataFile] = []
        try:
            for f in matched:
                kept, dropped = self._rewrite(table, f, predicate)
                result.rows += dropped
                removed.append(f)
                if kept is not None:
                    written.append(kept)
            self.writer.sync()
            if removed:
                current = {f.path for f in snapshot_files(refresh(delta), self.lake, table,
                                                          tenant)}
                if any(f.path not in current for f in removed):
                    raise ConcurrentCommitError("files were removed meanwhile", table=table)
                actions: list[AddAction | RemoveAction] = [remove_action(f, True)
                                                           for f in removed]
                actions += [w.add_action(data_change=True) for w in written]
                result.version_after = maintenance_commit(delta, table, actions, "forget")
        except BaseException:
            for w in written:
                self.writer.delete(table, w.path)
            raise
        result.files_rewritten = len(removed)
        result.version_after = result.version_after or delta.version()
        for f in removed:
            result.deleted.append(self._delete(table, f.path))
        result.deleted += self._purge_history(table, tenant, predicate, delta)
        return result

    def _matching_files(self, table: Table, files: Sequence[DataFile], predicate: str
                        ) -> list[DataFile]:
        if not files:
            return []
        by_uri = {f.uri: f for f in files}
        source = read_files_sql(self.con, table, list(by_uri), filename=True)
        rows = self.con.execute(
            f"SELECT DISTINCT filename FROM ({source}) WHERE {predicate}").fetchall()
        return sorted((by_uri[str(r[0])] for r in rows), key=lambda f: f.path)

    def _collect_lineage(self, tenant: str, ids: Sequence[Identifier],
                         receipt: Receipt) -> None:
        """The lineage and dedupe keys of the person's events, before raw is rewritten."""
        delta = refresh(open_for_write(self.lake, "events"))
        self._collect_events(snapshot_files(delta, self.lake, "events", tenant),
                             _match_sql("events", ids, lineage=False), receipt)

    def _collect_events(self, files: Sequence[DataFile], predicate: str,
                        receipt: Receipt) -> None:
        """Remember the lineage (for raw) and dedupe keys of the person's events."""
        if not files:
            return
        source = read_files_sql(self.con, "events", [f.uri for f in files], partitions=True)
        self.con.execute(f"INSERT INTO forget_lineage SELECT DISTINCT {_LINEAGE} FROM "
                         f"({source}) WHERE {predicate}")
        keys = self.con.execute(f"SELECT DISTINCT {KEY_SQL} FROM ({source}) WHERE {predicate}"
                                ).fetchall()
        receipt.event_keys.extend((int(hi), int(lo)) for hi, lo in keys)

    def _rewrite(self, table: Table, f: DataFile, predicate: str
                 ) -> tuple[WrittenFile | None, int]:
        """A copy of ``f`` without the person's rows (None when nothing is left)."""
        source = read_files_sql(self.con, table, [f.uri])
        total, dropped = self.con.execute(
            f"SELECT count(*), count(*) FILTER ({predicate}) FROM ({source})").fetchall()[0]
        if dropped == total:
            return None, int(dropped)
        reader = self.con.sql(
            f"SELECT * FROM ({source}) WHERE ({predicate}) IS NOT TRUE"
        ).to_arrow_reader(128 * 1024)
        kept = self.writer.write(table, f.tenant, f.date, reader, kind=kind_of(f.path) or "f")
        return kept, int(dropped)

    def _delete(self, table: Table, path: str) -> str:
        self._fs.delete_file(f"{self._root}/{table}/{path}")
        return f"{table}/{path}"

    def _purge_history(self, table: Table, tenant: str, predicate: str, delta: DeltaTable
                       ) -> list[str]:
        """Delete files on storage that are not in the table and hold the person's rows:
        superseded by compaction or removed by retention (at any age), and never committed
        once older than UNCOMMITTED_GRACE_S (a younger one may be a loader's flush between
        its write and its commit: deleting it would break the table)."""
        base = f"{self._root}/{table}"
        stale = unreferenced_files(refresh(delta), self._fs, base, f"{base}/tenant={tenant}")
        return [self._delete(table, relative) for relative in stale
                if self._holds_match(table, self.lake.join(table, relative), predicate)]

    def _holds_match(self, table: Table, uri: str, predicate: str) -> bool:
        try:
            source = read_files_sql(self.con, table, [uri])
            hit = self.con.execute(f"SELECT count(*) FROM ({source}) WHERE {predicate}"
                                   ).fetchall()[0]
        except duckdb.Error:
            # A partial file a crashed loader left, or an unreadable one: delete it anyway,
            # it is no part of any table and may hold the person.
            return True
        return bool(hit[0])

    # -- state, salt and receipt
    def _forget_sessions(self, tenant: str, ids: Sequence[Identifier]) -> int:
        """Delete the person's session state from the lake's state table (and every file
        that held it; running loaders reload their state when they see the receipt)."""
        visitors = [("a:" if i.kind == "anonymous_id" else "u:") + i.value for i in ids]
        try:
            return forget_visitors(self.lake, self.con, tenant, visitors)
        except (DeltaError, OSError, duckdb.Error) as exc:
            raise ForgetError(f"cannot remove session state: {exc}") from exc

    def _salt(self) -> bytes:
        path = f"{self._root}/{LOADER_STATE_DIR}/{SALT_FILE}"
        try:
            with self._fs.open_input_stream(path) as stream:
                return bytes.fromhex(stream.read().decode().strip())
        except (FileNotFoundError, OSError):
            pass
        salt = secrets.token_bytes(32)
        self._fs.create_dir(f"{self._root}/{LOADER_STATE_DIR}", recursive=True)
        with self._fs.open_output_stream(path) as out:
            out.write(salt.hex().encode())
        return salt

    def _write_receipt(self, receipt: Receipt) -> None:
        tables = receipt.tables
        rows = [{
            "receipt_id": receipt.receipt_id,
            "tenant": receipt.tenant,
            "identifier_kind": kind,
            "identifier_hash": digest,
            "requested_at": receipt.requested_at,
            "completed_at": receipt.completed_at,
            "files_deleted_at": receipt.files_deleted_at,
            "rows_removed": orjson.dumps({t: r.rows for t, r in tables.items()}).decode(),
            "table_versions": orjson.dumps({t: [r.version_before, r.version_after]
                                            for t, r in tables.items()}).decode(),
            "files_rewritten": sum(r.files_rewritten for r in tables.values()),
            "files_deleted": orjson.dumps([p for r in tables.values()
                                           for p in r.deleted]).decode(),
            "session_states_removed": receipt.session_states_removed,
            "event_keys": orjson.dumps(receipt.event_keys).decode(),
        } for kind, digest in receipt.identifier_hashes]
        write_deltalake(table_uri(self.lake, AUDIT_TABLE),
                        pa.Table.from_pylist(rows, schema=RECEIPT_SCHEMA), mode="append",
                        storage_options=dict(self.lake.storage_options) or None)


def _hash(salt: bytes, tenant: str, identifier: Identifier) -> str:
    message = f"{tenant}\0{identifier.kind}\0{identifier.value}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


def identifier_hash(lake: LakeLocation, tenant: str, identifier: Identifier) -> str | None:
    """The receipt hash of an identifier (to find its receipt), None before any forget."""
    fs, root = lake.filesystem()
    try:
        with fs.open_input_stream(f"{root}/{LOADER_STATE_DIR}/{SALT_FILE}") as stream:
            salt = bytes.fromhex(stream.read().decode().strip())
    except (FileNotFoundError, OSError):
        return None
    return _hash(salt, tenant, identifier)


class ForgetReceipts:
    """New forget receipts of a lake, for running loaders: the dedupe keys of the events a
    forget removed leave the loader's window, so a later retry of such an event is not
    hidden as the duplicate of a row that no longer exists."""

    def __init__(self, lake: LakeLocation) -> None:
        self.lake = lake
        self._seen: set[str] = set()
        self._version: int | None = None
        self.changed = False
        """True when the last new_event_keys found new receipts."""

    def _new_rows(self) -> list[dict[str, object]]:
        from schemas.delta import open_table

        delta = open_table(self.lake, AUDIT_TABLE)
        if delta is None or delta.version() == self._version:
            return []
        self._version = delta.version()
        rows = read_receipts(self.lake, delta, ["receipt_id", "event_keys"]).to_pylist()
        new = [r for r in rows if r["receipt_id"] not in self._seen]
        self._seen.update(str(r["receipt_id"]) for r in rows)
        return new

    def seen_until_now(self) -> None:
        """Take every existing receipt as applied (the lake no longer holds their events)."""
        try:
            self._new_rows()
        except DriftnetError as exc:
            log.warning("cannot read forget receipts: %s", exc)

    def new_event_keys(self) -> pa.Table:
        """Dedupe keys (``k_hi``, ``k_lo``) of the receipts written since the last call."""
        keys: list[tuple[int, int]] = []
        try:
            rows = self._new_rows()
        except DriftnetError as exc:
            log.warning("cannot read forget receipts: %s", exc)
            rows = []
        self.changed = bool(rows)
        for row in rows:
            keys += [(int(hi), int(lo)) for hi, lo in orjson.loads(str(row["event_keys"]))]
        return pa.table({"k_hi": pa.array([k[0] for k in keys], pa.uint64()),
                         "k_lo": pa.array([k[1] for k in keys], pa.uint64())})
