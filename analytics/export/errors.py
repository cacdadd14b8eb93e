"""Export errors: a bad spec, a changed input, an output that did not reproduce."""

from __future__ import annotations

from analytics.errors import AnalyticsError


class ExportError(AnalyticsError):
    """An export could not be produced."""


class ExportSpecError(ExportError):
    """The export parameters are inconsistent (retrying will not help)."""


class InputChangedError(ExportError):
    """A lake file listed in a manifest is missing or no longer has the recorded checksum."""


class NotReproducedError(ExportError):
    """Re-running a manifest produced different bytes than it records."""
