"""Fixtures of the browser suite: one page server, one `driftnet up`, one Chromium per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NODE_MODULES,
    page_server,
    tenants_toml,
)
from tests.support import Server


@pytest.fixture(scope="session")
def pages() -> Iterator[str]:
    """Origin of the page server (``/pages/...`` and the tracker builds under ``/vendor/...``)."""
    assert (NODE_MODULES / "@snowplow/browser-tracker").is_dir(), (
        "tracker builds missing: run `make test-deps` (npm ci)")
    with page_server() as origin:
        yield origin


@pytest.fixture(scope="session")
def collector(pages: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `driftnet up` whose tenants accept the page server's origin only."""
    workdir = tmp_path_factory.mktemp("browser-collector")
    tenants = workdir / "tenants.toml"
    tenants.write_text(tenants_toml(pages))
    server = Server(workdir, tenants).start()
    yield server
    code = server.stop()
    assert code == 0, f"driftnet up exited {code}:\n{server.logs()[-3000:]}"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium (Playwright never downloads a browser of its own here)."""
    assert CHROMIUM.exists(), "chromium missing: run `make test-deps` (apt-get install chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context: no cookies or storage from other tests."""
    context = browser.new_context()
    yield context.new_page()
    context.close()
