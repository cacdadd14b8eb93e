"""Collector settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class CollectorSettings(BaseModel):
    """How the collector listens and what it accepts."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free one).")
    max_event_bytes: int = Field(32 * 1024, ge=1, description="Largest single-event request, "
                                 "bytes: its body, or a GET's query string (413 beyond). "
                                 "Events inside a batch are held to the loader's "
                                 "max_event_bytes (quarantine reason 'size').")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="Largest total size of a "
                                  "request's headers (names and values), bytes; larger "
                                  "requests get 431.")
    header_timeout_s: float = Field(10.0, gt=0, description="Time a request's headers may take "
                                    "to arrive, and answers may wait unsent for a client "
                                    "that does not read them; slower connections are closed.")
    body_timeout_s: float = Field(10.0, gt=0, description="Time a request's whole body may take "
                                  "to arrive; slower requests get 408 and are closed.")
    max_connections: int = Field(4096, ge=16, description="Open connections (and requests) "
                                 "served at once; beyond, new requests get 503.")
    keep_alive_s: float = Field(5.0, gt=0, description="Idle time before a keep-alive "
                                "connection is closed.")
    max_request_bytes: int = Field(500 * 1024, ge=1, description="Largest request body, bytes "
                                   "(after decompression).")
    max_bundle_bytes: int = Field(900_000, ge=1024, description="Largest transport record the "
                                  "group commit builds (Kafka's default message limit is 1 MB).")
    trust_forwarded_for: bool = Field(False, description="Take the client IP from "
                                      "X-Forwarded-For (only behind a trusted proxy).")
    kept_cookies: tuple[str, ...] = Field(("sp",), description="Cookies copied into the envelope "
                                          "(others are never stored).")
    cors_max_age_s: int = Field(86_400, ge=0, description="Access-Control-Max-Age of preflights.")
    visitor_salt_secret: SecretStr | None = Field(None, description="Derive the daily salt of "
                                                  "dn.js's cookieless visitor ids from this "
                                                  "secret, so every collector replica computes "
                                                  "the same ids (default: a random salt per "
                                                  "day, in memory only).")
    server: str = Field("uvicorn", description="ASGI server: uvicorn (uvloop + httptools).")
