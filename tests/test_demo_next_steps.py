"""`make demo` ends with what to try next, and how to keep its lake."""

from __future__ import annotations

from pathlib import Path

from driftnet.demo import _next_steps


def test_next_steps_say_how_to_keep_the_lake_and_what_to_run() -> None:
    text = _next_steps(None, "acme")
    assert "driftnet demo --keep" in text
    assert "driftnet sql --lake ./lake --tenant acme" in text
    kept = _next_steps(Path("/tmp/driftnet-demo-x/lake"), "acme")
    assert "--keep" not in kept
    assert "driftnet discover --lake /tmp/driftnet-demo-x/lake --tenant acme" in kept
