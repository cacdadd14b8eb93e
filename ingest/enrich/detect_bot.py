"""detect_bot: is_bot and bot_reason. Bots are flagged, never dropped.

Signals, first match wins (the reason names it):

- ``user_agent_missing``: no User-Agent at all (every browser sends one);
- ``headless:<token>``: an automated browser says so in its User-Agent (HeadlessChrome,
  PhantomJS, Puppeteer, Playwright, Selenium, ...);
- ``client_hints:HeadlessChrome``: ... or in its Sec-CH-UA brands / userAgentData;
- ``crawler:<matched text>``: the maintained crawler list of the ``crawler-user-agents``
  project (1,500+ patterns: search engines, SEO tools, monitors, HTTP libraries, AI crawlers);
- ``ua_parser:spider``: ua-parser's own spider detection (device family ``Spider``).

Each distinct (user agent, hint) of a batch is classified once and cached (a vectorised
function, see lookup.py). Flagged rows also get ``ua_device = 'bot'``.
"""

from __future__ import annotations

import importlib.resources
import re
from functools import cached_property

import duckdb
import orjson
import pyarrow as pa

from ingest.enrich import Batch, per_distinct
from ingest.enrich.config import BotSettings
from ingest.enrich.lookup import DistinctFunction
from ingest.enrich.parse_user_agent import (
    HINTS_JOIN,
    MAX_USER_AGENT_CHARS,
    UserAgentParser,
    header_hints,
)

HEADLESS_TOKENS = ("HeadlessChrome", "PhantomJS", "SlimerJS", "Puppeteer", "Playwright",
                   "Selenium", "WebDriver", "Cypress", "HtmlUnit", "jsdom", "Chrome-Lighthouse")
"""User-Agent tokens of automated browsers (matched case-insensitively)."""

_CHUNK = 40  # patterns per compiled regex: one giant alternation is 3x slower in `re`


class CrawlerList:
    """The crawler-user-agents patterns, compiled in chunks."""

    def __init__(self, patterns: list[str] | None = None) -> None:
        if patterns is None:
            # The package's own module compiles its patterns at import; we only need the list.
            data = orjson.loads(importlib.resources.files("crawleruseragents")
                                .joinpath("crawler-user-agents.json").read_bytes())
            patterns = [entry["pattern"] for entry in data]
        self.patterns = patterns

    @cached_property
    def _chunks(self) -> list[re.Pattern[str]]:
        return [re.compile("|".join(f"(?:{p})" for p in self.patterns[i:i + _CHUNK]))
                for i in range(0, len(self.patterns), _CHUNK)]

    def match(self, user_agent: str) -> str | None:
        """The text of ``user_agent`` a crawler pattern matched, else None."""
        for chunk in self._chunks:
            m = chunk.search(user_agent)
            if m:
                return m.group(0) or chunk.pattern[:40]
        return None


class BotClassifier:
    """Per (user agent, headless hint): (is_bot, reason)."""

    def __init__(self, settings: BotSettings | None = None,
                 crawlers: CrawlerList | None = None) -> None:
        self.settings = settings or BotSettings()
        self.crawlers = crawlers or CrawlerList()
        self.parser = UserAgentParser()
        self._headless = re.compile("|".join(HEADLESS_TOKENS), re.IGNORECASE)
        self._allow = [re.compile(p) for p in self.settings.allow_patterns]

    def classify(self, user_agent: str | None, headless_hint: bool = False
                 ) -> tuple[bool, str | None]:
        """(is_bot, bot_reason)."""
        if user_agent:
            user_agent = user_agent[:MAX_USER_AGENT_CHARS]
        if not user_agent or not user_agent.strip():
            if self.settings.flag_missing_user_agent:
                return True, "user_agent_missing"
            return False, None
        if any(p.search(user_agent) for p in self._allow):
            return False, None
        m = self._headless.search(user_agent)
        if m:
            return True, f"headless:{m.group(0)}"
        if headless_hint:
            return True, "client_hints:HeadlessChrome"
        matched = self.crawlers.match(user_agent)
        if matched:
            return True, f"crawler:{matched}"
        device = self.parser.parse(user_agent).device
        if device is not None and device.family == "Spider":
            return True, "ua_parser:spider"
        return False, None


