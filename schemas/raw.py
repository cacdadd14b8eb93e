"""The raw archive: every envelope exactly as the collector wrapped it.

One row per hit. The body is kept byte for byte; the header fields become columns. This is
what ``driftnet replay`` re-processes. Client IPs are anonymised per tenant before this
table is written (see docs/ARCHITECTURE.md, "What raw keeps").
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.columns import BINARY, INT32, JSON_TEXT, arrow_schema


class RawHit(BaseModel):
    """One row of the ``raw`` table."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description="Tenant the collector authenticated the hit to.")
    received_at: dt.datetime = Field(description="Collector receive time (UTC).")
    envelope_version: Annotated[int, INT32] = Field(description="Envelope format version.")
    protocol: str = Field(description="Protocol chosen by the collector's route.")
    method: str = Field(description="HTTP method.")
    path: str = Field(description="Request path.")
    query: str = Field(description="Raw query string.")
    headers: Annotated[str, JSON_TEXT] = Field(description="JSON object of the kept request "
                                               "headers.")
    ip: str | None = Field(None, description="Client IP, anonymised per the tenant's ip_mode.")
    body: Annotated[bytes, BINARY] = Field(description="Request body, byte for byte.")
    source: str = Field(description="Transport the hit came through.")
    source_partition: Annotated[int, INT32] = Field(description="Transport partition.")
    source_offset: int = Field(description="Transport offset of the record (bundle).")
    source_index: Annotated[int, INT32] = Field(description="Index of the hit in the bundle.")


RAW_SCHEMA = arrow_schema(RawHit)
"""Arrow schema of ``raw/`` Parquet files."""
