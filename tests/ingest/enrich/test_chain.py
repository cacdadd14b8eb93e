"""The configured chain: settings from env and TOML, disabled steps, per-tenant overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.enrich import default_chain
from ingest.enrich.chain import build_chain
from ingest.enrich.config import EnrichSettings
from ingest.enrich.sessionize import Sessionize
from ingest.settings import load_settings
from schemas.errors import ConfigError
from schemas.tenants import load_tenants
from tests.ingest.enrich.helpers import CHROME_WIN, event, run_chain

ALL_STEPS = ["parse_campaign", "parse_referrer", "parse_user_agent", "detect_bot", "geolocate",
             "anonymize_ip", "derive_timestamps", "sessionize"]
TENANTS = """
[[tenant]]
id = "acme"
write_keys = ["k1"]

[[tenant]]
id = "globex"
write_keys = ["k2"]
ip_mode = "none"
[tenant.enrich]
skip = ["parse_user_agent", "sessionize"]
session_timeout_minutes = 90
internal_hosts = ["pay.example"]
"""


def test_default_chain_order() -> None:
    assert default_chain().names == ALL_STEPS


def test_settings_from_environment_and_toml(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "driftnet.toml"
    config.write_text('[enrich.sessions]\ntimeout_minutes = 45\n[enrich.bots]\nenabled = false\n')
    monkeypatch.setenv("DRIFTNET_ENRICH__GEO__DATABASE", "/data/GeoLite2-City.mmdb")
    settings = load_settings(config)
    assert settings.enrich.geo.database == Path("/data/GeoLite2-City.mmdb")
    assert settings.enrich.sessions.timeout_minutes == 45
    assert not settings.enrich.bots.enabled
    assert "detect_bot" not in default_chain(settings.enrich).names


def test_unknown_settings_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "driftnet.toml"
    config.write_text("[enrich.geo]\ndatabse = '/x.mmdb'\n")
    with pytest.raises(ConfigError, match="databse"):
        load_settings(config)


def test_steps_can_be_disabled_but_not_the_required_ones() -> None:
    settings = EnrichSettings.model_validate({
        name: {"enabled": False}
        for name in ("user_agent", "bots", "geo", "campaign", "referrer", "sessions")})
    assert default_chain(settings).names == ["anonymize_ip", "derive_timestamps"]


def test_tenant_overrides(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    tenants = load_tenants(path)
    chain = default_chain(EnrichSettings(), tenants)
    rows = [event(0, tenant="acme", user_agent=CHROME_WIN, anonymous_id="a", ip="198.51.100.7",
                  referrer="https://pay.example/done", page_url="https://shop.example/"),
            event(1, tenant="globex", user_agent=CHROME_WIN, anonymous_id="a",
                  ip="198.51.100.7", referrer="https://pay.example/done",
                  page_url="https://shop.example/")]
    acme, globex = run_chain(chain, rows)
    assert (acme["ua_browser"], acme["ip"], acme["referrer_class"]) == (
        "Chrome", "198.51.100.0", "other")
    assert acme["session_index"] == 1
    assert (globex["ua_browser"], globex["ip"], globex["referrer_class"]) == (
        None, "198.51.100.7", "internal")
    assert (globex["session_id"], globex["is_bot"]) == (None, False)
    chain.close()


def test_unknown_step_in_a_tenants_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS.replace('"sessionize"', '"sessionise"'))
    with pytest.raises(ConfigError, match="skip"):
        load_tenants(path)


def test_session_state_is_held_in_memory_not_in_a_local_file(tmp_path: Path) -> None:
    """The loader keeps it in the lake's state table; no local file holds it."""
    chain = build_chain(EnrichSettings(), None, tmp_path)
    stores = [s.store for _, s in chain.steps if isinstance(s, Sessionize)]
    assert len(stores) == 1 and stores[0].path is None
    chain.close()
    assert not list(tmp_path.rglob("*.sqlite"))
    with pytest.raises(ValidationError):  # the old local-file setting is gone
        EnrichSettings.model_validate({"sessions": {"state": str(tmp_path / "s.db")}})
