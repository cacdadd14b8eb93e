"""Fixed answers the collector sends: what each tracker expects on success, and errors."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass

import orjson

from ingest.collector.hit import Hit

TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = (b"cache-control", b"no-cache, no-store, must-revalidate")


@dataclass(frozen=True)
class Answer:
    """Status, headers and body of a success answer."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def _sized(status: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> Answer:
    # With its length said, the body goes out as is (no chunked framing around it).
    return Answer(status, (*headers, (b"content-length", str(len(body)).encode())), body)


JSON_SUCCESS = _sized(200, ((b"content-type", b"application/json"),), b'{"success":true}')
GIF = _sized(200, ((b"content-type", b"image/gif"), NO_CACHE), TRANSPARENT_GIF)
OK_TEXT = _sized(200, ((b"content-type", b"text/plain; charset=utf-8"), NO_CACHE), b"ok")
NO_CONTENT = Answer(204, (), b"")


def error_body(status: int, reason: str) -> bytes:
    """JSON error body: ``{"error": <reason>, "status": <status>}``."""
    return orjson.dumps({"error": reason, "status": status})


NUID_HEADER = "x-driftnet-nuid"
"""Envelope header carrying the network user id the collector chose (Snowplow ``sp`` cookie)."""
_SP_COOKIE_ATTRIBUTES = "; Max-Age=31536000; SameSite=None; Secure; HttpOnly; Path=/"
# Only plain ids are echoed into Set-Cookie: a crafted nuid must not inject header text.
_NUID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def snowplow(hit: Hit, cookie: str | None) -> Answer:
    """Snowplow's answer: a GIF for GET/HEAD, ``ok`` for POST, with the ``sp`` cookie.

    The network user id is the ``nuid`` parameter, else the request's ``sp`` cookie, else a
    new uuid4; it is set for a year and recorded in the envelope (``x-driftnet-nuid``).
    ``SP-Anonymous`` requests get no cookie and no id.
    """
    answer = OK_TEXT if hit.method == "POST" else GIF
    if "sp-anonymous" in hit.headers:
        return answer
    nuid = _plain(hit.param("nuid")) or _plain(_cookie(cookie, "sp")) or str(uuid.uuid4())
    hit.headers[NUID_HEADER] = nuid
    set_cookie = (b"set-cookie", f"sp={nuid}{_SP_COOKIE_ATTRIBUTES}".encode())
    return Answer(answer.status, (*answer.headers, set_cookie), answer.body)


def _plain(value: str | None) -> str | None:
    return value if value is not None and _NUID.fullmatch(value) else None


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


POSTHOG_OK = _sized(200, ((b"content-type", b"application/json"),), b'{"status":1}')


def posthog(hit: Hit, cookie: str | None) -> Answer:
    """PostHog's answer: 204 to a ``sendBeacon`` (``beacon=1``), else 200 ``{"status":1}``."""
    return NO_CONTENT if hit.param("beacon") == "1" else POSTHOG_OK
