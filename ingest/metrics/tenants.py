"""Bounded tenant labels: the busiest tenants by name, every other one as ``other``.

A label value a counter once had must stay (a series that vanished and came back would
read as a reset), so a tenant admitted to a label of its own keeps it for the life of the
process. Admission is by volume where the process can see it: the tenants of one loader
batch (or of the hits a collector accepted between two scrapes) are admitted busiest first,
until ``limit`` tenants hold a label. 500 tenants thus cost ``limit + 1`` series per metric,
not 500.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

OTHER = "other"
"""Label value of the tenants without a label of their own."""


class TenantLabels:
    """Maps a tenant id to its label value; thread-safe, shared by a process's metrics."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def label(self, tenant: str) -> str:
        """The tenant's label value, admitting it while labels are left."""
        if tenant in self._admitted:
            return tenant
        with self._lock:
            if len(self._admitted) < self.limit:
                self._admitted.add(tenant)
                return tenant
        return OTHER

    def labels(self, volumes: Mapping[str, int]) -> dict[str, str]:
        """Label values of several tenants, the bigger ``volumes`` admitted first."""
        ordered = sorted(volumes, key=lambda t: (-volumes[t], t))
        return {t: self.label(t) for t in ordered}

    @property
    def admitted(self) -> frozenset[str]:
        """Tenants holding a label of their own."""
        with self._lock:
            return frozenset(self._admitted)
