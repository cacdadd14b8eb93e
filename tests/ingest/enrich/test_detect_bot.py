"""detect_bot: crawlers, automated browsers and HTTP libraries are flagged, browsers are not."""

from __future__ import annotations

import orjson
import pytest

from ingest.enrich import Chain
from ingest.enrich.config import BotSettings
from ingest.enrich.detect_bot import BotClassifier, CrawlerList, DetectBot
from ingest.enrich.parse_user_agent import ParseUserAgent
from ingest.loader.pipeline import Pipeline
from tests.ingest.enrich.helpers import CHROME_WIN, event, frame, no_lake, records, run_chain, track
from tests.ingest.enrich.test_parse_user_agent import REAL_AGENTS

BOTS = [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     "crawler:Googlebot/"),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
     "like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
     "+http://www.google.com/bot.html)", "crawler:Googlebot/"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
     "crawler:bingbot"),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
     "+https://openai.com/gptbot)", "crawler:GPTBot"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/131.0.0.0 Safari/537.36", "headless:HeadlessChrome"),
    ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
     "PhantomJS/2.1.1 Safari/538.1", "headless:PhantomJS"),
    ("curl/8.5.0", "crawler:curl"),
    ("python-requests/2.32.3", "crawler:python-requests"),
    ("Go-http-client/2.0", "crawler:Go-http-client"),
]
BROWSERS = [a[0] for a in REAL_AGENTS if a[5] not in ("bot", "other") and "Headless" not in a[0]]


def _detect(rows: list[dict[str, object]], settings: BotSettings | None = None
            ) -> list[dict[str, object]]:
    chain = Chain([("parse_user_agent", ParseUserAgent()), ("detect_bot", DetectBot(settings))])
    return run_chain(chain, rows)


@pytest.mark.parametrize(("agent", "reason"), BOTS, ids=[b[1] for b in BOTS])
def test_bots_are_flagged_with_the_reason(agent: str, reason: str) -> None:
    (row,) = _detect([event(user_agent=agent, protocol="pixel", platform="web")])
    assert (row["is_bot"], row["bot_reason"], row["ua_device"]) == (True, reason, "bot")


def test_browsers_are_not_bots_and_is_bot_is_false_not_null() -> None:
    out = _detect([event(i, user_agent=agent) for i, agent in enumerate(BROWSERS)])
    assert len(out) == len(BROWSERS) >= 10
    assert [(r["is_bot"], r["bot_reason"]) for r in out] == [(False, None)] * len(BROWSERS)
    assert all(r["ua_device"] in ("desktop", "mobile", "tablet") for r in out)


@pytest.mark.parametrize(("fields", "reason"), [
    # GA4 Measurement Protocol from a backend
    ({"protocol": "ga4", "platform": "server", "user_agent": "Python-urllib/3.11"},
     "server_side:platform=server"),
    # Snowplow's server trackers
    ({"protocol": "snowplow", "platform": "srv", "user_agent": "Go-http-client/2.0"},
     "server_side:platform=srv"),
    # a Segment server SDK
    ({"user_agent": "analytics-python/2.3", "context": '{"library": {"name": '
      '"analytics-python", "version": "2.3.2"}}'}, "server_side:library=analytics-python"),
    # the HTTP API with curl, as the README shows
    ({"user_agent": "curl/8.5.0"}, "server_side:http_api"),
])
def test_server_side_events_are_not_bots_and_say_why(fields: dict[str, object],
                                                      reason: str) -> None:
    (row,) = _detect([event(**fields)])
    assert (row["is_bot"], row["bot_reason"], row["ua_device"]) == (False, reason, "server")


