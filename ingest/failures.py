"""Data problems versus environment problems, for the loader's error policy.

A problem with the *data* of a hit or an event (malformed, unexpected, a parser or step that
trips over it) costs that hit or event: it becomes a quarantine row with the error, and the
batch goes on. A problem with the *machine* (out of memory, a disk or file error, a
reference database that cannot be read, an interrupted query) says nothing about the data:
turning the batch's events into quarantine rows would lose them to analysis silently. Such
errors abort the batch instead (:class:`ProcessingUnavailable`): nothing is written, no
offset moves, and the loader retries the batch after a pause, logging why.
"""

from __future__ import annotations

import duckdb
import maxminddb

from schemas.errors import TransientError


class ProcessingUnavailable(TransientError):
    """The batch could not be processed for a reason that is not its data; retry it."""


_ENVIRONMENT: tuple[type[BaseException], ...] = (
    MemoryError, OSError,
    duckdb.OutOfMemoryException, duckdb.IOException, duckdb.PermissionException,
    duckdb.InterruptException, duckdb.FatalException,
    maxminddb.InvalidDatabaseError, TransientError,
)


def environmental(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is about the machine, not the data."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _ENVIRONMENT):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def unavailable(exc: BaseException, where: str) -> ProcessingUnavailable:
    """The ProcessingUnavailable that aborts the batch for an environmental ``exc``."""
    error = ProcessingUnavailable(f"{where} failed for a reason outside the data; the batch "
                                  f"is retried: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
