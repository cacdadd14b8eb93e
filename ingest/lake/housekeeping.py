"""Housekeeping of a Delta table: checkpoints, log cleanup and vacuum.

- A **checkpoint** every ``checkpoint_interval`` commits: readers load the table from it
  instead of replaying every commit since the table began.
- **Log cleanup** after a checkpoint removes log entries older than ``log_retention_days``.
- **Vacuum** deletes files that no current version needs: files removed (superseded by
  compaction, expired) more than ``vacuum_retention_hours`` ago, and files no commit ever
  added (a loader that crashed between writing and committing) once they are that old.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from ingest.lake.config import MaintainSettings
from ingest.lake.tables import NO_HOOKS

log = logging.getLogger(__name__)


@dataclass
class Housekeeping:
    """Schedules housekeeping of one table (state kept across maintenance passes)."""

    settings: MaintainSettings
    checkpointed: int = -1
    last_vacuum: float = 0.0

    def checkpoint_due(self, delta: DeltaTable) -> bool:
        """True when the table moved ``checkpoint_interval`` commits past the last one."""
        return delta.version() - self.checkpointed >= self.settings.checkpoint_interval

    def checkpoint(self, delta: DeltaTable) -> bool:
        """Checkpoint and clean up the log if due; True when it did."""
        if not self.checkpoint_due(delta):
            return False
        version = delta.version()
        delta.create_checkpoint()
        try:
            delta.cleanup_metadata()
        except DeltaError as exc:  # cleanup is an optimisation: never fail the pass on it
            log.warning("log cleanup of %s failed: %s", delta.table_uri, exc)
        self.checkpointed = version
        return True

    def vacuum(self, delta: DeltaTable, now: float, force: bool = False) -> list[str]:
        """Vacuum if ``vacuum_interval_s`` passed (or ``force``); the files deleted."""
        if not force and now - self.last_vacuum < self.settings.vacuum_interval_s:
            return []
        self.last_vacuum = now
        deleted = delta.vacuum(retention_hours=self.settings.vacuum_retention_hours,
                               dry_run=False, enforce_retention_duration=False, full=True,
                               post_commithook_properties=NO_HOOKS)
        return list(deleted)
