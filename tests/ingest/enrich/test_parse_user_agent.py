"""parse_user_agent on real User-Agent strings of current browsers and bots, and client hints."""

from __future__ import annotations

import orjson
import pytest

from ingest.enrich import client_hints as ch
from ingest.enrich.config import UserAgentSettings
from ingest.enrich.parse_user_agent import ParseUserAgent, UserAgentParser
from ingest.loader.pipeline import Pipeline
from tests.ingest.enrich.helpers import CHROME_WIN, event, frame, no_lake, records, run_step, track

REAL_AGENTS = [
    # (user agent, browser, browser version, OS, OS version, device)
    (CHROME_WIN, "Chrome", "131.0.0.0", "Windows", "10", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", "Safari", "18.1", "Mac OS X", "10.15.7", "desktop"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "Mobile Safari", "18.1", "iOS", "18.1",
     "mobile"),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", "Mobile Safari", "17.6", "iOS", "17.6", "tablet"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
     "Firefox", "133.0", "Windows", "10", "desktop"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
     "Firefox", "133.0", "Linux", None, "desktop"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge", "131.0.0.0", "Windows", "10",
     "desktop"),
    ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "Samsung Internet", "26.0",
     "Android", "14", "mobile"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005; wv) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36",
     "Chrome Mobile WebView", "131.0.6778.39", "Android", "14", "mobile"),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome Mobile", "131.0.0.0", "Android", "10",
     "mobile"),
    ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", "Chrome", "131.0.0.0", "Android", "13", "tablet"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", "Chrome", "131.0.0.0", "Chrome OS", "14541.0.0",
     "desktop"),
    ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36", "Samsung Internet", "4.0",
     "Tizen", "6.0", "other"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     "Googlebot", "2.1", None, None, "bot"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
     "bingbot", "2.0", None, None, "bot"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/131.0.0.0 Safari/537.36", "HeadlessChrome", "131.0.0", "Linux", None,
     "desktop"),
    ("curl/8.5.0", "curl", "8.5.0", None, None, "other"),
    ("python-requests/2.32.3", "Python Requests", "2.32", None, None, "other"),
]
COLUMNS = ("ua_browser", "ua_browser_version", "ua_os", "ua_os_version", "ua_device")


def test_accelerated_parser_is_installed() -> None:
    """ua-parser[regex] brings the Rust resolver; the pure-Python one is ~35x slower."""
    assert UserAgentParser().accelerated


@pytest.mark.parametrize(("agent", "browser", "version", "os_", "os_version", "device"),
                         REAL_AGENTS, ids=[a[1] + "-" + str(a[5]) for a in REAL_AGENTS])
def test_real_user_agents(agent: str, browser: str, version: str, os_: str | None,
                          os_version: str | None, device: str) -> None:
    (row,) = run_step("parse_user_agent", ParseUserAgent(), [event(user_agent=agent)])
    assert tuple(row[c] for c in COLUMNS) == (browser, version, os_, os_version, device)


def test_a_batch_of_many_agents_is_parsed_once_per_distinct_agent() -> None:
    step = ParseUserAgent()
    rows = [event(i, user_agent=REAL_AGENTS[i % 3][0]) for i in range(5000)]
    out = run_step("parse_user_agent", step, rows)
    assert [r["ua_browser"] for r in out[:3]] == ["Chrome", "Safari", "Mobile Safari"]
    assert step.function.cache_info().misses == 3


def test_missing_agent_leaves_columns_null_and_sent_values_win() -> None:
    rows = [event(0), event(1, user_agent=CHROME_WIN, ua_browser="Sent by tracker")]
    out = run_step("parse_user_agent", ParseUserAgent(), rows)
    assert [out[0][c] for c in COLUMNS] == [None] * 5
    assert out[1]["ua_browser"] == "Sent by tracker" and out[1]["ua_os"] == "Windows"


