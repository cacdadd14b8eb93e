"""What a request path says about its message: one table per protocol, read by both ends.

The collector routes by these tables (``ingest/collector/routes.py``) and the loader parses by
them (``ingest/loader/protocols/segment.py``): a path that names a message type (Segment's
``/v1/track``, RudderStack's ``/pixel/v1/page``, Jitsu's ``/api/s/identify``) or a batch is
listed here once, so the two cannot drift apart. The envelope keeps the path, so old
envelopes read the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

BATCH: Final = "batch"
"""The message of a path whose body is a batch (``{"batch": [...]}``)."""

SEGMENT_TYPES: Final = ("track", "page", "identify", "screen", "group", "alias")
"""The message types of the Segment spec."""


@dataclass(frozen=True)
class MessagePath:
    """What one path carries."""

    protocol: str
    """The envelope ``protocol`` the collector gives its hits."""
    message: str
    """The Segment message type its body is (it may leave out ``type``), or :data:`BATCH`."""


def _segment_paths() -> dict[str, MessagePath]:
    paths: dict[str, MessagePath] = {}
    for kind in SEGMENT_TYPES:  # the Segment HTTP API, long and short (analytics.js) names
        paths[f"/v1/{kind}"] = paths[f"/v1/{kind[0]}"] = MessagePath("segment", kind)
    for path in ("/v1/batch", "/v1/b", "/v1/import"):
        paths[path] = MessagePath("segment", BATCH)
    # rudder-sdk-js's BeaconQueue: sendBeacon of {"batch": [...], "sentAt"} as text/plain.
    paths["/beacon/v1/batch"] = MessagePath("rudderstack", BATCH)
    # RudderStack's pixel API: writeKey, type fields and properties.<k> in the query.
    for kind in ("track", "page"):
        paths[f"/pixel/v1/{kind}"] = MessagePath("rudderstack", kind)
    # Jitsu's ingest API, browser and server-to-server.
    for api in ("/api/s/", "/api/s/s2s/"):
        for kind in SEGMENT_TYPES:
            paths[f"{api}{kind}"] = MessagePath("jitsu", kind)
    return paths


SEGMENT_PATHS: Final[dict[str, MessagePath]] = _segment_paths()
"""The paths of the Segment spec and of the trackers that speak it (RudderStack, Jitsu).
dn.js (``/dn/e`` and a tenant's aliases of it) is not here: its body says what it is."""
