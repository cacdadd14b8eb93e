"""The quarantine record: a hit or event the loader could not turn into a canonical event.

Nothing sent is lost: each failure keeps its typed reason, a human-readable detail, and the
payload (the whole body for hit-level failures, the item's JSON for one bad event of a
batch), so a fixed parser can recover it with ``driftnet replay``.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.columns import BINARY, INT32, arrow_schema


class ReasonCode(StrEnum):
    """Why something was quarantined. Stable strings: dashboards and alerts use them."""

    PAYLOAD_FORMAT = "payload_format"
    """The bytes are not what the protocol carries: not UTF-8, not JSON, bad encoding."""
    PROTOCOL_VIOLATION = "protocol_violation"
    """Well-formed, but breaks the protocol: unknown type, missing identity, unknown route."""
    SCHEMA_VIOLATION = "schema_violation"
    """A field has the wrong type or an impossible value."""
    SIZE = "size"
    """An event, a batch or a decompressed body exceeds its limit."""
    ENRICHMENT_FAILURE = "enrichment_failure"
    """An enrichment step failed on this event."""
    TRANSPORT = "transport"
    """The transport record itself is corrupt (not a driftnet bundle)."""


class QuarantineRecord(BaseModel):
    """One row of the ``quarantine`` table."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description="Tenant the hit was authenticated to.")
    received_at: dt.datetime = Field(description="When the collector received the hit (UTC).")
    reason: str = Field(description="Reason code: " + ", ".join(c.value for c in ReasonCode) + ".")
    detail: str = Field(description="What exactly was wrong, with the offending field or value.")
    protocol: str = Field(description="Protocol of the hit.")
    event_id: str | None = Field(None, description="Event id, when one could be read.")
    payload: Annotated[bytes, BINARY] = Field(description="The failed payload, as received: the "
                                              "hit body, or the one batch item that failed.")
    source: str = Field(description="Transport the hit came through.")
    source_partition: Annotated[int, INT32] = Field(description="Transport partition.")
    source_offset: int = Field(description="Transport offset of the record.")
    source_index: Annotated[int, INT32] = Field(description="Index of the hit in the bundle.")
    item_index: Annotated[int | None, INT32] = Field(None, description="Index of the item inside "
                                                     "the hit, null for hit-level failures.")
    pipeline_version: str = Field(description="Pipeline version that quarantined it.")


QUARANTINE_SCHEMA = arrow_schema(QuarantineRecord)
"""Arrow schema of ``quarantine/`` Parquet files."""
