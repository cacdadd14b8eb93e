"""`driftnet demo --shop`: the demo shop page, clicked in headless Chromium, lands its dn.js
events (through the tenant's first-party aliases) in the demo's lake."""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import Browser

from driftnet.demo_shop import run_shop
from tests.support import free_port


def test_the_demo_shop_page_sends_through_first_party_aliases(
        browser: Browser, capsys: pytest.CaptureFixture[str]) -> None:
    ready = threading.Event()
    stop = threading.Event()
    urls: list[str] = []
    result: list[int] = []

    def announced(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(target=lambda: result.append(
        run_shop(free_port(), 0, announced, stop)), daemon=True)
    thread.start()
    try:
        assert ready.wait(60), "the demo shop did not start"
        context = browser.new_context()
        page = context.new_page()
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        page.goto(urls[0])
        page.wait_for_function("window.dn && window.dn.version")
        page.get_by_role("button", name="Add to cart").first.click()
        page.get_by_role("button", name="Give analytics consent").click()
        page.get_by_role("link", name="Shoes").click()
        page.get_by_role("button", name="Buy").click()
        page.wait_for_timeout(2000)  # dn.js batches for a second
        page.title()
        cookies = [c["name"] for c in context.cookies()]
        context.close()
    finally:
        stop.set()
        thread.join(90)
    assert result == [0]
    assert cookies == ["_dn_id"]
    assert seen and all(u.startswith(urls[0].rstrip("/")) for u in seen), seen
    out = capsys.readouterr().out
    for line in ("page_view", "Product List Viewed", "Product Added", "Consent Updated",
                 "Order Completed"):
        assert line in out, out
