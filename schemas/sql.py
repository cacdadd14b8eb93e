"""Quoting for SQL text the code base builds: one literal and one identifier helper.

Values from users and events are bound as parameters, never quoted into SQL; these are
for names and constants of our own code and configuration.
"""

from __future__ import annotations


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
