"""Browser test support: a static page server, Debian's Chromium, and a wire recorder.

The pages in tests/browser/pages load the real tracker builds from node_modules (installed by
``npm ci`` from the pinned package-lock.json), unmodified, and send to a `driftnet up` on
another loopback port: every hit is cross-origin, as on a shop's site.
"""

from __future__ import annotations

import mimetypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import ROOT, free_port

PAGES = Path(__file__).resolve().parent / "pages"
NODE_MODULES = ROOT / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]

# URL prefix -> directory. analytics-next lazy-loads chunks from <cdn>/analytics-next/bundles/:
# the pages point its CDN at /segment-cdn, served from the package's own dist/umd.
MOUNTS = {
    "/pages/": PAGES,
    "/vendor/": NODE_MODULES,
    "/segment-cdn/analytics-next/bundles/": NODE_MODULES / "@segment/analytics-next/dist/umd",
}

TENANTS = {"snowshop": "snowshop-app", "segshop": "segshop-key", "dnshop": "dnshop-key"}
"""Browser-suite tenants and their keys (Snowplow app id, Segment write key, dn.js key)."""
DN_SNIPPET = """[tenant.snippet]
script_path = "/assets/app-7c1.js"
ingest_path = "/api/v/e"
honor_gpc = true
"""
"""dnshop's dn.js settings: first-party aliases (tests/browser/test_dn.py proxies them)."""
DN_LOADER = "<!--dn-loader-->"
"""Marker in a page that the page server replaces with dn.js's built inline loader, loading
the script URL given in the page's ``script`` query parameter."""


def tenants_toml(page_origin: str) -> str:
    """A tenants file whose tenants accept only the page server's origin (dnshop: any
    loopback port, for the first-party proxy of its aliases)."""
    return "".join(
        f'[[tenant]]\nid = "{tid}"\nwrite_keys = ["{key}"]\n'
        f'allowed_origins = ["{"http://127.0.0.1:*" if tid == "dnshop" else page_origin}"]\n'
        f'ip_mode = "none"\n{DN_SNIPPET if tid == "dnshop" else ""}\n'
        for tid, key in TENANTS.items()
    )


def dn_loader(script_url: str) -> str:
    """The built inline loader (ingest/collector/static/loader.js) loading ``script_url``."""
    loader = (ROOT / "ingest" / "collector" / "static" / "loader.js").read_text().strip()
    assert "https://collector.example/dn.js" in loader
    return "<script>" + loader.replace("https://collector.example/dn.js", script_url) + "</script>"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        for prefix, directory in MOUNTS.items():
            if path.startswith(prefix):
                target = (directory / path[len(prefix):]).resolve()
                if target.is_relative_to(directory.resolve()) and target.is_file():
                    body = target.read_bytes()
                    if target.suffix == ".html" and DN_LOADER.encode() in body:
                        script = parse_qs(url.query).get("script", [""])[0]
                        body = body.replace(DN_LOADER.encode(), dn_loader(script).encode())
                    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
        self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def page_server() -> Iterator[str]:
    """Serve pages and node_modules on a loopback port; yields the origin."""
    with http_server(_Handler) as origin:
        yield origin


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a loopback port in a thread; yields the origin."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Exchange:
    """One request a page sent to the collector, and the collector's answer."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    status: int
    response_headers: dict[str, str]


@dataclass
class Wire:
    """Records, without touching them, the requests a page sends: to the collector, elsewhere."""

    collector: str
    exchanges: list[Exchange] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", self._request)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))

    def _request(self, request: Any) -> None:
        if urlsplit(request.url).hostname not in ("127.0.0.1", None):
            self.foreign.append(request.url)

    def _finished(self, request: Any) -> None:
        if not request.url.startswith(self.collector) or request.method == "OPTIONS":
            return
        response = request.response()
        self.exchanges.append(Exchange(
            request.method, request.url, request.all_headers(), request.post_data,
            response.status, response.all_headers()))

    def wait(self, page: Any, done: Callable[[list[Exchange]], bool],
             timeout_s: float = 15.0) -> list[Exchange]:
        """Pump the page's events until ``done(exchanges)``; fail on failed requests."""
        deadline = time.monotonic() + timeout_s
        while not done(self.exchanges):
            assert not self.failed, self.failed
            if time.monotonic() > deadline:
                raise TimeoutError(f"page sent {len(self.exchanges)} requests: {self.exchanges}")
            page.wait_for_timeout(25)
        return self.exchanges
