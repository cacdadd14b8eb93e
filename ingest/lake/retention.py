"""Retention: each tenant's data older than its ``retention_days`` leaves every table.

A tenant-day is expired once its UTC date is more than ``retention_days`` before today.
Its files are removed from the table in one commit (``dataChange = true``); vacuum deletes
them from storage after ``vacuum_retention_hours`` (until then, older table versions and
pinned exports can still read them). Tenants the tenants file does not list are left
alone: without their setting there is no retention to apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from schemas.delta import DataFile
from schemas.tenants import Tenants


def horizon(retention_days: int, today: dt.date) -> dt.date:
    """The oldest UTC date a tenant with ``retention_days`` keeps."""
    return today - dt.timedelta(days=retention_days)


def expired(files: Iterable[DataFile], tenants: Tenants | None, today: dt.date
            ) -> list[DataFile]:
    """Files of tenant-days older than their tenant's retention."""
    if tenants is None:
        return []
    out = []
    for f in files:
        tenant = tenants.by_id(f.tenant)
        if tenant is not None and f.date < horizon(tenant.retention_days, today):
            out.append(f)
    return out
