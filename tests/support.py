"""Test support: a real `driftnet up` process on loopback, and helpers to talk to it."""

from __future__ import annotations

import base64
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from analytics import connect
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import log_lag
from schemas.sql import quote

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TENANTS = ROOT / "examples" / "tenants.toml"
SHARED_DATA = ROOT.parent / "shared" / "data"

TEST_TENANTS = """
[[tenant]]
id = "acme"
write_keys = ["acme-key", "acme-app-2"]
allowed_origins = ["https://shop.acme.example", "http://127.0.0.1:*"]
ip_mode = "none"

[[tenant]]
id = "globex"
write_keys = ["globex-key"]
allowed_origins = ["https://www.globex.example"]
ip_mode = "none"

[[tenant]]
id = "initech"
write_keys = ["initech-key"]
allowed_origins = ["*"]
ip_mode = "none"
"""
KEYS = {"acme": "acme-key", "globex": "globex-key", "initech": "initech-key"}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _KeepOpen(io.BufferedReader):
    """One buffered reader of a socket for all its responses: http.client closes its reader
    after each body, this one stays open (the socket is closed by its own ``with``)."""

    def close(self) -> None:
        pass


class _Buffered:
    """A socket as http.client sees one, all responses read through one buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.reader = _KeepOpen(socket.SocketIO(sock, "rb"))

    def makefile(self, mode: str) -> io.BufferedReader:
        return self.reader


def responses(sock: socket.socket, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """``count`` HTTP/1.1 responses read off ``sock`` (pipelined requests' answers, by
    http.client): status line, headers, body."""
    source = _Buffered(sock)
    answers: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    for _ in range(count):
        response = http.client.HTTPResponse(source)  # type: ignore[arg-type]
        response.begin()
        body = response.read()
        headers = {k.lower().encode(): v.encode("latin-1") for k, v in response.getheaders()}
        answers.append((f"HTTP/1.1 {response.status} {response.reason}".encode(), headers, body))
    return answers


def basic(key: str) -> str:
    """Authorization header value for a write key."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@contextmanager
def serving(workdir: Path, tenants_toml: str) -> Iterator[Server]:
    """`driftnet up` for the tenants of ``tenants_toml``; stopped after, and it must exit 0."""
    (workdir / "tenants.toml").write_text(tenants_toml)
    server = Server(workdir, workdir / "tenants.toml").start()
    try:
        yield server
    except BaseException:
        server.stop()  # a failed test leaves no `driftnet up` running behind it
        raise
    assert server.stop() == 0, server.logs()[-3000:]


_PINNED = (
    "import os, runpy, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(',')));"
    " sys.argv = ['driftnet', *sys.argv[2:]];"
    " runpy.run_module('driftnet', run_name='__main__', alter_sys=True)")
"""``python -c`` for ``python -m driftnet`` on the CPUs of its first argument."""


class DriftnetProcess:
    """What every driftnet subprocess of the tests shares: start, health, logs, stop, kill.

    Subclasses (dataclasses) provide ``proc``, ``url`` and ``output`` (its log file).
    """

    proc: subprocess.Popen[bytes] | None
    url: str
    output: Path

    def spawn(self, args: list[str], cwd: Path, env: Mapping[str, str],
              cpus: frozenset[int] | None = None) -> None:
        """Start ``python -m driftnet <args>``, its output appended to ``output``; with
        ``cpus``, the process may run on those CPUs only (its affinity)."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        start = ["-m", "driftnet"] if cpus is None else [
            "-c", _PINNED, ",".join(str(cpu) for cpu in sorted(cpus))]
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, *start, *args],
                                         stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                         cwd=cwd)

    def wait_healthy(self, what: str, timeout_s: float = 30.0) -> None:
        """Wait until ``/healthz`` answers 200; fail early if the process exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{what} not healthy:\n{self.logs()}")

    def logs(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stop(self, timeout_s: float = 30.0, signalled: bool = False) -> int:
        """SIGTERM (unless ``signalled`` already: a second one would cut its shutdown short)
        and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            if not signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """kill -9."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@dataclass
class Server(DriftnetProcess):
    """A `driftnet up` subprocess."""

    workdir: Path
    tenants: Path
    port: int = field(default_factory=free_port)
    flush_interval: float = 0.1
    extra_env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    lake_uri: str | None = None
    """The lake as a URL (``s3://...``); default the ``lake`` directory."""
    cpus: frozenset[int] | None = None
    """The CPUs the process may run on; default all of the test's."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def lake(self) -> Path:
        return self.workdir / "lake"

    @property
    def lake_location(self) -> str:
        """``--lake`` as given to the process."""
        return self.lake_uri or str(self.lake)

    @property
    def log(self) -> Path:
        return self.workdir / "log.sqlite"

    @property
    def output(self) -> Path:
        return self.workdir / "up.log"

    def start(self, timeout_s: float = 30.0) -> Server:
        self.spawn(["up", "--tenants", str(self.tenants), "--lake", self.lake_location, "--port",
                    str(self.port), "--log", str(self.log), "--flush-interval",
                    str(self.flush_interval), *self.extra_args], self.workdir, self.extra_env,
                   self.cpus)
        self.wait_healthy("driftnet up", timeout_s)
        return self

    def query(self, tenant: str, sql: str,
              params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Wait until everything sent is loaded, then run ``sql`` over ``tenant``'s views."""
        self.wait_loaded()
        with connect(self.lake_location, tenant) as con:
            return con.execute(sql, params or []).fetchall()

    def wait_loaded(self, timeout_s: float = 30.0) -> None:
        """Wait until the loader committed everything in the embedded log."""
        settings = EmbeddedLogSettings(path=self.log)
        deadline = time.monotonic() + timeout_s
        while log_lag(settings) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not loaded after {timeout_s}s:\n{self.logs()[-3000:]}")
            time.sleep(0.02)

    def post(self, path: str, body: Any, key: str | None = None,
             headers: Mapping[str, str] | None = None) -> httpx.Response:
        """POST JSON (or bytes) to the collector."""
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = basic(key)
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        h.setdefault("Content-Type", "application/json")
        return httpx.post(f"{self.url}{path}", content=content, headers=h, timeout=10)


def lake_files(lake: Path | str, table: str, tenant: str | None = None) -> list[str]:
    """The data files of a lake table's current Delta snapshot (never a glob: compaction
    leaves superseded files on disk until vacuum)."""
    from schemas.delta import table_snapshot
    from schemas.storage import LakeLocation

    return [f.uri for f in table_snapshot(LakeLocation.parse(lake), table,  # type: ignore[arg-type]
                                          tenant).files]


def lake_rows(lake: Path | str, table: str, sql: str = "SELECT * FROM t",
              tenant: str | None = None) -> list[tuple[Any, ...]]:
    """Run ``sql`` over a table's current rows, exposed to it as ``t`` (with the tenant and
    date partition columns)."""
    import duckdb

    files = lake_files(lake, table, tenant)
    with duckdb.connect() as con:
        if not files:
            return []
        paths = ", ".join(quote(f) for f in files)
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet([{paths}], "
                    "hive_partitioning = true, hive_types = {'tenant': VARCHAR, 'date': DATE}, "
                    "union_by_name = true, filename = true)")
        return con.execute(sql).fetchall()
