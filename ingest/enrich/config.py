"""Enrichment settings: one section per step (``[enrich.<step>]`` in the config file).

Environment keys follow the usual pattern, e.g. ``DRIFTNET_ENRICH__GEO__DATABASE`` or
``DRIFTNET_ENRICH__SESSIONS__TIMEOUT_MINUTES``. Per-tenant overrides (skipping a step,
a session timeout, internal hosts) live in the tenants file's ``[tenant.enrich]`` table,
and the IP mode is the tenant's ``ip_mode``: see schemas.tenants.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserAgentSettings(_Section):
    """parse_user_agent: browser, OS and device class from the User-Agent and client hints."""

    enabled: bool = Field(True, description="Fill the ua_* columns.")
    client_hints: bool = Field(True, description="Use Sec-CH-UA headers and Segment's "
                               "context.userAgentData when sent (they are more precise than the "
                               "frozen User-Agent of Chromium browsers).")
    cache_size: int = Field(20_000, ge=0, description="Parsed user agents kept in memory.")


class BotSettings(_Section):
    """detect_bot: is_bot and bot_reason. Bots are flagged, never dropped."""

    enabled: bool = Field(True, description="Fill is_bot and bot_reason.")
    flag_missing_user_agent: bool = Field(True, description="Count an event without any "
                                          "User-Agent as a bot (browsers always send one).")
    allow_patterns: tuple[str, ...] = Field((), description="Regular expressions of User-Agents "
                                            "never flagged, e.g. your own server SDK "
                                            "('^acme-backend/').")
    cache_size: int = Field(20_000, ge=0, description="Classified user agents kept in memory.")


class GeoSettings(_Section):
    """geolocate: country, region and city from a MaxMind-format (.mmdb) database."""

    enabled: bool = Field(True, description="Fill geo_country, geo_region and geo_city.")
    database: Path | None = Field(None, description="Path of a GeoLite2-City / GeoIP2 / DB-IP "
                                  "lite .mmdb file; unset or missing leaves the geo columns "
                                  "NULL. Reloaded when the file changes.")
    cache_size: int = Field(100_000, ge=0, description="Looked-up IPs kept in memory.")


class CampaignSettings(_Section):
    """parse_campaign: page host and path, UTM parameters and ad click ids from the page URL."""

    enabled: bool = Field(True, description="Fill page_host, page_path, utm_* and click_id.")


class ReferrerSettings(_Section):
    """parse_referrer: referrer class and source."""

    enabled: bool = Field(True, description="Fill referrer_class and referrer_source.")
    internal_hosts: tuple[str, ...] = Field((), description="Hosts whose referrers count as "
                                            "internal for every tenant, besides the page's own "
                                            "host (e.g. a payment provider returning shoppers).")
    cache_size: int = Field(50_000, ge=0, description="Classified referrers kept in memory.")


class TimestampSettings(_Section):
    """derive_timestamps: derived_ts (always on) and ts_flag."""

    max_future_minutes: float = Field(10, ge=0, le=1440, description="client_ts further than "
                                      "this ahead of received_at is flagged 'future'; at most "
                                      "a day (analytics prunes a day's margin by it).")
    max_past_days: float = Field(30, ge=0, description="client_ts further than this behind "
                                 "received_at is flagged 'past'.")
    max_queue_days: float = Field(7, gt=0, description="Longest plausible wait on the device "
                                  "between client_ts and sent_ts (offline queues); beyond it "
                                  "the pair is not trusted for clock-skew correction.")


class SessionSettings(_Section):
    """sessionize: server-side session ids for events the client sent without one."""

    enabled: bool = Field(True, description="Assign session_id and session_index.")
    timeout_minutes: float = Field(30, gt=0, le=525_600, description="Inactivity that ends a "
                                   "session (at most a year).")
    state_retention_days: float = Field(400, gt=0, description="Visitors unseen this long are "
                                        "forgotten (their next visit counts as session 1).")


class EnrichSettings(_Section):
    """The loader's enrichment chain. Every step works set-at-a-time on a batch."""

    user_agent: UserAgentSettings = Field(default_factory=UserAgentSettings)
    bots: BotSettings = Field(default_factory=BotSettings)
    geo: GeoSettings = Field(default_factory=GeoSettings)
    campaign: CampaignSettings = Field(default_factory=CampaignSettings)
    referrer: ReferrerSettings = Field(default_factory=ReferrerSettings)
    timestamps: TimestampSettings = Field(default_factory=TimestampSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
