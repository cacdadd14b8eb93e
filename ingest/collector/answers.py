"""Fixed answers the collector sends: what each tracker expects on success, and errors."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = (b"cache-control", b"no-cache, no-store, must-revalidate")


@dataclass(frozen=True)
class Answer:
    """Status, headers and body of a success answer."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


JSON_SUCCESS = Answer(200, ((b"content-type", b"application/json"),), b'{"success":true}')
GIF = Answer(200, ((b"content-type", b"image/gif"), NO_CACHE), TRANSPARENT_GIF)
OK_TEXT = Answer(200, ((b"content-type", b"text/plain; charset=utf-8"), NO_CACHE), b"ok")
NO_CONTENT = Answer(204, (), b"")


def error_body(status: int, reason: str) -> bytes:
    """JSON error body: ``{"error": <reason>, "status": <status>}``."""
    return orjson.dumps({"error": reason, "status": status})
