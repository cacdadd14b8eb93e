"""A received request, as much as routing and authentication need of it (read lazily)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

import orjson

from ingest.collector.errors import HttpError

_UNSET: Any = object()
_BASIC_CACHE: dict[str, str] = {}
_BASIC_CACHE_SIZE = 4096


def loads(body: bytes) -> Any:
    """``body`` parsed as JSON by orjson, else by the standard library, which also reads what
    browsers and SDKs send and orjson refuses: ``NaN`` and ``Infinity``, a number past a
    double's range (``1e400``), a lone UTF-16 surrogate escape (a string cut mid-emoji). The
    collector only reads the key from it; the loader judges the events (it keeps such
    numbers as NULL and quarantines what it cannot store). Raises orjson's JSONDecodeError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError
            raise exc from None


def param_name(pair: bytes) -> bytes:
    """The decoded name of one ``name=value`` pair of a query string (``%6B`` is ``k``)."""
    name = pair.split(b"=", 1)[0]
    if b"%" in name or b"+" in name:
        return unquote_to_bytes(name.replace(b"+", b" "))
    return name


def without_param(query: bytes, name: bytes) -> bytes:
    """``query`` without the parameter ``name``, however its name is percent-encoded (as
    :meth:`Hit.param` reads it)."""
    return b"&".join(p for p in query.split(b"&") if param_name(p) != name)


# A member named ``writeKey`` whose value is a string; and (looked for only in a body with a
# backslash) a member whose name holds an escape, decoded to compare. Either is matched from
# a quote: in a body with escapes, whether it opens a name (not an escaped quote inside a
# string) is checked by the backslashes before it.
_KEY_MEMBER = re.compile(rb'"writeKey"\s*:\s*("(?:[^"\\]|\\.)*")')
_ESCAPED_MEMBER = re.compile(
    rb'"([^"\\]*\\(?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*")')
_WS = b" \t\r\n"


def _members_holding(body: bytes, key: str) -> list[tuple[int, int]]:
    """Spans of the members named ``writeKey`` whose value is ``key``, at any depth, in
    order."""
    value = orjson.dumps(key)
    if b"\\" not in body:  # no escapes: every quote opens or closes a string
        return [m.span() for m in _KEY_MEMBER.finditer(body) if m.group(1) == value]
    spans = []
    for pattern, named in ((_KEY_MEMBER, True), (_ESCAPED_MEMBER, False)):
        pos = 0
        while (m := pattern.search(body, pos)) is not None:
            start = slashes = m.start()
            while slashes > 0 and body[slashes - 1] == 0x5C:  # a backslash
                slashes -= 1
            if (start - slashes) % 2:  # a quote inside a string: look on from the next byte
                pos = start + 1
                continue
            if (named or _decoded(b'"' + m.group(1) + b'"') == "writeKey") and (
                    _decoded(m.group(m.lastindex or 1)) == key):
                spans.append(m.span())
            pos = m.end()
    return sorted(spans)


def _decoded(token: bytes) -> Any:
    try:
        return orjson.loads(token)
    except orjson.JSONDecodeError:
        return None


def _cut(body: bytes, start: int, end: int) -> bytes:
    """``body`` without the member at [start, end) and one comma beside it."""
    after = end
    while after < len(body) and body[after] in _WS:
        after += 1
    if body[after:after + 1] == b",":
        after += 1
        while after < len(body) and body[after] in _WS:
            after += 1
        return body[:start] + body[after:]
    before = start
    while before > 0 and body[before - 1] in _WS:
        before -= 1
    if body[before - 1:before] == b",":
        return body[:before - 1] + body[end:]
    return body[:start] + body[end:]


def without_write_key(body: bytes, doc: dict[str, Any]) -> bytes:
    """The JSON object ``body`` (parsed: ``doc``) without its write key: every member named
    ``writeKey`` whose value is the top-level one's (analytics.js in batching mode repeats
    it in each message), cut from the text; the rest byte for byte (numbers, escapes, key
    order and duplicate names as sent).

    Only a body the text cannot be cut in (the top-level value not a string, or a member
    the cut leaves behind: names duplicated in one object with other values) is written
    again from ``doc`` by the standard library, which keeps integers of any size and
    ``NaN`` as they were read."""
    key = doc.get("writeKey")
    if isinstance(key, str) and (spans := _members_holding(body, key)):
        cut = body
        for start, end in reversed(spans):
            cut = _cut(cut, start, end)
        if body.count(b'"writeKey"') == len(spans) and b"\\" not in body:
            return cut  # no escapes: every "writeKey" in the text was a member, and is cut
        try:
            rest = loads(cut)
        except (orjson.JSONDecodeError, RecursionError):
            rest = None
        if isinstance(rest, dict) and "writeKey" not in rest:
            return cut
    rest = {k: v for k, v in doc.items() if k != "writeKey"}
    return json.dumps(rest, separators=(",", ":")).encode()


class Hit:
    """Method, path, query, the kept headers and the body bytes of one request."""

    __slots__ = ("_json", "_query", "body", "headers", "limit", "method", "path", "query_string")

    def __init__(
        self, method: str, path: str, query_string: bytes, headers: dict[str, str], body: bytes,
        limit: int = 0,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.limit = limit
        """Largest body the route accepts, bytes; a key finder that decodes the body keeps to
        it (the decoded body replaces ``body`` in the envelope)."""
        self._json: Any = _UNSET
        self._query: dict[str, list[str]] | None = None

    def json(self) -> Any:
        """The body parsed as JSON (once, :func:`loads`). HttpError 400 when it is not JSON."""
        if self._json is _UNSET:
            try:
                self._json = loads(self.body)
            except orjson.JSONDecodeError as exc:
                raise HttpError(400, f"body is not valid JSON: {exc}") from exc
        return self._json

    @property
    def parsed(self) -> bool:
        """True once :meth:`json` has parsed the body (its result is cached)."""
        return self._json is not _UNSET

    def param(self, name: str) -> str | None:
        """First value of a query-string parameter."""
        if not self.query_string:
            return None
        if self._query is None:
            self._query = parse_qs(self.query_string.decode("latin-1"), keep_blank_values=True)
        values = self._query.get(name)
        return values[0] if values else None

    def basic_auth_user(self) -> str | None:
        """The user part of ``Authorization: Basic base64(user:password)``: everything before
        the last colon. SDKs send a write key as the user with an empty password
        (``base64(key + ":")``) and do not escape a colon in the key, so a key ``a:b`` comes
        as ``a:b:``; credentials without a colon are the user alone."""
        credentials = self.basic_auth()
        if credentials is None:
            return None
        user, colon, _ = credentials.rpartition(":")
        return (user if colon else credentials) or None

    def basic_auth(self) -> str | None:
        """The decoded ``user:password`` of ``Authorization: Basic ...``, else None."""
        auth = self.headers.get("authorization")
        if not auth or auth[:6].lower() != "basic ":
            return None
        # Servers send the same few headers again and again; decode each once.
        credentials = _BASIC_CACHE.get(auth)
        if credentials is None:
            try:
                credentials = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except ValueError as exc:  # not base64 (binascii.Error), not ASCII, not UTF-8
                raise HttpError(401, "Authorization header is not valid Basic "
                                "credentials") from exc
            if len(_BASIC_CACHE) >= _BASIC_CACHE_SIZE:
                _BASIC_CACHE.clear()
            _BASIC_CACHE[auth] = credentials
        return credentials
