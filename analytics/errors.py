"""Analytics errors."""

from __future__ import annotations

from schemas.errors import DriftnetError


class AnalyticsError(DriftnetError):
    """A query, view or output could not be produced."""


class TenantScopeError(AnalyticsError):
    """A tenant-scoped session asked for something outside its tenant."""
