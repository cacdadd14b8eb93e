"""Errors the collector turns into HTTP answers."""

from __future__ import annotations

from schemas.errors import DriftnetError


class HttpError(DriftnetError):
    """A request the collector refuses; becomes ``status`` with ``reason`` in the answer."""

    def __init__(self, status: int, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(reason, status=status)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.transient = status in (429, 503)
