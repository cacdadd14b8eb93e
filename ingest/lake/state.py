"""The loaders' session state, kept in the lake: the Delta table ``<lake>/_state/sessions``.

Sessionize stitches a visitor's events across batches through the visitor's latest session
(id, index, first and last event time, highest index handed out). That state belongs to the
transport partition the visitor's hits are routed to (ingest/collector/visitor.py), so it is
kept per partition, in the lake, where whichever loader owns the partition next finds it: no
local file holds state another host needs.

Rows are appended, never updated: each flush appends, per transport partition, the new state
of the visitors its batch touched, tagged ``as_of`` = the batch's last offset in that
partition, in one commit that records the same application transactions as the data tables.
It is committed *before* the data tables, so a crash can leave state rows of a batch the raw
table does not hold yet; a loader taking a partition over therefore loads, per visitor, the
row with the highest ``as_of`` that is not beyond the last offset the raw table holds (where
it resumes). Re-reading the batch recomputes the same sessions from the same state.

Maintenance compacts the table: per partition, the rows up to the raw table's offset collapse
to each visitor's latest row (visitors idle for longer than the state retention are dropped);
rows beyond it stay as they are. ``driftnet forget`` removes a person's rows. Both commits
carry the maintenance application id (as the data tables' maintenance commits do), so Delta
refuses the later of a compaction and a forget that overlapped: otherwise a compaction that
read a person's rows before a forget would write them back, or commit a file the forget had
just deleted. Forget then scans again; the compaction deletes its file and waits for the
next pass. Loaders' appends carry no such id and never conflict with either.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

from ingest.enrich.session_store import CHANGES_SCHEMA
from ingest.lake.errors import LakeWriteError
from schemas.delta import unreferenced_files
from schemas.lake import MAINTENANCE_APP_ID, loader_app_id
from schemas.storage import LakeLocation

log = logging.getLogger(__name__)

STATE_TABLE = "_state/sessions"
"""Path of the session state table below the lake root."""

STATE_SCHEMA = pa.schema([
    pa.field("stream", pa.string(), nullable=False),
    *CHANGES_SCHEMA,  # source_partition, then the visitor's state, as the loader's store has it
    pa.field("as_of", pa.int64(), nullable=False),
])
STATE_PARTITIONS = ["stream", "source_partition"]
STATE_CONFIGURATION: dict[str, str | None] = {
    # Statistics of visitor ids would copy personal identifiers into the Delta log, where
    # forget could not remove them: offsets and times only.
    "delta.dataSkippingStatsColumns": "as_of,last_us",
    "delta.logRetentionDuration": "interval 7 days",
    "delta.deletedFileRetentionDuration": "interval 1 days",
}
_VALUE_COLUMNS = ("tenant", "visitor", "session_id", "session_index", "start_us", "last_us",
                  "sessions")
_STORED = ", ".join([*_VALUE_COLUMNS, "as_of"])
"""Columns a data file of the state table holds (the partition columns are in its path)."""
_ATTEMPTS = 20


def state_uri(lake: LakeLocation) -> str:
    """URI of the state table."""
    return lake.join(STATE_TABLE)


def open_state(lake: LakeLocation) -> DeltaTable | None:
    """The state table, None when no loader wrote state yet."""
    try:
        return DeltaTable(state_uri(lake), storage_options=dict(lake.storage_options) or None)
    except TableNotFoundError:
        return None


def _files(lake: LakeLocation, delta: DeltaTable, stream: str,
           partitions: Iterable[int] | None = None) -> dict[int, list[str]]:
    """Data file URIs of the table's current snapshot, per transport partition of ``stream``."""
    wanted = None if partitions is None else set(partitions)
    out: dict[int, list[str]] = {}
    actions = pa.table(delta.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return out
    root = state_uri(lake)
    for path, s, p in zip(actions["path"].to_pylist(),
                          actions["partition.stream"].to_pylist(),
                          actions["partition.source_partition"].to_pylist(), strict=True):
        if s != stream or (wanted is not None and int(p) not in wanted):
            continue
        out.setdefault(int(p), []).append(path if "://" in path else f"{root}/{path}")
    return out


@dataclass
class StateAppend:
    """What one append of state rows did."""

    rows: int = 0
    skipped_partitions: int = 0


class SessionStateTable:
    """Reads and appends the state rows of one lake (one per loader)."""

    def __init__(self, lake: LakeLocation) -> None:
        self.lake = lake
        self._existed = False
        """The table was there once: its disappearing is worth a warning, not silence."""

    def append(self, stream: str, rows: pa.Table, last: Mapping[int, int]) -> StateAppend:
        """Append the state rows of a batch whose records end at ``last[p]`` per partition.

        ``rows`` has the columns of STATE_SCHEMA but ``stream`` and ``as_of``. A partition
        whose last append ended at ``last[p]`` too (this batch, written before a crash) is
        skipped. One whose last append ended later is not: the state went in before the data,
        so after a crash between the two a restarted loader may re-read those records in
        smaller batches, whose state a later crash needs (:meth:`load` reads what is as of
        the offset raw holds).
        """
        result = StateAppend()
        for _ in range(_ATTEMPTS):
            delta = open_state(self.lake)
            if delta is None and self._existed:
                log.warning("the session state table %s disappeared under this loader: it is "
                            "created again, and visitors not seen since lose their session "
                            "state at the next restart", state_uri(self.lake))
            self._existed = True
            done = ({p: delta.transaction_version(loader_app_id(stream, p)) for p in last}
                    if delta is not None else {})
            todo = {p: o for p, o in last.items() if done.get(p) != o}
            result.skipped_partitions = len(last) - len(todo)
            if not todo:
                return result
            keep = rows.filter(pc.is_in(rows["source_partition"],
                                        pa.array(list(todo), pa.int32())))
            as_of = pc.index_in(keep["source_partition"], pa.array(list(todo), pa.int32()))
            offsets = pa.array(list(todo.values()), pa.int64()).take(as_of)
            table = pa.table({
                "stream": pa.array([stream] * keep.num_rows, pa.string()),
                "source_partition": keep["source_partition"].cast(pa.int32()),
                **{c: keep[c] for c in _VALUE_COLUMNS},
                "as_of": offsets,
            }, schema=STATE_SCHEMA)
            txns = [Transaction(loader_app_id(stream, p), o) for p, o in todo.items()]
            try:
                write_deltalake(
                    state_uri(self.lake), table, mode="append", partition_by=STATE_PARTITIONS,
                    storage_options=dict(self.lake.storage_options) or None,
                    configuration=STATE_CONFIGURATION if delta is None else None,
                    commit_properties=CommitProperties(app_transactions=txns,
                                                       max_commit_retries=10))
            except CommitFailedError as exc:
                log.warning("state commit conflicted, retrying: %s", exc)
                continue
            except (DeltaError, OSError) as exc:
                raise LakeWriteError(f"cannot write the session state: {exc}",
                                     lake=self.lake.uri) from exc
            result.rows = table.num_rows
            return result
        raise LakeWriteError("gave up writing the session state after repeated conflicts",
                             lake=self.lake.uri)

    def load(self, con: duckdb.DuckDBPyConnection, stream: str,
             upto: Mapping[int, int | None]) -> pa.Table:
        """Each visitor's latest state in these partitions, as of ``upto[p]`` (the last offset
        raw holds; None: nothing, so no state). Columns: source_partition + _VALUE_COLUMNS."""
        started = time.monotonic()
        wanted = {p: o for p, o in upto.items() if o is not None}
        delta = open_state(self.lake) if wanted else None
        empty = STATE_SCHEMA.empty_table().drop_columns(["stream", "as_of"])
        if delta is None:
            return empty
        self._existed = True
        files = _files(self.lake, delta, stream, wanted)
        paths = [f for fs in files.values() for f in fs]
        if not paths:
            return empty
        self.lake.register_duckdb(con)
        bounds = pa.table({"p": pa.array(list(wanted), pa.int32()),
                           "upto": pa.array(list(wanted.values()), pa.int64())})
        con.register("state_bounds", bounds)
        try:
            table = con.sql(f"""
                SELECT s.source_partition::INTEGER AS source_partition,
                       {", ".join(f"arg_max(s.{c}, s.as_of)" if c not in ("tenant", "visitor")
                                  else f"s.{c}" for c in _VALUE_COLUMNS)}
                FROM read_parquet(?, hive_partitioning = true, hive_types_autocast = false,
                                  hive_types = {{'stream': VARCHAR,
                                                 'source_partition': INTEGER}}) s
                JOIN state_bounds b ON s.source_partition = b.p AND s.as_of <= b.upto
                GROUP BY s.source_partition, s.tenant, s.visitor""",
                params=[paths]).to_arrow_table()
        finally:
            con.unregister("state_bounds")
        log.info("loaded the session state of %d visitors of partitions %s from %d files in "
                 "%.1fs", table.num_rows, sorted(wanted), len(paths),
                 time.monotonic() - started)
        names = ["source_partition", *_VALUE_COLUMNS]
        return table.rename_columns(names).cast(empty.schema)


# -- maintenance and forget -------------------------------------------------------------------

@dataclass
class StateCompaction:
    """What one compaction pass over the state table did."""

    partitions: int = 0
    files_in: int = 0
    rows_in: int = 0
    rows_out: int = 0


@dataclass(frozen=True)
class _StateFile:
    path: str
    size: int
    stream: str
    partition: int

    @property
    def values(self) -> dict[str, str | None]:
        return {"stream": self.stream, "source_partition": str(self.partition)}


def _actions(delta: DeltaTable) -> list[_StateFile]:
    actions = pa.table(delta.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    return [_StateFile(str(p), int(s), str(st), int(pt))
            for p, s, st, pt in zip(actions["path"].to_pylist(),
                                    actions["size_bytes"].to_pylist(),
                                    actions["partition.stream"].to_pylist(),
                                    actions["partition.source_partition"].to_pylist(),
                                    strict=True)]


def _remove(f: _StateFile) -> RemoveAction:
    return RemoveAction(f.path, False, int(time.time() * 1000), f.size, f.values)


def _write_file(lake: LakeLocation, f: _StateFile, kind: str, rows: pa.Table,
                data_change: bool) -> AddAction:
    """Write ``rows`` (stored columns) as a new data file of ``f``'s partition; its add."""
    fs, base = lake.filesystem()
    relative = f"stream={f.stream}/source_partition={f.partition}/{kind}-{time.time_ns()}.parquet"
    rows = rows.cast(pa.schema([STATE_SCHEMA.field(n) for n in rows.column_names]))
    path = f"{base}/{STATE_TABLE}/{relative}"
    pq.write_table(rows, path, filesystem=fs, compression="zstd")
    return AddAction(relative, int(fs.get_file_info(path).size or 0), f.values,
                     int(time.time() * 1000), data_change,
                     orjson.dumps({"numRecords": rows.num_rows}).decode())


def _commit(delta: DeltaTable, actions: list[AddAction | RemoveAction], operation: str) -> None:
    """Commit a rewrite (compaction, forget) against ``delta``'s version, under the
    maintenance application id: CommitFailedError when another rewrite committed since."""
    done = delta.transaction_version(MAINTENANCE_APP_ID) or 0
    delta.create_write_transaction(
        actions, "append", STATE_SCHEMA, partition_by=STATE_PARTITIONS,
        commit_properties=CommitProperties(
            custom_metadata={"driftnet.operation": operation},
            app_transactions=[Transaction(MAINTENANCE_APP_ID, done + 1)]))


def compact_state(lake: LakeLocation, con: duckdb.DuckDBPyConnection,
                  held: Callable[[str, int], int | None], *, min_files: int = 8,
                  retention_days: float = 400, now_us: int | None = None) -> StateCompaction:
    """Collapse each partition's state rows up to what raw holds (``held(stream, p)``) to one
    row per visitor, dropping visitors idle for ``retention_days``; rows beyond stay as they
    are. Partitions with fewer than ``min_files`` files are left alone."""
    result = StateCompaction()
    delta = open_state(lake)
    if delta is None:
        return result
    cutoff = (now_us if now_us is not None else time.time_ns() // 1000) - round(
        retention_days * 86_400e6)
    lake.register_duckdb(con)
    root = state_uri(lake)
    fs, base = lake.filesystem()
    for stream, p in sorted({(f.stream, f.partition) for f in _actions(delta)}):
        # Read and commit against one version: a forget committed after it makes Delta
        # refuse this commit (the rows read may hold the person).
        delta.update_incremental()
        files = [f for f in _actions(delta) if (f.stream, f.partition) == (stream, p)]
        if len(files) < min_files:
            continue
        upto = held(stream, p)
        if upto is None:
            continue
        uris = [f"{root}/{f.path}" for f in files]
        rows = con.sql(
            f"SELECT {_STORED} FROM read_parquet(?, hive_partitioning = false)",
            params=[uris]).to_arrow_table()
        con.register("state_rows", rows)
        try:
            kept = con.sql(f"""
                SELECT tenant, visitor,
                       {", ".join(f"arg_max({c}, as_of) AS {c}" for c in _VALUE_COLUMNS[2:])},
                       max(as_of) AS as_of
                FROM state_rows WHERE as_of <= {int(upto)} GROUP BY tenant, visitor
                HAVING max(last_us) >= {int(cutoff)}
                UNION ALL
                SELECT tenant, visitor, {", ".join(_VALUE_COLUMNS[2:])}, as_of
                FROM state_rows WHERE as_of > {int(upto)}
                ORDER BY tenant, visitor, as_of""").to_arrow_table()
        finally:
            con.unregister("state_rows")
        actions: list[AddAction | RemoveAction] = [_remove(f) for f in files]
        if kept.num_rows:
            actions.append(_write_file(lake, files[0], "c", kept.select(
                ["tenant", "visitor", *_VALUE_COLUMNS[2:], "as_of"]), data_change=False))
        try:
            _commit(delta, actions, "compact_state")
        except CommitFailedError as exc:
            log.info("state compaction of partition %d lost a race, next pass: %s", p, exc)
            for a in actions:
                if isinstance(a, AddAction):
                    with contextlib.suppress(FileNotFoundError):
                        fs.delete_file(f"{base}/{STATE_TABLE}/{a.path}")
            continue
        result.partitions += 1
        result.files_in += len(files)
        result.rows_in += rows.num_rows
        result.rows_out += kept.num_rows
    return result


def forget_visitors(lake: LakeLocation, con: duckdb.DuckDBPyConnection, tenant: str,
                    visitors: list[str]) -> int:
    """Remove these visitors of ``tenant`` from the state table, and delete every file on
    storage that held them (the replaced ones at once, not after a vacuum). Rows removed."""
    delta = open_state(lake)
    if delta is None or not visitors:
        return 0
    lake.register_duckdb(con)
    fs, base = lake.filesystem()
    folder = f"{base}/{STATE_TABLE}"
    root = state_uri(lake)
    wanted = pa.table({"tenant": [tenant] * len(visitors), "visitor": visitors})
    con.register("forget_visitors", wanted)
    try:
        for _ in range(_ATTEMPTS):
            delta.update_incremental()
            files = _actions(delta)
            uris = {f"{root}/{f.path}": f for f in files}
            if not uris:
                break
            matched = con.sql(
                "SELECT DISTINCT filename FROM read_parquet(?, filename = true, "
                "hive_partitioning = false) s SEMI JOIN forget_visitors w "
                "USING (tenant, visitor)", params=[list(uris)]).fetchall()
            if not matched:
                break
            actions: list[AddAction | RemoveAction] = []
            removed = 0
            written: list[str] = []
            for (uri,) in matched:
                f = uris[str(uri)]
                rows = con.sql(f"SELECT {_STORED} FROM "
                               "read_parquet(?, hive_partitioning = false) s ANTI JOIN "
                               "forget_visitors w USING (tenant, visitor)",
                               params=[str(uri)]).to_arrow_table()
                total = con.sql("SELECT count(*) FROM read_parquet(?, hive_partitioning = "
                                "false)", params=[str(uri)]).fetchall()[0][0]
                removed += int(total) - rows.num_rows
                actions.append(_remove(f))
                if rows.num_rows:
                    added = _write_file(lake, f, "f", rows, data_change=True)
                    written.append(added.path)
                    actions.append(added)
            try:
                _commit(delta, actions, "forget")
            except CommitFailedError:
                for relative in written:
                    fs.delete_file(f"{folder}/{relative}")
                continue
            for a in actions:
                if isinstance(a, RemoveAction):
                    fs.delete_file(f"{folder}/{a.path}")
            return removed + _purge_stale(lake, con, delta, folder)
        else:
            # a compaction commits at most once per partition and pass: this many
            # conflicts in a row is not a race forget can wait out
            raise LakeWriteError("gave up removing session state after repeated "
                                 "conflicting commits; run forget again", lake=lake.uri)
        return _purge_stale(lake, con, delta, folder)
    finally:
        con.unregister("forget_visitors")


def _purge_stale(lake: LakeLocation, con: duckdb.DuckDBPyConnection, delta: DeltaTable,
                 folder: str) -> int:
    """Delete state files that are no part of the table and hold a visitor being forgotten:
    replaced by compaction (awaiting vacuum), and files no commit added that are older than
    UNCOMMITTED_GRACE_S (younger, a loader's append may still commit one: it is either
    committed, new state, or deleted by vacuum). Returns 0: their rows were not live."""
    fs, _ = lake.filesystem()
    delta.update_incremental()
    stale = [f"{folder}/{r}" for r in unreferenced_files(delta, fs, folder, folder)]
    scheme = "" if lake.is_local else lake.uri.split("://", 1)[0] + "://"
    for path in stale:
        try:
            hit = con.sql("SELECT count(*) FROM read_parquet(?, hive_partitioning = false) s "
                          "SEMI JOIN forget_visitors w USING (tenant, visitor)",
                          params=[scheme + path]).fetchall()[0][0]
        except duckdb.Error:
            hit = 1
        if hit:
            fs.delete_file(path)
    return 0
