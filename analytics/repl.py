"""``driftnet sql`` without a query: an interactive SQL shell over one tenant's views.

Statements end with ``;`` (they may span lines). History is kept in ``~/.driftnet_history``;
Tab completes view names, column names and SQL keywords. Dot-commands: ``.help``,
``.tables``, ``.schema [view]``, ``.format table|csv|json``, ``.refresh``, ``.quit``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb

from analytics.errors import TenantScopeError
from analytics.output import FORMATS, Format, write_result
from analytics.readonly import check_read_only

try:  # readline is absent on some platforms; the shell still works without it
    import readline
except ImportError:  # pragma: no cover
    readline = None  # type: ignore[assignment]

HISTORY = Path.home() / ".driftnet_history"
KEYWORDS = ("select", "from", "where", "group", "by", "order", "limit", "count", "distinct",
            "having", "join", "with", "as", "and", "or", "not", "null", "desc", "asc",
            "describe", "summarize", "json_extract_string", "date_trunc")
HELP = """\
.tables               list the views (events, sessions, session_events, raw, ...)
.schema [view]        columns of a view
.format table|csv|json  output format
.refresh              reconnect (see files that landed since the session began)
.quit                 leave (also Ctrl-D)
Statements end with ';'."""


class Shell:
    """The REPL state: connection, output format, completion words."""

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection], fmt: Format) -> None:
        self._connect = connect
        self.con = connect()
        self.fmt: Format = fmt
        self.views: list[str] = []
        self.words = self._completion_words()

    def _completion_words(self) -> list[str]:
        """Keywords plus the views and columns the connection really has (one catalog
        query, so views added later, e.g. ``events_all``, complete without code changes)."""
        rows = self.con.sql(
            "SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns() "
            "WHERE NOT internal AND schema_name = 'main' GROUP BY table_name ORDER BY table_name"
        ).fetchall()
        self.views = [str(r[0]) for r in rows]
        words = set(KEYWORDS) | set(self.views)
        for _, columns in rows:
            words.update(str(c) for c in columns)
        return sorted(words)

    def complete(self, text: str, state: int) -> str | None:
        """readline completer over views, columns and keywords."""
        matches = [w for w in self.words if w.startswith(text.lower())]
        return matches[state] if state < len(matches) else None

    def command(self, line: str) -> bool:
        """Run a dot-command; False when the shell should exit."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if cmd in (".quit", ".exit"):
            return False
        if cmd == ".help":
            print(HELP)
        elif cmd == ".tables":
            print("\n".join(self.views))
        elif cmd == ".schema":
            for view in [arg] if arg else self.views:
                print(f"-- {view}")
                self.run(f"DESCRIBE {view}", fmt="table")
        elif cmd == ".format":
            if arg in FORMATS and arg != "parquet":
                self.fmt = arg
            else:
                print("formats: table, csv, json")
        elif cmd == ".refresh":
            self.con.close()
            self.con = self._connect()
            self.words = self._completion_words()
            print("reconnected")
        else:
            print(f"unknown command {cmd}; .help lists them")
        return True

    def run(self, sql: str, fmt: Format | None = None) -> None:
        """Run one statement and print its result; errors are printed, not raised."""
        try:
            check_read_only(self.con, sql)
            rel = self.con.sql(sql)
            if rel is not None:
                write_result(rel, fmt or self.fmt)
        except (duckdb.Error, TenantScopeError) as exc:
            print(f"error: {exc}", file=sys.stderr)


def run_repl(connect: Callable[[], duckdb.DuckDBPyConnection], fmt: Format,
             banner: str) -> None:
    """Read statements until EOF or .quit."""
    shell = Shell(connect, fmt)
    if readline is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(HISTORY)
        readline.set_completer(shell.complete)
        readline.set_completer_delims(" \t\n(),.;=<>'\"")
        readline.parse_and_bind("tab: complete")
    print(banner)
    buffer: list[str] = []
    try:
        while True:
            try:
                line = input("...> " if buffer else "sql> ")
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                buffer.clear()
                continue
            if not buffer and line.strip().startswith("."):
                if not shell.command(line):
                    break
                continue
            buffer.append(line)
            if line.rstrip().endswith(";"):
                shell.run("\n".join(buffer))
                buffer.clear()
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY)
        shell.con.close()
