"""``driftnet demo``: the whole pipeline, on a temporary lake, with real analyses printed.

1. starts ``driftnet up`` (collector + loader on the embedded log) on a free port;
2. simulates shopper sessions for three tenants over HTTP, spread over the past 14 days;
3. waits until the loader has committed every acknowledged hit;
4. prints events per tenant and type, a conversion funnel, acquisition, top products and
   quarantine reasons, all through the same tenant-scoped DuckDB views a data scientist uses;
5. stops the server with SIGTERM and checks it shut down cleanly.
"""

from __future__ import annotations

import datetime as dt
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


def stop_up(proc: subprocess.Popen[bytes]) -> int:
    """Stop a ``driftnet up`` child (SIGTERM, then SIGKILL after 30 s); its exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


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
    ("Conversion funnel by device (sessions view; bots left out)",
     "SELECT device, count(*) AS sessions, count(*) FILTER (WHERE products_viewed > 0) AS viewed, "
     "count(*) FILTER (WHERE products_added > 0) AS added, "
     "count(*) FILTER (WHERE purchased) AS purchased, "
     "round(100.0 * count(*) FILTER (WHERE purchased) / count(*), 1) AS conversion_pct "
     "FROM sessions WHERE NOT is_bot GROUP BY 1 ORDER BY sessions DESC"),
    ("Acquisition: where sessions came from, and what they brought",
     "SELECT referrer_class, coalesce(utm_medium, '-') AS utm_medium, count(*) AS sessions, "
     "round(avg(pages), 1) AS pages_per_session, count(*) FILTER (WHERE purchased) AS orders, "
     "round(sum(revenue), 2) AS revenue, string_agg(DISTINCT currency, ', ') AS currency "
     "FROM sessions GROUP BY ALL ORDER BY sessions DESC"),
    ("Top products (products view: views, adds, purchases, view-to-purchase rate)",
     "SELECT product_id, name, views, adds, purchases, "
     "round(view_to_purchase_rate, 2) AS view_to_purchase "
     "FROM products ORDER BY views DESC, product_id LIMIT 5"),
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
                                                 only_tenants=tuple(demo_tenants), days=14))
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
        code = stop_up(proc)
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
    if ok:
        print(_next_steps(workdir / "lake" if keep else None, demo_tenants[0]))
    return 0 if ok else 1


def _next_steps(lake: Path | None, tenant: str) -> str:
    """What to try after the demo (with the kept lake, or how to keep one)."""
    where = str(lake) if lake is not None else "./lake"
    lines = ["", "Next:"]
    if lake is None:
        lines.append("  driftnet demo --keep            # keep the demo's lake to explore it")
    lines += [
        f"  driftnet sql --lake {where} --tenant {tenant}     # a SQL shell over its views",
        f"  driftnet discover --lake {where} --tenant {tenant} --target purchase",
        f"  driftnet export --lake {where} --tenant {tenant} --recipe sessions --out ./ds "
        f"--train-end {(dt.datetime.now(dt.UTC) - dt.timedelta(days=4)).date()}",
        "  driftnet up --tenants examples/tenants.toml --lake ./lake   # your own collector",
        "  driftnet demo --shop             # a demo shop page using dn.js, in your browser",
        "  README.md and docs/ say the rest.",
    ]
    return "\n".join(lines)
