"""Where each protocol carries the key that names the tenant.

The collector authenticates, it does not interpret: these functions read only the key.
"""

from __future__ import annotations

from ingest.collector.errors import HttpError
from ingest.collector.hit import Hit


def segment_key(hit: Hit) -> str:
    """Segment / RudderStack / analytics.js: Basic auth user, else ``writeKey`` in body or query."""
    key = hit.basic_auth_user() or hit.param("writeKey")
    if key:
        return key
    if not hit.body.strip():
        raise HttpError(400, "empty body and no write key in Authorization")
    doc = hit.json()
    if not isinstance(doc, dict):
        raise HttpError(400, "body must be a JSON object carrying writeKey, "
                        "or send Authorization: Basic base64(<write key>:)")
    key = doc.get("writeKey")
    if not isinstance(key, str) or not key:
        raise HttpError(401, "no write key: send Authorization: Basic base64(<write key>:) "
                        "or a writeKey field in the body")
    return key


def pixel_key(hit: Hit) -> str:
    """driftnet's GET pixel: ``k=<write key>`` in the query string."""
    key = hit.param("k")
    if not key:
        raise HttpError(401, "no write key: add k=<write key> to the pixel URL")
    return key
