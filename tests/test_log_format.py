"""`driftnet --log-format json`: every log line is one JSON object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.support import KEYS, Server


def test_json_log_lines(tmp_path: Path, tenants_file: Path) -> None:
    srv = Server(tmp_path, tenants_file)
    srv.spawn(["--log-format", "json", "up", "--tenants", str(tenants_file), "--lake",
               str(srv.lake), "--port", str(srv.port), "--log", str(srv.log)], tmp_path, {})
    srv.wait_healthy("driftnet up")
    assert srv.post("/v1/track", {"type": "track", "event": "E", "anonymousId": "a"},
                    KEYS["acme"]).status_code == 200
    srv.wait_loaded()
    assert srv.stop() == 0
    lines = srv.logs().splitlines()
    assert lines
    docs = [orjson.loads(line) for line in lines]  # raises on any line that is not JSON
    for doc in docs:
        assert {"ts", "level", "logger", "message"} <= set(doc), doc
    assert any(d["message"].startswith("collector listening on http://") for d in docs)


def test_text_log_lines_by_default(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "driftnet", "maintain", "--lake",
                          str(tmp_path / "lake"), "--once"], capture_output=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr and not out.stderr.lstrip().startswith(b"{")
    json_out = subprocess.run([sys.executable, "-m", "driftnet", "--log-format", "json",
                               "maintain", "--lake", str(tmp_path / "lake"), "--once"],
                              capture_output=True, check=False, timeout=120)
    assert json_out.returncode == 0, json_out.stderr
    assert [orjson.loads(line)["level"] for line in json_out.stderr.splitlines()]


def test_json_lines_keep_extras_and_tracebacks() -> None:
    import logging

    from driftnet.logs import JsonFormatter

    logger = logging.getLogger("driftnet.test")
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logger.makeRecord("driftnet.test", logging.ERROR, __file__, 1,
                                   "failed for %s", ("acme",), sys.exc_info(),
                                   extra={"tenant": "acme", "color_message": "\x1b[31mx"})
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["message"] == "failed for acme" and doc["level"] == "ERROR"
    assert doc["tenant"] == "acme" and "color_message" not in doc
    assert "ValueError: bad value" in doc["exc"]
    assert doc["ts"].endswith("+00:00")
