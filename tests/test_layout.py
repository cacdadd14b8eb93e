"""The layout is the data flow: analytics and ingest both import schemas, never each other."""

from __future__ import annotations

import ast

import pytest

from tests.support import ROOT


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("analytics", {"ingest", "driftnet"}),
    ("ingest", {"analytics", "driftnet"}),
    ("schemas", {"ingest", "analytics", "driftnet"}),
])
def test_packages_do_not_import_each_other(package: str, forbidden: set[str]) -> None:
    assert not (_imports(package) & forbidden)


def test_top_level_layout() -> None:
    for name in ("ingest", "schemas", "analytics", "tests", "docker-compose.yml",
                 "pyproject.toml", "README.md", "Makefile", "bench", "docs", ".ci/run",
                 "docs/ARCHITECTURE.md", "examples/tenants.toml"):
        assert (ROOT / name).exists(), name
