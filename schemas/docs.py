"""Regenerate the column tables in docs/lake.md from the schema models.

Run ``python -m schemas.docs`` after changing a model; a test fails while the docs are stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.columns import docs_table
from schemas.event import CanonicalEvent
from schemas.quarantine import QuarantineRecord
from schemas.raw import RawHit

TABLES: dict[str, type[BaseModel]] = {
    "events": CanonicalEvent, "quarantine": QuarantineRecord, "raw": RawHit,
}


def render(text: str) -> str:
    """``text`` with every ``<!-- columns:NAME -->...<!-- /columns -->`` block regenerated."""
    def block(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"<!-- columns:{name} -->\n{docs_table(TABLES[name])}\n<!-- /columns -->"

    return re.sub(r"<!-- columns:(\w+) -->.*?<!-- /columns -->", block, text, flags=re.S)


def main(path: str = "docs/lake.md") -> int:
    """Rewrite ``path`` in place; exit 1 when it changed (useful in CI)."""
    target = Path(path)
    before = target.read_text(encoding="utf-8")
    after = render(before)
    if after != before:
        target.write_text(after, encoding="utf-8")
        print(f"updated {path}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
