"""Undo the transport encodings PostHog wraps its bodies in, so the envelope holds its JSON.

PostHog's capture API takes its payload as the body or as a ``data=`` parameter (of the
query string or of a form body), and that payload may be gzip (``compression=gzip`` /
``gzip-js``, or just its magic bytes), LZ-string base64 (``compression=lz64``) or base64
(``compression=base64``, or bare base64 from old posthog-js). The project token that names
the tenant is inside, so the collector must undo these to authenticate the hit. It does so
bounded (past the request limit: 413) and keeps the JSON it found as the envelope's body,
with ``x-driftnet-decoded`` listing the steps it undid, outermost first (``form,base64``);
the other fields of a form body go to ``x-driftnet-form``. Every step is lossless, so the
raw archive still holds exactly what was sent. This is transport decoding, not parsing: the
events themselves are left to the loader.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from urllib.parse import parse_qsl, urlencode

from ingest.collector.errors import HttpError
from ingest.collector.hit import Hit
from ingest.collector.lzstring import LzStringError, decompress_from_base64

DECODED_HEADER = "x-driftnet-decoded"
"""Envelope header: the encodings the collector undid, outermost first (comma-separated)."""
FORM_HEADER = "x-driftnet-form"
"""Envelope header: the fields of a form body other than ``data``, URL-encoded."""

_GZIP_MAGIC = b"\x1f\x8b"
_BASE64 = re.compile(rb"[A-Za-z0-9+/_\- ]+={0,2}")


def unwrap_posthog(hit: Hit, limit: int) -> bytes:
    """The JSON text of a PostHog hit, its envelope headers noted; HttpError when there is none.

    Raises 400 with the reason when the payload cannot be decoded, 413 when it decodes past
    ``limit`` bytes.
    """
    steps: list[str] = []
    hint = (hit.param("compression") or "").lower()
    payload = hit.body
    data = hit.param("data")
    if data and not payload.strip():
        # Legacy GET: the payload is the query's data=; parse_qs made '+' a space.
        payload = data.encode("utf-8")
        steps.append("query")
    elif _is_form(hit, payload):
        payload, hint = _form_data(hit, payload, hint)
        steps.append("form")
    if not payload.strip():
        raise HttpError(400, "empty body and no data= parameter")
    if payload.startswith(_GZIP_MAGIC) or hint in ("gzip", "gzip-js"):
        payload = _gunzip(payload, limit)
        steps.append("gzip")
    elif hint in ("lz64", "lz-string"):
        payload = _lz64(payload, limit)
        steps.append("lz64")
    elif hint == "base64" or _bare_base64(payload):
        payload = _base64(payload)
        steps.append("base64")
        if payload.startswith(_GZIP_MAGIC):
            payload = _gunzip(payload, limit)
            steps.append("gzip")
    if len(payload) > limit:
        raise HttpError(413, f"decoded body exceeds the {limit}-byte limit")
    if steps:
        hit.headers[DECODED_HEADER] = ",".join(steps)
    return payload


def _is_form(hit: Hit, payload: bytes) -> bool:
    content_type = hit.headers.get("content-type", "").lower()
    return payload.startswith(b"data=") or "application/x-www-form-urlencoded" in content_type


def _form_data(hit: Hit, payload: bytes, hint: str) -> tuple[bytes, str]:
    try:
        fields = parse_qsl(payload.decode("utf-8"), keep_blank_values=True,
                           max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, f"form body is not valid: {exc}") from exc
    data = next((v for k, v in fields if k == "data"), None)
    if data is None:
        raise HttpError(400, "form body has no data field")
    for key, value in fields:
        if key == "compression" and not hint:
            hint = value.lower()
    others = [(k, v) for k, v in fields if k != "data"]
    if others:
        hit.headers[FORM_HEADER] = urlencode(others)
    return data.encode("utf-8"), hint


def _bare_base64(payload: bytes) -> bool:
    """Old posthog-js sent base64 without saying so: decode only what decodes to JSON."""
    if payload.lstrip()[:1] in (b"{", b"[") or not _BASE64.fullmatch(payload.strip()):
        return False
    try:
        head = _base64(payload[:64].strip()[:60])
    except HttpError:
        return False
    return head.lstrip()[:1] in (b"{", b"[") or head.startswith(_GZIP_MAGIC)


def _gunzip(payload: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, f"body is not valid gzip: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise HttpError(413, f"decompressed body exceeds the {limit}-byte limit")
    if not inflater.eof:
        raise HttpError(400, "body is not valid gzip: truncated stream")
    return out


def _lz64(payload: bytes, limit: int) -> bytes:
    try:
        text = decompress_from_base64(payload.decode("ascii"), limit)
    except UnicodeDecodeError as exc:
        raise HttpError(400, "body is not lz64: not ASCII") from exc
    except LzStringError as exc:
        raise HttpError(413 if exc.too_large else 400, f"body is not valid lz64: "
                        f"{exc.reason}") from exc
    return text.encode("utf-8")


def _base64(payload: bytes) -> bytes:
    text = payload.strip().replace(b" ", b"+")
    text += b"=" * (-len(text) % 4)
    try:
        if b"-" in text or b"_" in text:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HttpError(400, f"body is not valid base64: {exc}") from exc
