"""The envelope: one HTTP hit, wrapped unparsed, as the collector hands it to the transport.

A transport record carries a *bundle*: the collector group-commits concurrent requests, and
one record holding many envelopes costs the transport (SQLite insert, Kafka message) once
instead of once per request. Layout, all integers big-endian::

    bundle   := MAGIC frame+
    frame    := u32 header_length, header (JSON object), u32 body_length, body (bytes as received)

The header is versioned (``v``); the raw archive stores every header field as a column and
the body bytes untouched, so history can be re-processed with newer code.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.errors import DriftnetError

ENVELOPE_VERSION: Final = 1
MAGIC: Final = b"DNB\x01"
_U32 = struct.Struct(">I")


class EnvelopeHeader(BaseModel):
    """Everything about a hit except its body. This is the versioned contract of the header."""

    model_config = ConfigDict(extra="allow", frozen=True)

    v: int = Field(ENVELOPE_VERSION, description="Envelope format version.")
    tenant: str = Field(description="Tenant the collector authenticated the hit to.")
    received_at: int = Field(
        description="Collector receive time, microseconds since the epoch (UTC)."
    )
    protocol: str = Field(
        description="Wire protocol chosen by the route, e.g. 'segment', 'pixel'."
    )
    method: str = Field(description="HTTP method.")
    path: str = Field(description="Request path.")
    query: str = Field("", description="Raw query string, undecoded.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="The request headers that matter (lower-case names)."
    )
    ip: str | None = Field(None, description="Client IP as seen by the collector.")


class EnvelopeError(DriftnetError):
    """A transport record is not a well-formed bundle (corruption or a foreign producer)."""


def encode_frame(header: dict[str, object], body: bytes) -> bytes:
    """One envelope as a frame; ``header`` follows :class:`EnvelopeHeader`."""
    h = orjson.dumps(header)
    return b"".join((_U32.pack(len(h)), h, _U32.pack(len(body)), body))


def encode_bundle(frames: list[bytes]) -> bytes:
    """Join frames into one transport record value."""
    return MAGIC + b"".join(frames)


def iter_frames(bundle: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(header_json, body)`` for each envelope of a bundle.

    Raises EnvelopeError on a truncated or foreign record; the caller quarantines it whole.
    """
    if not bundle.startswith(MAGIC):
        raise EnvelopeError("record is not a driftnet bundle", prefix=bundle[:8])
    pos, end = len(MAGIC), len(bundle)
    unpack = _U32.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise EnvelopeError("truncated bundle header length", at=pos)
        (hlen,) = unpack(bundle, pos)
        pos += 4
        header = bundle[pos : pos + hlen]
        pos += hlen
        if pos + 4 > end:
            raise EnvelopeError("truncated bundle body length", at=pos)
        (blen,) = unpack(bundle, pos)
        pos += 4
        body = bundle[pos : pos + blen]
        pos += blen
        if len(header) != hlen or len(body) != blen:
            raise EnvelopeError("truncated bundle frame", at=pos)
        yield header, body
