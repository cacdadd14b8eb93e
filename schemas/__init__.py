"""Contracts shared by ingest and analytics: tenants, envelope, canonical event, lake layout.

Nothing in here does I/O on a hot path; these modules define shapes and names that every
other package agrees on.
"""

from schemas.version import PIPELINE_VERSION

__all__ = ["PIPELINE_VERSION"]