_HTTP_CLIENTS = ("curl|wget|python-requests|python-urllib|python-httpx|aiohttp|go-http-client"
                 "|okhttp|node-fetch|axios|undici|java|apache-httpclient|ruby|php|guzzlehttp"
                 "|libwww-perl|dart|postmanruntime|insomnia")
_SERVER_LIBRARIES = ("analytics-(python|node|go|java|ruby|php|dotnet|\\.net|rust|kotlin)"
                     "|@segment/analytics-node|rudder-sdk-(python|node|go|java|ruby|php|dotnet)"
                     "|@rudderstack/rudder-sdk-node|jitsu-(node|python)|@jitsu/js-node"
                     "|posthog-(python|node|go|java|ruby|php)")
_SERVER_LIBRARY = (
    "CASE WHEN regexp_matches(coalesce(json_extract_string(context, '$.library.name'), ''), "
    f"'^({_SERVER_LIBRARIES})$', 'i') "
    "THEN 'server_side:library=' || json_extract_string(context, '$.library.name') END")
_NO_PAGE = ("json_extract(context, '$.page') IS NULL "
            "AND json_extract(context, '$.userAgent') IS NULL")
_SERVER_SIDE = (
    "CASE WHEN e.platform IN ('server', 'srv') THEN 'server_side:platform=' || e.platform "
    "WHEN c.library IS NOT NULL THEN c.library "
    "WHEN e.protocol IN ('segment', 'rudderstack', 'jitsu') "
    # No row in the contexts' table: a NULL context, which names no page and no browser.
    "AND coalesce(c.no_page, TRUE) "
    f"AND regexp_matches(coalesce(e.user_agent, ''), '^({_HTTP_CLIENTS})\\b', 'i') "
    "THEN 'server_side:http_api' END")
"""Why an event was sent server to server, else NULL: a server platform (GA4 Measurement
Protocol without an app, Snowplow ``p=srv``, PostHog server libraries), a server SDK named
in ``context.library``, or a Segment-family HTTP API call from an HTTP client (curl,
python-requests, ...) whose context describes no page and no browser. What it reads of the
context comes from ``enrich_bot_contexts`` (``c``), one row per distinct context."""


class DetectBot:
    """The detect_bot step."""

    def __init__(self, settings: BotSettings | None = None) -> None:
        self.settings = settings or BotSettings()
        self.classifier = BotClassifier(self.settings)
        self.function = DistinctFunction("enrich_bot", self.classifier.classify,
                                         ["VARCHAR", "BOOLEAN"],
                                         {"bot": pa.bool_(), "reason": pa.string()},
                                         self.settings.cache_size)

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Fill is_bot (never NULL) and bot_reason; set ua_device to 'bot' when flagged."""
        source = f"{relation} e"
        hint = ("coalesce(contains(e.context, 'userAgentData') AND "
                "contains(e.context, 'HeadlessChrome'), FALSE)")
        if header_hints(con, batch):
            source += f" LEFT JOIN enrich_ua_hints h ON {HINTS_JOIN}"
            hint = f"(coalesce(contains(h.chua, 'HeadlessChrome'), FALSE) OR {hint})"
        found = self.function.call(con, "e.user_agent", hint)
        # The context JSON is parsed once per distinct context (events of one page share
        # theirs), not once per event.
        per_distinct(con, relation, "enrich_bot_contexts", "context",
                     {"library": _SERVER_LIBRARY, "no_page": _NO_PAGE})
        source += " LEFT JOIN enrich_bot_contexts c ON c.context = e.context"
        server = _SERVER_SIDE
        # A server-to-server hit (GA4 Measurement Protocol, a server SDK, the HTTP API called
        # with curl) is not a visit by a bot: is_bot stays false and bot_reason says why.
        is_bot = ("(b._server IS NULL AND (coalesce(b.is_bot, FALSE) "
                  "OR coalesce(b._bot.bot, FALSE)))")
        # The function's result is a column of an inner projection: referenced three times
        # below, it is still computed once per chunk.
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW enrich_bot AS
            SELECT b.* EXCLUDE (_bot, _server) REPLACE (
                {is_bot} AS is_bot,
                coalesce(b._server, b.bot_reason, b._bot.reason) AS bot_reason,
                CASE WHEN b._server IS NOT NULL THEN 'server' WHEN {is_bot} THEN 'bot'
                     ELSE b.ua_device END AS ua_device)
            FROM (SELECT e.*, {found} AS _bot, {server} AS _server FROM {source}) b""")
        return "enrich_bot"
