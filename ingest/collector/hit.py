"""A received request, as much as routing and authentication need of it (read lazily)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

import orjson

from ingest.collector.errors import HttpError

_UNSET: Any = object()
_BASIC_CACHE: dict[str, str] = {}
_BASIC_CACHE_SIZE = 4096


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
        """The body parsed as JSON (once). HttpError 400 when it is not JSON."""
        if self._json is _UNSET:
            try:
                self._json = orjson.loads(self.body)
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
        """The user part of ``Authorization: Basic base64(user:password)``."""
        credentials = self.basic_auth()
        return credentials.partition(":")[0] or None if credentials is not None else None

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