def test_an_http_client_posing_as_a_browser_page_is_still_a_bot() -> None:
    """curl on the pixel, or a Segment call whose context claims a page: not server-side."""
    (pixel,) = _detect([event(protocol="pixel", platform="web", user_agent="curl/8.5.0")])
    assert (pixel["is_bot"], pixel["bot_reason"]) == (True, "crawler:curl")
    (page,) = _detect([event(user_agent="python-requests/2.32.3",
                             context='{"page": {"url": "https://shop.example/"}}')])
    assert page["is_bot"] is True


def test_missing_user_agent_is_a_bot_unless_configured() -> None:
    (row,) = _detect([event()])
    assert (row["is_bot"], row["bot_reason"]) == (True, "user_agent_missing")
    (row,) = _detect([event(user_agent="")], BotSettings(flag_missing_user_agent=False))
    assert (row["is_bot"], row["bot_reason"]) == (False, None)


def test_allow_patterns_spare_your_own_server_sdk() -> None:
    settings = BotSettings(allow_patterns=(r"^python-requests/",))
    out = _detect([event(0, user_agent="python-requests/2.32.3", protocol="pixel"),
                   event(1, user_agent="curl/8.5.0", protocol="pixel")], settings)
    assert [r["is_bot"] for r in out] == [False, True]


def test_user_agent_data_headless_brand() -> None:
    """Headless Chrome can fake its User-Agent; its userAgentData still names it."""
    uad = {"brands": [{"brand": "HeadlessChrome", "version": "131"}], "platform": "Linux"}
    (row,) = _detect([event(user_agent=CHROME_WIN,
                            context=orjson.dumps({"userAgentData": uad}).decode())])
    assert (row["is_bot"], row["bot_reason"]) == (True, "client_hints:HeadlessChrome")


def test_sec_ch_ua_headless_brand_in_the_request_headers() -> None:
    headers = {"user-agent": CHROME_WIN, "sec-ch-ua": '"HeadlessChrome";v="131"'}
    pipeline = Pipeline(no_lake())
    try:
        out = pipeline.process(records(
            frame(track(context={"userAgent": CHROME_WIN}), headers=headers),
            frame(track(context={"userAgent": CHROME_WIN}), headers={"user-agent": CHROME_WIN}),
        ), "log")
    finally:
        pipeline.close()
    rows = sorted(out.events.to_pylist(), key=lambda r: r["source_index"])
    assert [(r["is_bot"], r["bot_reason"]) for r in rows] == [
        (True, "client_hints:HeadlessChrome"), (False, None)]


def test_bots_are_kept() -> None:
    pipeline = Pipeline(no_lake())
    try:
        out = pipeline.process(records(*[
            frame(track(context={"userAgent": agent})) for agent, _ in BOTS]), "log")
    finally:
        pipeline.close()
    assert out.events.num_rows == len(BOTS)
    assert out.events["is_bot"].to_pylist() == [True] * len(BOTS)


def test_classifier_uses_ua_parser_spiders_the_list_misses() -> None:
    classifier = BotClassifier(crawlers=CrawlerList(patterns=[]))
    assert classifier.classify("Mozilla/5.0 (compatible; Googlebot/2.1; "
                               "+http://www.google.com/bot.html)") == (True, "ua_parser:spider")



def test_a_huge_user_agent_costs_only_its_first_kilobyte() -> None:
    """A 10 MB header (from before the collector's limit, or another producer) must not stall
    the loader: only the first MAX_USER_AGENT_CHARS are matched."""
    from ingest.enrich.client_hints import Hints
    from ingest.enrich.parse_user_agent import MAX_USER_AGENT_CHARS, UserAgentParser

    filler = "x" * (10 * 1024 * 1024)
    classifier = BotClassifier()
    assert classifier.classify("Mozilla/5.0 " + filler + " Googlebot/2.1") == (False, None)
    assert classifier.classify("Googlebot/2.1 " + filler)[0] is True
    parser = UserAgentParser()
    head = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36 "
    assert parser.classify(head + filler, Hints())[0] == "Chrome"
    assert len(head) < MAX_USER_AGENT_CHARS
