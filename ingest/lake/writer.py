"""The loader's append: a batch's raw, events and quarantine rows, each exactly once.

A batch covers, per transport partition ``p``, the records up to offset ``last[p]``. It is
committed table by table, quarantine, then events, then raw; each commit adds the batch's
files of that table and records ``last[p]`` as the Delta application transaction
``driftnet-loader/<source>/<p>`` (schemas.lake.loader_app_id). So the tables themselves say
what they hold:

- a table whose transaction for ``p`` is at ``v`` holds every row it should for the
  records of ``p`` up to ``v``, and none past ``v``;
- raw is committed last, so a restarted loader resumes after raw's version
  (:meth:`LakeWriter.resume_offset`); quarantine and events may be ahead of it after a
  crash between commits, and their rows up to their own version are not written again.

Before each commit the writer re-reads the table's transactions and drops the rows the
table already holds. Two loaders that both believe they own a partition (a Kafka rebalance
in flight) therefore cannot both write a batch: the second one either sees the first one's
transaction, or its commit is refused by Delta because it carries the same application id
(:class:`~ingest.lake.errors.ConcurrentCommitError`), re-reads, and drops those rows.
The transport's own committed offset only trails the tables (lag, and trimming of the
embedded log); it is never what decides.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from ingest.lake.errors import ConcurrentCommitError, LakeWriteError
from ingest.lake.files import FileWriter, WrittenFile
from ingest.lake.tables import commit, open_all, refresh
from schemas.lake import Table, loader_app_id
from schemas.storage import LakeLocation

log = logging.getLogger(__name__)

COMMIT_ORDER: tuple[Table, ...] = ("quarantine", "events", "raw")
"""Raw last: its transactions are where a restarted loader resumes."""

_MAX_ATTEMPTS = 8


def split_by_partition(table: pa.Table) -> Iterable[tuple[str, dt.date, pa.Table]]:
    """Slices of ``table`` per (tenant, UTC date of received_at), rows in their order."""
    if table.num_rows == 0:
        return
    # UTC day number by integer division: casting tz-aware timestamps converts per value.
    micros = pc.cast(table["received_at"], pa.int64())
    days = pc.cast(pc.divide(micros, 86_400_000_000), pa.int32())
    keys = pa.table({"tenant": table["tenant"], "day": days})
    if keys.group_by(["tenant", "day"], use_threads=False).aggregate([]).num_rows == 1:
        # the common case: one tenant-day, no copy at all
        yield table["tenant"][0].as_py(), _date(days[0].as_py()), table
        return
    # One stable sort, then contiguous slices: a filter per group would scan the whole
    # (wide) table once per tenant.
    order = pc.sort_indices(keys.append_column("row", pa.array(range(table.num_rows))),
                            sort_keys=[("tenant", "ascending"), ("day", "ascending"),
                                       ("row", "ascending")])
    ordered = table.take(order)
    tenants = np.asarray(keys["tenant"].take(order).to_pylist(), dtype=object)
    day_numbers = keys["day"].take(order).to_numpy()
    change = np.flatnonzero((tenants[1:] != tenants[:-1])
                            | (day_numbers[1:] != day_numbers[:-1])) + 1
    bounds = [0, *change.tolist(), table.num_rows]
    for start, end in itertools.pairwise(bounds):
        yield str(tenants[start]), _date(int(day_numbers[start])), ordered.slice(start, end - start)


def _date(day_number: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day_number)


def _unwritten(rows: pa.Table, done: Mapping[int, int | None]) -> pa.Table:
    """``rows`` without those of records the table already holds (offset <= done[p])."""
    held = {p: v for p, v in done.items() if v is not None}
    if not held or rows.num_rows == 0:
        return rows
    partitions, offsets = rows["source_partition"], rows["source_offset"]
    mask = None
    for p, v in held.items():
        cond = pc.and_(pc.equal(partitions, p), pc.less_equal(offsets, v))
        mask = cond if mask is None else pc.or_(mask, cond)
    return rows.filter(pc.invert(mask))


@dataclass
class AppendResult:
    """What one append wrote."""

    files: dict[Table, list[WrittenFile]] = field(default_factory=dict)
    rows: dict[Table, int] = field(default_factory=dict)
    skipped: dict[Table, int] = field(default_factory=dict)
    """Rows not written because the table already held them (a re-read batch)."""
    versions: dict[Table, int] = field(default_factory=dict)
    commit_seconds: dict[Table, float] = field(default_factory=dict)
    """Time each table's Delta commit took (writing the files not included)."""
    written: dict[Table, pa.Table] = field(default_factory=dict)
    """The rows each table's commit added (what the batch held minus ``skipped``)."""

    @property
    def file_count(self) -> int:
        """Data files added by the batch."""
        return sum(len(f) for f in self.files.values())


def _held(delta: DeltaTable, source: str, partitions: Iterable[int]) -> dict[int, int | None]:
    """The last offset each partition's rows in ``delta`` end at (its app transactions). A
    log the loader cannot read (a file of it deleted or damaged under it) is a LakeWriteError,
    which the loader retries, not a crash."""
    try:
        return {p: delta.transaction_version(loader_app_id(source, p)) for p in partitions}
    except (DeltaError, OSError) as exc:
        raise LakeWriteError(f"cannot read the log of {delta.table_uri}: {exc}") from exc


