"""The adapter kit: rejections typed by ReasonCode, one body check, limits bound."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from schemas.quarantine import ReasonCode
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
