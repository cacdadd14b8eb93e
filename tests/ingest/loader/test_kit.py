"""The adapter kit: rejections typed by ReasonCode, one body check, limits bound."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline
from ingest.loader.protocols import Limits
from schemas.quarantine import ReasonCode
from tests.ingest.loader.helpers import envelope, only, run
from tests.support import ROOT

PROTOCOLS = ROOT / "ingest" / "loader" / "protocols"
ADAPTER_MODULES = sorted(p.stem for p in PROTOCOLS.glob("*.py") if p.stem != "__init__")
REASONS = {c.value for c in ReasonCode}
_REASON_IN_SQL = re.compile(r"'reason':\s*'([^']*)'")


def _sql_of(module: str) -> list[str]:
    mod = importlib.import_module(f"ingest.loader.protocols.{module}")
    return [v for v in vars(mod).values() if isinstance(v, str)]


def test_every_reason_an_adapter_can_emit_is_a_reason_code() -> None:
    emitted: set[str] = set()
    for module in ADAPTER_MODULES:
        for sql in _sql_of(module):
            emitted.update(_REASON_IN_SQL.findall(sql))
    assert emitted, "no rejection found in the adapters' SQL: the scan is broken"
    assert emitted <= REASONS, emitted - REASONS
    # The adapters between them reject for every reason a protocol can break.
    assert {"payload_format", "protocol_violation", "schema_violation", "size"} <= emitted


def _plain_reasons(path: Path) -> list[tuple[int, str]]:
    """String constants of ``path`` that are a reason code, or SQL rejecting with one."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and (node.value in REASONS or _REASON_IN_SQL.search(node.value))]


@pytest.mark.parametrize("path", sorted((ROOT / "ingest" / "loader").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reason_is_spelled_as_a_plain_string(path: Path) -> None:
    assert _plain_reasons(path) == []


def test_no_limit_is_written_into_the_sql() -> None:
    for module in ADAPTER_MODULES:
        for sql in _sql_of(module):
            assert "@max_" not in sql, module


_SMALL = Limits(max_event_bytes=300, max_batch_items=3)
_BIG_EVENT = {"type": "track", "event": "x", "anonymousId": "a", "properties": {"p": "y" * 400}}
_SMALL_EVENT = {"type": "track", "event": "x", "anonymousId": "a"}


@pytest.fixture(scope="module")
def small_limits() -> Iterator[Pipeline]:
    """A loader pipeline whose limits are far below the defaults."""
    p = Pipeline(LoaderSettings(max_event_bytes=_SMALL.max_event_bytes,
                                max_batch_items=_SMALL.max_batch_items))
    yield p
    p.close()


@pytest.mark.parametrize(("frame", "detail"), [
    (envelope("segment", orjson.dumps(_BIG_EVENT), "/v1/track"),
     "exceeds the 300-byte limit"),
    (envelope("segment", orjson.dumps({"batch": [_SMALL_EVENT] * 4}), "/v1/batch"),
     "batch of 4 events exceeds the 3-event limit"),
    (envelope("posthog", orjson.dumps([{"event": "x", "distinct_id": "d"}] * 5), "/batch"),
     "request of 5 events exceeds the 3-event limit"),
    (envelope("ga4", b"\n".join([b"en=x"] * 4), "/g/collect", query="v=2&tid=G-1&cid=1.2"),
     "body of 4 events exceeds the 3-event limit"),
    (envelope("ga4", orjson.dumps({"client_id": "c", "events": [{"name": "x"}] * 4}),
              "/mp/collect", query="measurement_id=G-1&api_secret=s"),
     "exceeds the Measurement Protocol's 3-event limit"),
    (envelope("ga_universal", b"\n".join([b"v=1&t=pageview&tid=UA-1-1&cid=1"] * 4), "/batch"),
     "batch of 4 hits exceeds the 3-hit limit"),
    (envelope("snowplow", orjson.dumps({"schema": "iglu:x", "data": [{"e": "pv"}] * 4}),
              "/com.snowplowanalytics.snowplow/tp2"),
     "payload_data of 4 events exceeds the 3-event limit"),
], ids=["event bytes", "segment batch", "posthog", "ga4", "ga4 mp", "ua batch", "snowplow"])
def test_limits_are_the_configured_ones(small_limits: Pipeline, frame: bytes,
                                        detail: str) -> None:
    row = only(run(small_limits, frame).quarantine)
    assert (row["reason"], detail in row["detail"]) == ("size", True), row["detail"]


@pytest.mark.parametrize("module", [m for m in ADAPTER_MODULES if m != "ecommerce"])
def test_the_product_columns_are_mapped_once(module: str) -> None:
    # ecommerce.product_columns: the one place an event's product columns come from its item.
    source = (PROTOCOLS / f"{module}.py").read_text()
    assert not re.search(r"\bone\.(product_id|name|category|price|quantity)\b", source)