class LakeWriter:
    """Appends batches to the lake for one loader (see the module docstring)."""

    def __init__(self, lake: LakeLocation, zstd_level: int = 3, *,
                 log_retention_days: int = 7, deleted_file_retention_hours: int = 168,
                 write_threads: int = 2) -> None:
        self.lake = lake
        self.write_threads = write_threads
        self._pool: ThreadPoolExecutor | None = None
        self.files = FileWriter(lake, zstd_level, row_group_rows=1024 * 1024, flush_files=True)
        self.tables: dict[Table, DeltaTable] = open_all(
            lake, log_retention_days=log_retention_days,
            deleted_file_retention_hours=deleted_file_retention_hours)
        self.files_written = 0

    def held(self, table: Table, source: str, partition: int) -> int | None:
        """The last offset of ``partition`` whose rows ``table`` holds (None: none yet)."""
        return _held(refresh(self.tables[table]), source, [partition])[partition]

    def resume_offset(self, source: str, partition: int) -> int | None:
        """Where a loader resumes ``partition``: after the last record raw holds."""
        held = self.held("raw", source, partition)
        return None if held is None else held + 1

    def append(self, source: str, tables: Mapping[Table, pa.Table],
               last_offsets: Mapping[int, int]) -> AppendResult:
        """Write a batch whose records end at ``last_offsets[p]`` per partition."""
        result = AppendResult()
        for name in COMMIT_ORDER:
            self._append_table(name, source, tables[name], last_offsets, result)
        return result

    def _append_table(self, name: Table, source: str, rows: pa.Table,
                      last_offsets: Mapping[int, int], result: AppendResult) -> None:
        for _ in range(_MAX_ATTEMPTS):
            delta = refresh(self.tables[name])
            done = _held(delta, source, last_offsets)
            todo = {loader_app_id(source, p): last for p, last in last_offsets.items()
                    if (held := done[p]) is None or held < last}
            if not todo:
                result.skipped[name] = result.skipped.get(name, 0) + rows.num_rows
                log.info("%s already held the batch of partitions %s (%d rows not written "
                         "again)", name, sorted(last_offsets), rows.num_rows)
                return
            fresh = _unwritten(rows, done)
            skipped = rows.num_rows - fresh.num_rows
            if skipped:
                log.info("%s already held %d rows of the batch; writing the other %d", name,
                         skipped, fresh.num_rows)
            if fresh.num_rows == 0 and name != "raw":
                # Nothing to add: the table's older transaction still tells the truth.
                result.skipped[name] = result.skipped.get(name, 0) + skipped
                return
            written = self._write_files(name, fresh)
            started = time.perf_counter()
            try:
                version = commit(delta, name, [w.add_action() for w in written],
                                 operation="append", app_transactions=todo)
            except ConcurrentCommitError as exc:
                log.warning("another loader committed partitions %s of %s first; re-reading "
                            "(%s)", sorted(last_offsets), name, exc)
                for w in written:
                    self.files.delete(name, w.path)
                continue
            except BaseException:
                for w in written:
                    self.files.delete(name, w.path)
                raise
            result.commit_seconds[name] = time.perf_counter() - started
            self.files_written += len(written)
            result.files[name] = written
            result.rows[name] = fresh.num_rows
            result.written[name] = fresh
            result.skipped[name] = result.skipped.get(name, 0) + skipped
            result.versions[name] = version
            return
        raise LakeWriteError("gave up after repeated concurrent commits", table=name,
                             partitions=sorted(last_offsets))

    def _write_files(self, name: Table, rows: pa.Table) -> list[WrittenFile]:
        """One file per tenant-day; several at once when there are many (Parquet encoding and
        fsync release the GIL: a flush of 500 tenants writes 1,500 small files)."""
        parts = list(split_by_partition(rows))
        try:
            if len(parts) < 16 or self.write_threads < 2:
                written = [self.files.write(name, t, d, part) for t, d, part in parts]
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.write_threads,
                                                    thread_name_prefix="lake-write")
                written = list(self._pool.map(
                    lambda p: self.files.write(name, p[0], p[1], p[2]), parts))
            self.files.sync()
        except OSError as exc:
            raise LakeWriteError(f"cannot write the lake: {exc}", lake=self.lake.uri) from exc
        return written


def append_rows(lake: LakeLocation, table: Table, rows: pa.Table, *, zstd_level: int = 3,
                delta: DeltaTable | None = None) -> list[WrittenFile]:
    """Append ``rows`` (row schema) to ``table`` in one commit, one file per tenant-day,
    without transport transactions: for tools, benches and tests that build lakes."""
    from ingest.lake.tables import open_for_write

    writer = FileWriter(lake, zstd_level, row_group_rows=1024 * 1024)
    target = delta or open_for_write(lake, table)
    written = [writer.write(table, tenant, date, part)
               for tenant, date, part in split_by_partition(rows)]
    writer.sync()
    if written:
        commit(refresh(target), table, [w.add_action() for w in written], operation="append")
    return written
