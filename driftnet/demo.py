"""``driftnet demo``: the whole pipeline, on a temporary lake, with real analyses printed.

1. starts ``driftnet up`` (collector + loader on the embedded log) on a free port;
2. simulates shopper sessions for three tenants over HTTP;
3. waits until the loader has committed every acknowledged hit;
4. prints events per tenant and type, a conversion funnel, top products and quarantine
   reasons, all through the same tenant-scoped DuckDB views a data scientist uses;
5. stops the server with SIGTERM and checks it shut down cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from analytics import connect
from analytics.output import write_result
from driftnet.simulate import SimulationConfig, run_simulation
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import log_lag
from schemas.tenants import load_tenants


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url``/healthz answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"driftnet up exited with {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout_s}s")


def wait_loaded(log: EmbeddedLogSettings, timeout_s: float) -> None:
    """Wait until the loader committed everything in the embedded log."""
    deadline = time.monotonic() + timeout_s
    while log_lag(log) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"loader still {log_lag(log)} records behind after {timeout_s}s")
        time.sleep(0.1)


def _heading(text: str) -> None:
    print(f"\n== {text}")


ANALYSES = [
    ("Events by type and name",
     "SELECT event_type, event_name, count(*) AS events, count(DISTINCT anonymous_id) AS visitors "
     "FROM events GROUP BY ALL ORDER BY events DESC"),
    ("Conversion funnel (visitors reaching each step)",
     "SELECT count(DISTINCT anonymous_id) FILTER (WHERE product_action = 'view') AS viewed, "
     "count(DISTINCT anonymous_id) FILTER (WHERE product_action = 'add') AS added_to_cart, "
     "count(DISTINCT anonymous_id) FILTER (WHERE product_action = 'checkout') AS checked_out, "
     "count(DISTINCT anonymous_id) FILTER (WHERE product_action = 'purchase') AS purchased, "
     "round(100.0 * purchased / nullif(viewed, 0), 1) AS conversion_pct FROM events"),
    ("Top products (views, adds, and the add rate)",
     "SELECT product_id, any_value(product_name) AS name, "
     "count(*) FILTER (WHERE product_action = 'view') AS views, "
     "count(*) FILTER (WHERE product_action = 'add') AS adds, "
     "round(adds / nullif(views, 0), 2) AS add_rate "
     "FROM events WHERE product_id IS NOT NULL GROUP BY 1 ORDER BY views DESC LIMIT 5"),
    ("Acquisition: first touch of each visitor, and what it brought",
     "WITH touch AS (SELECT anonymous_id, arg_min(coalesce(utm_medium, CASE WHEN referrer IS NULL "
     "THEN 'direct' ELSE 'referral' END), derived_ts) AS medium, "
     "count(*) FILTER (WHERE product_action = 'purchase') AS orders, sum(revenue) AS revenue "
     "FROM events GROUP BY 1) "
     "SELECT medium, count(*) AS visitors, sum(orders) AS orders, "
     "round(sum(revenue), 2) AS revenue, round(sum(orders) / count(*), 3) AS orders_per_visitor "
     "FROM touch GROUP BY 1 ORDER BY visitors DESC"),
    ("Quarantine: what could not be loaded, and why",
     "SELECT reason, detail, count(*) AS hits FROM quarantine GROUP BY ALL ORDER BY hits DESC"),
]


def run_demo(tenants_path: Path, sessions: int, keep: bool) -> int:
    """Run the demo; 0 when everything worked."""
    started = time.monotonic()
    tenants = load_tenants(tenants_path)
    demo_tenants = tenants.ids[:3]
    workdir = Path(tempfile.mkdtemp(prefix="driftnet-demo-"))
    lake, log_path = workdir / "lake", workdir / "log.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"driftnet demo: lake {lake}, collector {url}, tenants {', '.join(demo_tenants)}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server_log = open(workdir / "up.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftnet", "up", "--tenants", str(tenants_path),
         "--lake", str(lake), "--port", str(port), "--log", str(log_path)],
        stdout=server_log, stderr=subprocess.STDOUT, env=env,
    )
    ok = False
    try:
        wait_healthy(url, 30, proc)
        report = run_simulation(SimulationConfig(url=url, tenants=tenants, sessions=sessions,
                                                 only_tenants=tuple(demo_tenants)))
        print(report.summary())
        wait_loaded(EmbeddedLogSettings(path=log_path), 60)
        print(f"everything acknowledged is loaded ({time.monotonic() - started:.1f}s so far)")

        with connect(lake, all_tenants=True) as con:
            _heading("Events per tenant (operator view, all tenants)")
            write_result(con.sql(
                "SELECT tenant, count(*) AS events, count(DISTINCT anonymous_id) AS visitors, "
                "count(*) FILTER (WHERE product_action = 'purchase') AS orders, "
                "round(sum(revenue), 2) AS revenue FROM events GROUP BY 1 ORDER BY 1"), "table")
        tenant = demo_tenants[0]
        print(f"\nThe rest is what tenant {tenant!r} sees: its own rows only.")
        with connect(lake, tenant) as con:
            for title, query in ANALYSES:
                _heading(title)
                write_result(con.sql(query), "table", max_rows=20)
        ok = True
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        server_log.close()
        if code != 0:
            ok = False
            print(f"driftnet up exited with {code}; its log:", file=sys.stderr)
            print((workdir / "up.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        if keep or not ok:
            print(f"\nlake and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ndemo {'finished' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s; "
          "driftnet up shut down cleanly." if ok else "")
    return 0 if ok else 1
