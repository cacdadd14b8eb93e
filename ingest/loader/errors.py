"""Loader errors."""

from __future__ import annotations

from schemas.errors import DriftnetError, TransientError


class AdapterError(DriftnetError):
    """A protocol adapter failed on a batch; the loader retries hit by hit and quarantines."""


class LakeWriteError(TransientError):
    """Writing the lake failed (disk full, permissions); the batch is retried, not committed."""
