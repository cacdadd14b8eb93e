"""derive_timestamps: clock-skew correction when sound, flags for implausible client clocks."""

from __future__ import annotations

import datetime as dt

from ingest.enrich.config import TimestampSettings
from ingest.enrich.derive_timestamps import DeriveTimestamps, derive_timestamps
from tests.ingest.enrich.helpers import NOW, event, run_step

S = dt.timedelta(seconds=1)


def _derive(*rows: dict[str, object], settings: TimestampSettings | None = None
            ) -> list[tuple[object, object]]:
    step = DeriveTimestamps(settings) if settings else derive_timestamps
    out = run_step("derive_timestamps", step, list(rows))
    return [(r["derived_ts"], r["ts_flag"]) for r in out]


def test_skewed_device_clock_is_corrected() -> None:
    """Device clock 2 h fast; the event waited 5 s in the queue: derived = received - 5 s."""
    skew = dt.timedelta(hours=2)
    assert _derive(event(client_ts=NOW + skew - 5 * S, sent_ts=NOW + skew)) == [
        (NOW - 5 * S, "future")]


def test_unsound_pairs_fall_back() -> None:
    assert _derive(
        event(0, client_ts=NOW - 10 * S, sent_ts=NOW - 20 * S),  # sent before created
        event(1, client_ts=NOW - 30 * S),  # no sent time
        event(2),  # nothing from the client
        event(3, client_ts=NOW - dt.timedelta(days=9), sent_ts=NOW),  # queued 9 days?
    ) == [(NOW - 10 * S, None), (NOW - 30 * S, None), (NOW, None),
          (NOW - dt.timedelta(days=9), None)]


def test_far_future_and_past_are_flagged_and_not_trusted() -> None:
    assert _derive(
        event(0, client_ts=NOW + dt.timedelta(minutes=11)),
        event(1, client_ts=NOW + dt.timedelta(minutes=9)),
        event(2, client_ts=NOW - dt.timedelta(days=31)),
        event(3, client_ts=NOW - dt.timedelta(days=29)),
        event(4, client_ts=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    ) == [(NOW, "future"), (NOW + dt.timedelta(minutes=9), None), (NOW, "past"),
          (NOW - dt.timedelta(days=29), None), (NOW, "past")]


def test_thresholds_are_configurable() -> None:
    settings = TimestampSettings(max_future_minutes=1, max_past_days=1, max_queue_days=0.5)
    assert _derive(
        event(0, client_ts=NOW + 2 * dt.timedelta(minutes=1)),
        event(1, client_ts=NOW - dt.timedelta(days=2)),
        event(2, client_ts=NOW - dt.timedelta(hours=13), sent_ts=NOW),  # waited too long
        event(3, client_ts=NOW - dt.timedelta(hours=11), sent_ts=NOW),
        settings=settings,
    ) == [(NOW, "future"), (NOW, "past"), (NOW - dt.timedelta(hours=13), None),
          (NOW - dt.timedelta(hours=11), None)]


def test_the_future_margin_is_at_most_a_day() -> None:
    """Analytics prunes date partitions with a day's margin for derived_ts ahead of its
    receive date: a larger margin would drop events from `--since` silently."""
    import pytest
    from pydantic import ValidationError

    from ingest.enrich.config import TimestampSettings

    assert TimestampSettings(max_future_minutes=1440).max_future_minutes == 1440
    with pytest.raises(ValidationError):
        TimestampSettings(max_future_minutes=1441)
