"""Errors of writing and maintaining the lake."""

from __future__ import annotations

from schemas.errors import LakeError, TransientError


class LakeWriteError(TransientError):
    """Writing the lake failed (disk full, permissions, storage unreachable); retry, never
    commit transport offsets past it."""


class ConcurrentCommitError(LakeError):
    """Another writer committed with the same application id first; re-read and retry."""

    transient = True


class LakeSchemaError(LakeError):
    """A table's column has another type than this version of driftnet writes (the lake was
    made by an older version): retrying cannot help, the operator re-creates or migrates the
    table."""


class ForgetError(LakeError):
    """A forget request could not be carried out; nothing was removed."""
