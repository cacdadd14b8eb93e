"""``driftnet demo --shop``: a demo shop page that uses dn.js, in your browser.

1. starts ``driftnet up`` on a temporary lake with one tenant, ``demoshop``, whose dn.js
   paths are aliased (``[tenant.snippet]``, docs/snippet.md);
2. serves examples/shop/ on ``http://localhost:<port>/`` from a small server that, like a
   shop's own reverse proxy, passes the tenant's script and ingest paths to the collector:
   the script and its beacons are first-party;
3. runs until Ctrl-C (or ``--shop-seconds``), then prints the events the lake holds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from analytics import connect
from analytics.output import write_result
from driftnet.demo import free_port, stop_up, wait_healthy, wait_loaded
from ingest.collector.snippet import STATIC
from ingest.transport.config import EmbeddedLogSettings

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"
TENANT = "demoshop"
KEY = "demoshop-key"
SCRIPT_PATH = "/assets/dn-demo.js"
INGEST_PATH = "/api/v/e"
LOADER_URL = "https://collector.example/dn.js"
"""The URL the built loader carries, replaced by the page's own."""
MAX_BODY = 512 * 1024


def tenants_toml(port: int) -> str:
    """The demo shop's tenant: its origin allowed, its dn.js paths aliased, GPC honoured."""
    return (f'[[tenant]]\nid = "{TENANT}"\nwrite_keys = ["{KEY}"]\n'
            f'allowed_origins = ["http://localhost:{port}", "http://127.0.0.1:{port}"]\n'
            f'ip_mode = "truncate"\n\n[tenant.snippet]\nscript_path = "{SCRIPT_PATH}"\n'
            f'ingest_path = "{INGEST_PATH}"\nhonor_gpc = true\n')


def shop_page() -> bytes:
    """examples/shop/index.html with the built inline loader and the tenant's key."""
    loader = (STATIC / "loader.js").read_text().strip().replace(LOADER_URL, SCRIPT_PATH)
    page = (SHOP / "index.html").read_text()
    return page.replace("<!--dn-loader-->", f"<script>{loader}</script>").replace(
        "%KEY%", KEY).encode()


def shop_handler(collector: str) -> type[BaseHTTPRequestHandler]:
    """Request handler: the tenant's dn.js paths go to ``collector``, any other GET gets the
    shop page (a single-page app: every path is the same page)."""

    class Shop(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == SCRIPT_PATH:
                self._forward(None)
            else:
                self._send(200, [("Content-Type", "text/html; charset=utf-8")], shop_page())

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != INGEST_PATH:
                self._send(404, [], b"")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, [], b"")
                return
            self._forward(self.rfile.read(length))

        def _forward(self, body: bytes | None) -> None:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "connection", "content-length")}
            headers["X-Forwarded-For"] = self.client_address[0]
            request = urllib.request.Request(  # noqa: S310 - the collector's loopback URL
                collector + self.path, data=body, headers=headers, method=self.command)
            try:
                with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
                    status, got, content = r.status, r.getheaders(), r.read()
            except urllib.error.HTTPError as exc:
                status, got, content = exc.code, list(exc.headers.items()), exc.read()
            except OSError:
                self._send(502, [], b"")
                return
            self._send(status, [(k, v) for k, v in got if k.lower() in (
                "content-type", "cache-control", "etag", "set-cookie")], content)

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Shop


def run_shop(port: int, seconds: float, ready: Callable[[str], None] | None = None,
             stop: threading.Event | None = None) -> int:
    """Run the demo shop until ``seconds`` have passed (0: never), ``stop`` is set, or (when no
    ``stop`` is given) SIGINT; 0 when it shut down cleanly. ``ready`` is called with the
    shop's URL once it serves (the CLI prints it)."""
    workdir = Path(tempfile.mkdtemp(prefix="driftnet-shop-"))
    lake, log_path, tenants = workdir / "lake", workdir / "log.sqlite", workdir / "tenants.toml"
    tenants.write_text(tenants_toml(port))
    collector_port = free_port()
    collector = f"http://127.0.0.1:{collector_port}"
    server_log = open(workdir / "up.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftnet", "up", "--tenants", str(tenants), "--lake", str(lake),
         "--port", str(collector_port), "--log", str(log_path)],
        stdout=server_log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    shop = ThreadingHTTPServer(("127.0.0.1", port), shop_handler(collector))
    thread = threading.Thread(target=shop.serve_forever, daemon=True)
    ok = False
    previous = None
    if stop is None:
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        wait_healthy(collector, 30, proc)
        thread.start()
        url = f"http://localhost:{shop.server_address[1]}/"
        (ready or print)(url)
        stop.wait(seconds if seconds > 0 else None)
        wait_loaded(EmbeddedLogSettings(path=log_path), 60)
        with connect(lake, TENANT) as con:
            print("\n== What the demo shop sent (tenant demoshop)")
            if not con.sql("SELECT count(*) FROM events").fetchall()[0][0]:
                print(f"nothing: was {url} opened in a browser?")
            write_result(con.sql(
                "SELECT event_name, product_action, count(*) AS events, "
                "count(DISTINCT anonymous_id) AS visitors, "
                "count(*) FILTER (WHERE anonymous_id LIKE 'cl-%') AS cookieless "
                "FROM events GROUP BY ALL ORDER BY min(received_at)"), "table", max_rows=50)
        ok = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        shop.shutdown()
        shop.server_close()
        code = stop_up(proc)
        server_log.close()
        if code != 0:
            ok = False
            print(f"driftnet up exited with {code}; its log is in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def announce(url: str) -> None:
    """What the CLI prints once the shop serves."""
    print(f"demo shop: open {url} in a browser, click around (page views, products, cart, "
          "consent), then press Ctrl-C to see the events in the lake.", flush=True)
