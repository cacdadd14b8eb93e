"""What the benches share: the example tenants, a Segment event, wrk, ports, simulated bundles.

Imported as ``bench.common`` by the bench scripts, which put the repository root on sys.path.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from driftnet.simulate import SimulationConfig, build_requests
from schemas.envelope import encode_frame
from schemas.tenants import load_tenants

ROOT = Path(__file__).resolve().parents[1]
TENANTS = ROOT / "examples" / "tenants.toml"
KEY = "acme-live-3f9c1e7a"
AUTH = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    """Return once something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not open")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def event(i: int) -> dict[str, object]:
    """A ~600-byte Segment track event, as analytics.js sends it."""
    return {
        "type": "track", "event": "Product Viewed", "messageId": str(uuid.uuid4()),
        "anonymousId": f"anon-{i % 5000}", "timestamp": "2026-11-26T10:00:00.123Z",
        "sentAt": "2026-11-26T10:00:01.000Z",
        "properties": {"product_id": f"sku-{i % 800}", "name": "Trail Running Shoe",
                       "price": 89.9, "currency": "EUR", "quantity": 1, "category": "shoes"},
        "context": {"page": {"url": "https://shop.acme.example/p/sku-1?utm_source=news",
                             "title": "Trail Running Shoe", "referrer": "https://www.google.com/",
                             "path": "/p/sku-1"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                 "(KHTML, like Gecko) Chrome/131.0 Safari/537.36",
                    "locale": "en-US", "timezone": "Europe/Berlin"},
    }


def wrk(url: str, body: bytes, seconds: int, connections: int, workdir: Path,
        cpu: int | None = None) -> float:
    """Requests/s of wrk POSTing ``body`` to ``url`` (bench/wrk/post.lua); any non-2xx fails.
    ``cpu``: pin wrk to that core (``taskset``)."""
    body_file = workdir / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = subprocess.run(
        [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s",
         str(ROOT / "bench" / "wrk" / "post.lua"), url],
        capture_output=True, text=True, check=True,
        env={**os.environ, "BODY_FILE": str(body_file), "AUTH": AUTH})
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed requests:\n{out.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    assert match, out.stdout
    return float(match.group(1))


def simulated_frames(sessions: int) -> tuple[list[bytes], int]:
    """Envelope frames of simulated shopper traffic as the collector writes them, and the
    number of events they carry (pixel hits and empty bodies left out)."""
    tenants = load_tenants(TENANTS)
    requests = build_requests(SimulationConfig(url="-", tenants=tenants, sessions=sessions,
                                               malformed_rate=0.02))
    frames = []
    events = 0
    now = time.time_ns() // 1000
    for r in requests:
        if r.path == "/p.gif" or not r.body:
            continue
        header = {"v": 1, "tenant": r.tenant, "received_at": now, "protocol": "segment",
                  "method": "POST", "path": r.path, "query": "", "ip": "203.0.113.9",
                  "headers": {k.lower(): v for k, v in r.headers.items()
                              if k.lower() != "authorization"}}
        frames.append(encode_frame(header, r.body))
        events += r.events
    return frames, events


def lake_event_ids(lake: Path, tenant: str) -> list[str]:
    """Event ids of a tenant in the lake's events table (its current Delta version)."""
    import duckdb

    from schemas.delta import table_snapshot
    from schemas.storage import LakeLocation

    if not (lake / "events" / "_delta_log").is_dir():
        return []
    files = [f.uri for f in table_snapshot(LakeLocation.parse(lake), "events", tenant).files]
    if not files:
        return []
    with duckdb.connect() as con:
        return [str(r[0]) for r in con.execute(
            "SELECT event_id FROM read_parquet(?, union_by_name = true)", [files]).fetchall()]
