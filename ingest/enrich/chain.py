"""Assembling the configured chain: settings + tenants -> the steps, in their order."""

from __future__ import annotations

import logging
from pathlib import Path

from ingest.enrich import Chain, Resource, Step
from ingest.enrich.anonymize_ip import IpAnonymizer
from ingest.enrich.config import EnrichSettings
from ingest.enrich.derive_timestamps import DeriveTimestamps
from ingest.enrich.detect_bot import DetectBot
from ingest.enrich.geolocate import Geolocate
from ingest.enrich.parse_campaign import parse_campaign
from ingest.enrich.parse_referrer import ParseReferrer
from ingest.enrich.parse_user_agent import ParseUserAgent
from ingest.enrich.session_store import SessionStore
from ingest.enrich.sessionize import Sessionize
from schemas.lake import LOADER_STATE_DIR
from schemas.storage import LakeLocation
from schemas.tenants import Tenants

log = logging.getLogger(__name__)

SESSIONS_FILE = "sessions.sqlite"
"""Name of the session state store in ``<lake>/_loader/``."""


def sessions_path(settings: EnrichSettings, lake: str | Path | None) -> Path | None:
    """Where the session store lives: configured, else in the lake, else nowhere (memory).

    A lake directory that does not exist (a pipeline built in a test or a notebook) gets no
    store file: the loader commands create the lake before building their pipeline.
    """
    if settings.sessions.state is not None:
        return settings.sessions.state
    location = LakeLocation.parse(lake) if lake is not None else None
    if location is None or not location.is_local or not location.path.is_dir():
        log.info("sessionize: no lake directory, session state kept in memory only")
        return None
    return location.path / LOADER_STATE_DIR / SESSIONS_FILE


def build_chain(settings: EnrichSettings | None = None, tenants: Tenants | None = None,
                lake: str | Path | None = None) -> Chain:
    """The chain ``settings`` and the tenants' overrides describe."""
    s = settings or EnrichSettings()
    tenant_list = list(tenants or ())
    steps: list[tuple[str, Step]] = []
    resources: list[Resource] = []
    if s.campaign.enabled:
        steps.append(("parse_campaign", parse_campaign))
    if s.referrer.enabled:
        steps.append(("parse_referrer", ParseReferrer(
            s.referrer, {t.id: t.enrich.internal_hosts for t in tenant_list})))
    if s.user_agent.enabled:
        steps.append(("parse_user_agent", ParseUserAgent(s.user_agent)))
    if s.bots.enabled:
        steps.append(("detect_bot", DetectBot(s.bots)))
    if s.geo.enabled:
        geolocate = Geolocate(s.geo)
        steps.append(("geolocate", geolocate))
        resources.append(geolocate)
    steps.append(("anonymize_ip", IpAnonymizer(tenants)))
    steps.append(("derive_timestamps", DeriveTimestamps(s.timestamps)))
    if s.sessions.enabled:
        store = SessionStore(sessions_path(s, lake), s.sessions.state_retention_days)
        timeouts = {t.id: t.enrich.session_timeout_minutes for t in tenant_list
                    if t.enrich.session_timeout_minutes is not None}
        steps.append(("sessionize", Sessionize(store, s.sessions.timeout_minutes, timeouts)))
        resources.append(store)
    skip: dict[str, set[str]] = {}
    for t in tenant_list:
        for name in t.enrich.skip:
            skip.setdefault(name, set()).add(t.id)
    return Chain(steps, {name: frozenset(ids) for name, ids in skip.items()}, resources)
