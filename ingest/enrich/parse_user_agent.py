"""parse_user_agent: browser, version, OS, OS version and device class of each event.

The parser is ua-parser (uap-core's maintained regexes) with its Rust accelerator
(``ua-parser[regex]``, ~20 us a string instead of ~700 us in pure Python), run once per
distinct (user agent, client hints) of a batch and cached. Client hints, when sent, correct
what Chromium's frozen User-Agent hides: the real Windows / Android version, the browser
brand (Brave, Edge, ...) and whether the device is a phone.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import ua_parser

from ingest.enrich import Batch
from ingest.enrich import client_hints as ch
from ingest.enrich.config import UserAgentSettings
from ingest.enrich.lookup import DistinctFunction

DeviceClass = str
"""desktop, mobile, tablet, bot or other (the ``ua_device`` column)."""

_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS",
                        "HarmonyOS", "Symbian OS", "Firefox OS", "Sailfish", "Tizen"})
_DESKTOP_OS = frozenset({"Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian",
                         "FreeBSD", "OpenBSD", "NetBSD", "Solaris", "Red Hat", "SUSE",
                         "Mint", "Arch Linux", "Gentoo", "CentOS", "Kubuntu", "Mandriva"})
_TV_OR_CONSOLE = ("smart-tv", "smarttv", "googletv", "appletv", "hbbtv", "web0s", "crkey",
                  "playstation", "xbox", "nintendo", " tv safari", "bravia", "roku")
_FIELDS = ("browser", "browser_version", "os", "os_version", "device")


def _version(*parts: str | None) -> str | None:
    present = [p for p in parts if p]
    return ".".join(present) if present else None


MAX_USER_AGENT_CHARS = 1024
"""User-Agent strings are parsed and matched on their first 1,024 characters (real ones are
under 500): the regex work per event stays bounded whatever a client sends, and a record
with a huge header cannot stall the loader (the column keeps what was received)."""


def device_class(user_agent: str, result: ua_parser.Result) -> DeviceClass:
    """desktop, mobile, tablet, bot or other, from the parsed device and OS."""
    device, os_ = result.device, result.os
    family = device.family if device else None
    brand = (device.brand or "") if device else ""
    os_family = os_.family if os_ else None
    low = user_agent.lower()
    if family == "Spider":
        return "bot"
    if any(token in low for token in _TV_OR_CONSOLE):
        return "other"
    if (family == "iPad" or "tablet" in brand.lower() or "tablet" in low
            or "kindle" in low or " silk/" in low):
        return "tablet"
    if os_family == "Android":
        # Android phones say "Mobile"; Android tablets do not (Chrome's own convention).
        return "mobile" if "mobile" in low else "tablet"
    if os_family in _MOBILE_OS or family == "iPhone" or " mobile" in low:
        return "mobile"
    if os_family in _DESKTOP_OS or (os_family or "").startswith("Windows"):
        return "desktop"
    return "other"


class UserAgentParser:
    """ua-parser with the fastest resolver installed, without its own cache (we cache)."""

    def __init__(self) -> None:
        self._parser = ua_parser.Parser(
            ua_parser.BestAvailableResolver(ua_parser.load_builtins()))

    @property
    def accelerated(self) -> bool:
        """True when the native (Rust or re2) resolver is in use."""
        return ua_parser.BestAvailableResolver is not ua_parser.BasicResolver

    def parse(self, user_agent: str) -> ua_parser.Result:
        """ua-parser's result for a User-Agent string (its first MAX_USER_AGENT_CHARS)."""
        return self._parser.parse(user_agent[:MAX_USER_AGENT_CHARS])

    def classify(self, user_agent: str | None, hints: ch.Hints
                 ) -> tuple[str | None, str | None, str | None, str | None, str | None]:
        """(browser, browser version, OS, OS version, device class)."""
        browser = version = os_family = os_ver = device = None
        if user_agent:
            user_agent = user_agent[:MAX_USER_AGENT_CHARS]
            result = self._parser.parse(user_agent)
            ua, os_ = result.user_agent, result.os
            if ua is not None and ua.family != "Other":
                browser = ua.family
                version = _version(ua.major, ua.minor, ua.patch, ua.patch_minor)
            if os_ is not None and os_.family != "Other":
                os_family = os_.family
                os_ver = _version(os_.major, os_.minor, os_.patch)
            device = device_class(user_agent, result)
        if hints.empty:
            return browser, version, os_family, os_ver, device
        brand = hints.brand
        if brand is not None:
            family = ch.BRAND_FAMILIES.get(brand[0], brand[0])
            # Keep ua-parser's finer name (Chrome Mobile, Chrome Mobile WebView) when the
            # brand only says "Chrome"; take the brand when the string hides it (Brave).
            if browser is None or (family not in ("Chrome", "Chromium")
                                   and browser in ("Chrome", "Chrome Mobile", "Chromium")):
                browser, version = family, brand[1] or version
        hinted_os = ch.os_family(hints)
        if hinted_os is not None and (os_family is None or os_family == hinted_os):
            os_family = hinted_os
            os_ver = ch.os_version(hints) or os_ver
        if hints.mobile and device in (None, "desktop", "other"):
            device = "mobile"
        elif device is None and hints.mobile is False and hinted_os is not None:
            device = "desktop" if hinted_os in _DESKTOP_OS or hinted_os == "Windows" else None
        return browser, version, os_family, os_ver, device


