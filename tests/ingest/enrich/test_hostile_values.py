"""The enrichment steps' Python on any value a request can carry: it answers, it never raises.

A step that raises on a value costs its event (quarantined as ``enrichment_failure``) and
makes the loader run the chain again and again to find the row (docs/enrichment.md,
"Failures"): a value that makes it raise is a bug. Header values reach these functions as
Latin-1 text, JSON values as any Unicode without lone surrogates (orjson and DuckDB refuse
those).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.enrich.anonymize_ip import IpAnonymizer
from ingest.enrich.config import GeoSettings
from ingest.enrich.detect_bot import BotClassifier
from ingest.enrich.geolocate import Geolocate
from ingest.enrich.parse_referrer import ParseReferrer
from ingest.enrich.parse_user_agent import ParseUserAgent
from schemas.tenants import Tenant, Tenants
from tests.ingest.enrich.helpers import CHROME_WIN, build_mmdb

# Text as JSON carries it, with the digits and numbers of other scripts made likely:
# str.isdigit() is true of '²' and '④', which int() refuses.
_CHARS = st.characters(exclude_categories=["Cs"])
_DIGITS = st.characters(categories=["Nd", "No"]).filter(str.isdigit)
TEXT = st.one_of(st.none(), st.text(_CHARS, max_size=40),
                 st.text(st.one_of(_DIGITS, st.sampled_from(".-_ ;\"")), max_size=12),
                 st.text(_DIGITS, min_size=1, max_size=3).map(lambda d: d + ".0.0"))
LATIN1 = st.one_of(st.none(), st.text(st.characters(max_codepoint=0xFF), max_size=40))
PLATFORM = st.one_of(TEXT, st.sampled_from(['"Windows"', '"Android"', '"macOS"', '"iOS"',
                                            '"Linux"', '"Chrome OS"']))
AGENT = st.one_of(TEXT, st.just(CHROME_WIN), st.just("Googlebot/2.1"))
IP = st.one_of(TEXT, st.ip_addresses().map(str), st.just("::ffff:1.2.3.4"),
               st.just("fe80::1%eth0"), st.just("1.2.3.4, 5.6.7.8"))
USER_AGENT_DATA = st.one_of(TEXT, st.fixed_dictionaries({
    "platform": PLATFORM.map(lambda p: p.strip('"') if p else p), "platformVersion": TEXT,
    "mobile": st.one_of(st.booleans(), TEXT),
    "brands": st.lists(st.fixed_dictionaries({"brand": TEXT, "version": TEXT}), max_size=3),
}).map(lambda d: orjson.dumps(d).decode()))

FAST = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
TENANTS = Tenants([Tenant(id="acme", write_keys=("k1",), ip_mode="truncate"),
                   Tenant(id="globex", write_keys=("k2",), ip_mode="hash", ip_salt="s"),
                   Tenant(id="initech", write_keys=("k3",), ip_mode="none")])


@pytest.fixture(scope="module")
def geolocate(tmp_path_factory: pytest.TempPathFactory) -> Geolocate:
    path: Path = tmp_path_factory.mktemp("geo") / "city.mmdb"
    build_mmdb(path)
    return Geolocate(GeoSettings(database=path))


USER_AGENTS = ParseUserAgent()


@FAST
@given(agent=AGENT, data=USER_AGENT_DATA, brands=LATIN1, mobile=LATIN1,
       platform=st.one_of(st.just('"Windows"'), PLATFORM),
       version=st.one_of(st.text(_DIGITS, min_size=1, max_size=3).map(lambda d: d + ".0.0"),
                         TEXT, LATIN1))
def test_parse_user_agent(agent: str | None, data: str | None, brands: str | None,
                          mobile: str | None, platform: str | None,
                          version: str | None) -> None:
    out = USER_AGENTS._classify(agent, data, brands, mobile, platform, version)
    assert len(out) == 5 and all(v is None or isinstance(v, str) for v in out)


REFERRERS = ParseReferrer()


@FAST
@given(tenant=st.sampled_from(["acme", "nope"]), referrer=TEXT, host=TEXT, medium=TEXT,
       source=TEXT, click=TEXT)
def test_parse_referrer(tenant: str, referrer: str | None, host: str | None,
                        medium: str | None, source: str | None, click: str | None) -> None:
    kind, _ = REFERRERS.classifier.classify(tenant, referrer, host, medium, source, click)
    assert kind is None or isinstance(kind, str)


BOTS = BotClassifier()


@FAST
@given(agent=AGENT, headless=st.booleans())
def test_detect_bot(agent: str | None, headless: bool) -> None:
    bot, _ = BOTS.classify(agent, headless)
    assert isinstance(bot, bool)


ANONYMIZER = IpAnonymizer(TENANTS)


@FAST
@given(tenant=st.sampled_from(["acme", "globex", "initech", "nope"]), ip=IP,
       forwarded=st.one_of(LATIN1, IP))
def test_anonymize_ip(tenant: str, ip: str | None, forwarded: str | None) -> None:
    ANONYMIZER.anonymize(tenant, ip)
    headers = None if forwarded is None else orjson.dumps(
        {"x-forwarded-for": forwarded, "user-agent": "x"}).decode()
    ANONYMIZER.anonymize_headers(tenant, headers)


@FAST
@given(ip=IP)
def test_geolocate(geolocate: Geolocate, ip: str | None) -> None:
    geolocate._locate(ip)
