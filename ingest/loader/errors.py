"""Loader errors."""

from __future__ import annotations

from schemas.errors import DriftnetError


class AdapterError(DriftnetError):
    """A protocol adapter failed on a batch; the loader retries hit by hit and quarantines."""