class ParseUserAgent:
    """The parse_user_agent step."""

    def __init__(self, settings: UserAgentSettings | None = None) -> None:
        self.settings = settings or UserAgentSettings()
        self.parser = UserAgentParser()
        self.function = DistinctFunction("enrich_ua", self._classify, ["VARCHAR"] * 6,
                                         dict.fromkeys(_FIELDS, pa.string()),
                                         self.settings.cache_size)

    def _classify(self, user_agent: str | None, uad: str | None, sec_ch_ua: str | None,
                  mobile: str | None, platform: str | None,
                  platform_version: str | None) -> tuple[Any, ...]:
        hints = ch.merge(ch.from_headers(sec_ch_ua, mobile, platform, platform_version),
                         ch.from_user_agent_data(uad))
        return self.parser.classify(user_agent, hints)

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Fill ua_browser, ua_browser_version, ua_os, ua_os_version and ua_device."""
        source = f"{relation} e"
        args = ["e.user_agent"] + ["NULL::VARCHAR"] * 5
        if self.settings.client_hints:
            args[1] = ("CASE WHEN contains(e.context, 'userAgentData') THEN "
                       "json_extract(e.context, '$.userAgentData')::VARCHAR END")
            if header_hints(con, batch):
                source += f" LEFT JOIN enrich_ua_hints h ON {HINTS_JOIN}"
                args[2:] = ["h.chua", "h.chm", "h.chp", "h.chpv"]
        parsed = self.function.call(con, *args)
        exprs = ", ".join(f"coalesce(e.ua_{name}, ({parsed}).{name}) AS ua_{name}"
                          for name in _FIELDS)
        con.execute(f"CREATE OR REPLACE TEMP VIEW enrich_user_agent AS "
                    f"SELECT e.* REPLACE ({exprs}) FROM {source}")
        return "enrich_user_agent"


HINTS_JOIN = ("h.source_partition = e.source_partition AND h.source_offset = e.source_offset "
              "AND h.source_index = e.source_index AND h.hua = e.user_agent")
"""Joins a hit's client-hint headers to its events (when the event's UA is the header's)."""


def header_hints(con: duckdb.DuckDBPyConnection, batch: Batch) -> bool:
    """Materialise ``enrich_ua_hints`` (hits that sent Sec-CH-UA); False when none did."""
    if batch.hits is None:
        return False
    if "ua_hints" in batch.memo:
        return bool(batch.memo["ua_hints"])
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE enrich_ua_hints AS
        SELECT source_partition, source_offset, source_index,
               headers->>'user-agent' AS hua, headers->>'sec-ch-ua' AS chua,
               headers->>'sec-ch-ua-mobile' AS chm, headers->>'sec-ch-ua-platform' AS chp,
               headers->>'sec-ch-ua-platform-version' AS chpv
        FROM {batch.hits} WHERE contains(headers, '"sec-ch-ua')""")
    found = bool(con.sql("SELECT count(*) FROM enrich_ua_hints").fetchall()[0][0])
    batch.memo["ua_hints"] = found
    return found
