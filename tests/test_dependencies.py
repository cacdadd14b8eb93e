"""Every third-party module the packages import is a declared runtime dependency.

`make demo` installs only the runtime dependencies; a module that arrives only with the dev
extras (numpy through fastparquet, say) works in tests and breaks the demo on a fresh clone.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires

import pytest

from tests.support import ROOT

PACKAGES = ("schemas", "ingest", "analytics", "driftnet")
OPTIONAL = {"readline"}  # stdlib on most platforms, absent on some; the REPL copes


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_distributions() -> set[str]:
    found = set()
    for requirement in requires("driftnet") or []:
        if "extra ==" in requirement:
            continue
        found.add(_normalise(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]))
    return found


def _imported_modules() -> set[str]:
    modules: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules.add(node.module.split(".")[0])
    return modules - set(PACKAGES) - set(sys.stdlib_module_names) - OPTIONAL


@pytest.mark.parametrize("module", sorted(_imported_modules()))
def test_imported_module_is_a_runtime_dependency(module: str) -> None:
    distributions = {_normalise(d) for d in packages_distributions().get(module, [])}
    assert distributions & _runtime_distributions(), (
        f"{module} (from {sorted(distributions)}) is imported but not a runtime dependency")
