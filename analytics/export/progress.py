"""Progress bars for long exports, on standard error.

tqdm, because it is small (no dependencies), long maintained, writes to stderr, and turns
itself off when stderr is not a terminal, so logs and pipes stay clean. Hashing the input
files shows bytes; a query shows DuckDB's own estimate of its progress
(``con.query_progress()``, polled while a worker thread runs the query and writes its
rows), then the rows written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Never, TypeVar

import duckdb
from tqdm import tqdm

T = TypeVar("T")
POLL_S = 0.2


class Progress:
    """Progress display of one export; ``enabled=None`` means "when stderr is a terminal"."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.disable: bool | None = None if enabled is None else not enabled

    def bytes_bar(self, label: str, total: int) -> tqdm[Never]:
        """A bar counting bytes (e.g. checksumming inputs)."""
        return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                    disable=self.disable, leave=False)

    def run_query(self, con: duckdb.DuckDBPyConnection, label: str,
                  work: Callable[[Callable[[int], None]], T]) -> T:
        """Run ``work(on_rows)`` in a thread, showing DuckDB's progress and rows written."""
        bar = tqdm(total=100, desc=label, unit="%", disable=self.disable, leave=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        rows = 0
        result: list[T] = []
        error: list[BaseException] = []

        def on_rows(n: int) -> None:
            nonlocal rows
            rows += n

        def target() -> None:
            try:
                result.append(work(on_rows))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                error.append(exc)

        thread = threading.Thread(target=target, name=f"export-{label}", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            pct = con.query_progress()
            if pct >= 0:
                bar.n = max(bar.n, min(99, int(pct)))
            bar.set_description_str(f"{label} ({rows:,} rows)", refresh=False)
            bar.refresh()
        if error:
            bar.close()
            raise error[0]
        bar.n = 100
        bar.set_description_str(f"{label} ({rows:,} rows)")
        bar.close()
        return result[0]
