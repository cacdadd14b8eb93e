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
from schemas.tenants import Tenants

log = logging.getLogger(__name__)

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
        # In memory; the loader keeps it in the lake's state table (ingest/lake/state.py).
        store = SessionStore(None, s.sessions.state_retention_days)
        timeouts = {t.id: t.enrich.session_timeout_minutes for t in tenant_list
                    if t.enrich.session_timeout_minutes is not None}
        steps.append(("sessionize", Sessionize(store, s.sessions.timeout_minutes, timeouts)))
        resources.append(store)
    skip: dict[str, set[str]] = {}
    for t in tenant_list:
        for name in t.enrich.skip:
            skip.setdefault(name, set()).add(t.id)
    return Chain(steps, {name: frozenset(ids) for name, ids in skip.items()}, resources)