def test_header_client_hints_give_real_windows_and_android_versions() -> None:
    """Chromium freezes 'Windows NT 10.0' and 'Android 10; K'; Sec-CH-UA tells the truth."""
    android = REAL_AGENTS[9][0]
    hints_win = {"user-agent": CHROME_WIN,
                 "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
                 "sec-ch-ua-mobile": "?0", "sec-ch-ua-platform": '"Windows"',
                 "sec-ch-ua-platform-version": '"15.0.0"'}
    hints_android = {"user-agent": android, "sec-ch-ua": '"Chromium";v="131"',
                     "sec-ch-ua-mobile": "?1", "sec-ch-ua-platform": '"Android"',
                     "sec-ch-ua-platform-version": '"14.0.0"'}
    pipeline = Pipeline(no_lake())
    try:
        out = pipeline.process(records(
            frame(track(context={"userAgent": CHROME_WIN}), headers=hints_win),
            frame(track(context={"userAgent": android}), headers=hints_android),
            # Hints of a hit whose UA differs from the event's describe another client.
            frame(track(context={"userAgent": CHROME_WIN}), headers=hints_android),
        ), "log")
    finally:
        pipeline.close()
    rows = sorted(out.events.to_pylist(), key=lambda r: r["source_index"])
    assert [(r["ua_os"], r["ua_os_version"]) for r in rows] == [
        ("Windows", "11"), ("Android", "14"), ("Windows", "10")]
    assert rows[1]["ua_device"] == "mobile"


def test_segment_user_agent_data_names_the_brand() -> None:
    """Brave sends Chrome's exact User-Agent; navigator.userAgentData names it."""
    uad = {"brands": [{"brand": "Brave", "version": "131"}, {"brand": "Chromium",
                                                            "version": "131"},
                      {"brand": "Not_A Brand", "version": "24"}],
           "mobile": False, "platform": "Windows"}
    rows = [event(0, user_agent=CHROME_WIN, context=orjson.dumps({"userAgentData": uad}).decode())]
    (row,) = run_step("parse_user_agent", ParseUserAgent(), rows)
    assert (row["ua_browser"], row["ua_browser_version"], row["ua_os"]) == ("Brave", "131",
                                                                           "Windows")


def test_client_hints_can_be_switched_off() -> None:
    uad = {"brands": [{"brand": "Brave", "version": "131"}], "platform": "Windows"}
    rows = [event(0, user_agent=CHROME_WIN, context=orjson.dumps({"userAgentData": uad}).decode())]
    step = ParseUserAgent(UserAgentSettings(client_hints=False))
    (row,) = run_step("parse_user_agent", step, rows)
    assert row["ua_browser"] == "Chrome"


@pytest.mark.parametrize(("header", "brands"), [
    ('"Chromium";v="131", "Not_A Brand";v="24", "Google Chrome";v="131"',
     (("Chromium", "131"), ("Google Chrome", "131"))),
    ('"Not/A)Brand";v="8", "Microsoft Edge";v="126"', (("Microsoft Edge", "126"),)),
    ('"HeadlessChrome";v="131"', (("HeadlessChrome", "131"),)),
    ("", ()), ("garbage", ()),
])
def test_sec_ch_ua_brand_lists(header: str, brands: tuple[tuple[str, str], ...]) -> None:
    assert ch.parse_brands(header) == brands


def test_windows_platform_versions() -> None:
    def version(v: str) -> str | None:
        return ch.os_version(ch.Hints(platform="Windows", platform_version=v))

    assert (version("15.0.0"), version("13.0.0"), version("10.0.0"), version("0.3.0")) == (
        "11", "11", "10", None)
    # Digits int() cannot read (str.isdigit() is true of them) are not a version.
    assert (version("\u00b2.0.0"), version("\u2463"), version("\u0663.0")) == (None, None, None)


def test_a_version_hint_of_other_digits_leaves_the_event_enriched() -> None:
    """A header (Latin-1: '\xb2' is '²') or userAgentData naming a version in digits other
    than ASCII ones was an enrichment_failure: the event went to quarantine."""
    header = {"user-agent": CHROME_WIN, "sec-ch-ua-platform": '"Windows"',
              "sec-ch-ua-platform-version": '"\u00b2.0.0"'}
    uad = {"platform": "Windows", "platformVersion": "\u2463.0.0"}
    pipeline = Pipeline(no_lake())
    try:
        out = pipeline.process(records(
            frame(track(context={"userAgent": CHROME_WIN}), headers=header),
            frame(track(context={"userAgent": CHROME_WIN, "userAgentData": uad})),
        ), "log")
    finally:
        pipeline.close()
    assert out.quarantine.num_rows == 0
    rows = out.events.to_pylist()
    assert [(r["ua_os"], r["ua_os_version"]) for r in rows] == [("Windows", "10")] * 2
