"""Serving dn.js, driftnet's own tracker (built from snippet/ into static/, docs/snippet.md).

Three ways to fetch the same bytes:

- ``GET /dn.js``: the current build, cached for an hour (``max-age=3600``), so a page that
  pastes the plain URL picks up a new release within the hour;
- ``GET /dn/<version>.js``: the versioned URL, cached for a year (``immutable``); ``version``
  is the first 12 hex digits of the build's SHA-256, so a new build is a new URL; pair it
  with the ``integrity`` attribute (Subresource Integrity) published in docs/snippet.md;
- a tenant's ``script_path`` alias (``[tenant.snippet]`` in tenants.toml), on the shop's own
  domain behind its proxy: cached like ``/dn.js`` (its URL does not change with the build),
  and no third-party URL for blockers' lists to match.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ingest.collector.answers import Answer

STATIC = Path(__file__).resolve().parent / "static"
INGEST_PATH = "/dn/e"
"""Where dn.js sends its batches unless a tenant aliases it."""


@dataclass(frozen=True)
class Build:
    """The built dn.js and what identifies it."""

    code: bytes
    version: str
    """First 12 hex digits of the SHA-256 of ``code``."""
    integrity: str
    """Subresource Integrity value: ``sha384-<base64>``."""

    @property
    def versioned_path(self) -> str:
        """The long-cached URL path of this build."""
        return f"/dn/{self.version}.js"


@cache
def build() -> Build:
    """The dn.js build shipped with this collector."""
    code = (STATIC / "dn.js").read_bytes()
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(code).digest()).decode()
    return Build(code, hashlib.sha256(code).hexdigest()[:12], integrity)


def _answer(code: bytes, version: str, cache_control: bytes) -> Answer:
    return Answer(200, (
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"cache-control", cache_control),
        (b"etag", f'"{version}"'.encode()),
        # Loaded cross-origin by shops' pages; the integrity check needs CORS on the script.
        (b"access-control-allow-origin", b"*"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-length", str(len(code)).encode()),
    ), code)


def script_answers(aliases: tuple[str, ...] = ()) -> dict[str, Answer]:
    """Path -> answer for every path dn.js is served at (``aliases``: tenants' script paths)."""
    b = build()
    hourly = _answer(b.code, b.version, b"public, max-age=3600")
    return {
        "/dn.js": hourly,
        b.versioned_path: _answer(b.code, b.version, b"public, max-age=31536000, immutable"),
        **dict.fromkeys(aliases, hourly),
    }
