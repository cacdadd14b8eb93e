"""The lake layout: where each table's files live and how they are named.

::

    <lake>/<table>/tenant=<tenant>/date=<YYYY-MM-DD>/<source>-p<partition>-<first>-<last>-<writer>.parquet

``table`` is raw, events or quarantine; ``date`` is the UTC date of ``received_at``. A file
name carries the transport partition and the offsets of the records it was built from, so a
loader can tell which files belong to a batch whose offsets were never committed (see
``<lake>/_loader/``, the per-partition batch intents written before any file of a batch).
Files whose names do not end in ``.parquet`` (temporaries) are never part of a table.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Table = Literal["raw", "events", "quarantine"]
TABLES: Final[tuple[Table, ...]] = ("raw", "events", "quarantine")

LOADER_STATE_DIR: Final = "_loader"
"""Lake sub-directory holding the loaders' batch intents (never a table)."""

_FILE_RE = re.compile(
    r"^(?P<source>[A-Za-z0-9._-]+?)-p(?P<partition>\d{4,})-(?P<first>\d{20})-(?P<last>\d{20})"
    r"-(?P<writer>[a-z0-9]+)\.parquet$"
)


@dataclass(frozen=True)
class FileName:
    """The parts of a lake file name."""

    source: str
    partition: int
    first_offset: int
    last_offset: int
    writer: str

    def __str__(self) -> str:
        return (
            f"{self.source}-p{self.partition:04d}-{self.first_offset:020d}-"
            f"{self.last_offset:020d}-{self.writer}.parquet"
        )

    @classmethod
    def parse(cls, name: str) -> FileName | None:
        """The parts of ``name``, or None when it is not a lake data file."""
        m = _FILE_RE.match(name)
        if not m:
            return None
        return cls(
            m["source"], int(m["partition"]), int(m["first"]), int(m["last"]), m["writer"]
        )


def safe_source(source: str) -> str:
    """A transport name usable in a file name (Kafka topics may hold other characters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", source)


def partition_dir(lake: Path, table: Table, tenant: str, date: dt.date) -> Path:
    """Directory of one tenant-day of one table."""
    return lake / table / f"tenant={tenant}" / f"date={date.isoformat()}"


def tenant_dir(lake: Path, table: Table, tenant: str) -> Path:
    """Directory holding every day of one tenant's table."""
    return lake / table / f"tenant={tenant}"


def tenant_glob(lake: Path, table: Table, tenant: str) -> str:
    """Glob matching every data file of one tenant's table."""
    return str(tenant_dir(lake, table, tenant) / "date=*" / "*.parquet")


def all_tenants_glob(lake: Path, table: Table) -> str:
    """Glob matching every data file of a table, all tenants (operators only)."""
    return str(lake / table / "tenant=*" / "date=*" / "*.parquet")


def tenants_in_lake(lake: Path) -> list[str]:
    """Tenant ids that have any partition in any table."""
    found: set[str] = set()
    for table in TABLES:
        root = lake / table
        if root.is_dir():
            found.update(p.name[len("tenant="):] for p in root.glob("tenant=*") if p.is_dir())
    return sorted(found)


UNATTRIBUTED_TENANT: Final = "_unattributed"
"""Pseudo-tenant of quarantined transport records that name no tenant (corrupt bundles).
Not a valid tenant id, so it can never collide with one; only operators see it."""
