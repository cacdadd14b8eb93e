"""The lake writer: a batch's tables -> tenant/date-partitioned zstd Parquet, atomically.

Protocol for one batch of one transport partition (offsets first..last):

1. write the *intent* ``<lake>/_loader/<source>/p<partition>.json``: the batch's offsets and
   the files it is about to write (temp + fsync + rename);
2. write each file to a dot-temp name, fsync, ``os.replace`` to its final name, fsync the
   directory;
3. the caller commits offset ``last + 1`` to the transport.

On (re)assignment of a partition, :meth:`LakeWriter.recover` compares the intent with the
committed offset: an intent whose ``first`` is at or past the commit belongs to a batch that
never committed, so its files are deleted before the batch is read again. Hence every
acknowledged event is in the lake exactly once, whatever moment a crash hits.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.loader.errors import LakeWriteError
from schemas.lake import LOADER_STATE_DIR, FileName, Table, partition_dir, safe_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """A batch about to be written."""

    first: int
    last: int
    writer: str
    files: tuple[str, ...]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def temp_name(path: Path) -> Path:
    """The temporary name a data file is written under before its rename."""
    return path.with_name(f".{path.name}.tmp")


def split_by_partition(table: pa.Table) -> Iterable[tuple[str, dt.date, pa.Table]]:
    """Slices of ``table`` per (tenant, UTC date of received_at)."""
    if table.num_rows == 0:
        return
    # UTC day number by integer division: casting tz-aware timestamps converts per value.
    micros = pc.cast(table["received_at"], pa.int64())
    dates = pc.cast(pc.cast(pc.divide(micros, 86_400_000_000), pa.int32()), pa.date32())
    keys = pa.table({"tenant": table["tenant"], "date": dates})
    groups = keys.group_by(["tenant", "date"], use_threads=False).aggregate([])
    if groups.num_rows == 1:  # the common case: one tenant-day, no filtering at all
        yield groups["tenant"][0].as_py(), groups["date"][0].as_py(), table
        return
    for tenant, date in zip(groups["tenant"].to_pylist(), groups["date"].to_pylist(),
                            strict=True):
        mask = pc.and_(pc.equal(keys["tenant"], tenant), pc.equal(keys["date"], date))
        yield tenant, date, table.filter(mask)


class LakeWriter:
    """Writes batches to one lake; one writer token per process names its files."""

    def __init__(self, lake: Path, zstd_level: int = 3, writer_token: str | None = None) -> None:
        self.lake = Path(lake)
        self.zstd_level = zstd_level
        self.token = writer_token or secrets.token_hex(4)
        self.files_written = 0

    def _intent_path(self, source: str, partition: int) -> Path:
        return self.lake / LOADER_STATE_DIR / safe_source(source) / f"p{partition:04d}.json"

    def read_intent(self, source: str, partition: int) -> Intent | None:
        """The last intent written for a transport partition, if any."""
        path = self._intent_path(source, partition)
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return Intent(doc["first"], doc["last"], doc["writer"], tuple(doc["files"]))

    def uncommitted_files(self, source: str, partition: int, committed: int | None) -> list[Path]:
        """Existing files of ``partition``'s last batch when its offsets were never committed."""
        intent = self.read_intent(source, partition)
        if intent is None or (committed is not None and intent.first < committed):
            return []
        return [self.lake / rel for rel in intent.files if (self.lake / rel).exists()]

    def recover(self, source: str, partition: int, committed: int | None) -> list[Path]:
        """Delete the files of an uncommitted batch of ``partition``; return what was deleted."""
        intent = self.read_intent(source, partition)
        if intent is None:
            return []
        deleted: list[Path] = []
        if committed is None or intent.first >= committed:
            for rel in intent.files:
                path = self.lake / rel
                for candidate in (path, temp_name(path)):
                    try:
                        candidate.unlink()
                        deleted.append(candidate)
                    except FileNotFoundError:
                        pass
            if deleted:
                log.warning("removed %d files of uncommitted batch %s p%d offsets %d..%d",
                            len(deleted), source, partition, intent.first, intent.last)
        self._intent_path(source, partition).unlink(missing_ok=True)
        return deleted

    def write_batch(self, source: str, partition: int, first: int, last: int,
                    tables: dict[Table, pa.Table]) -> list[Path]:
        """Write a batch's tables as described in the module docstring; return the files."""
        name = str(FileName(safe_source(source), partition, first, last, self.token))
        plan: list[tuple[Path, pa.Table]] = []
        for table_name, table in tables.items():
            for tenant, date, part in split_by_partition(table):
                plan.append((partition_dir(self.lake, table_name, tenant, date) / name, part))
        intent = {
            "first": first, "last": last, "writer": self.token,
            "files": [str(path.relative_to(self.lake)) for path, _ in plan],
        }
        try:
            save_atomic(self._intent_path(source, partition), orjson.dumps(intent))
            dirs: set[Path] = set()
            for path, part in plan:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_name(path)
                pq.write_table(part, str(tmp), compression="zstd",
                               compression_level=self.zstd_level)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
                # the file's directory, and new tenant=/date= directories, must survive a crash
                dirs.update((path.parent, path.parent.parent, path.parent.parent.parent))
            for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                _fsync_dir(d)
        except OSError as exc:
            raise LakeWriteError(f"cannot write the lake: {exc}", lake=str(self.lake)) from exc
        self.files_written += len(plan)
        return [path for path, _ in plan]

    def committed(self, source: str, partition: int) -> None:
        """The batch's offsets are committed: its intent is no longer needed.

        Removing it tells compaction the files are final; a crash before this call only
        leaves an intent that ``recover`` recognises as committed and removes.
        """
        intent = self.read_intent(source, partition)
        if intent is not None and intent.writer == self.token:
            self._intent_path(source, partition).unlink(missing_ok=True)

    def abandon(self, source: str, partition: int, files: list[Path]) -> None:
        """Delete files of a batch whose commit failed, and our intent if it is still ours."""
        for path in files:
            path.unlink(missing_ok=True)
        intent = self.read_intent(source, partition)
        if intent is not None and intent.writer == self.token:
            self._intent_path(source, partition).unlink(missing_ok=True)
