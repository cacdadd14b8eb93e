"""What a ``discover`` run looks at: the event scope, the time window, the target."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from analytics.errors import AnalyticsError

_RELATIVE = re.compile(r"^(\d+)\s*([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}

PRUNE_MARGIN = dt.timedelta(days=1)
"""How far ``derived_ts`` may lie after ``received_at`` (whose UTC date partitions the
lake) for ``--since`` to prune partitions: derive_timestamps keeps a client time at most
``max_future_minutes`` (10 by default) ahead of the receive time, far less than a day."""


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``30d``, ``12h``, ``2w`` (before ``now``) or an ISO date/time (UTC when naive)."""
    value = text.strip()
    m = _RELATIVE.match(value)
    if m:
        now = now or dt.datetime.now(dt.UTC)
        try:
            return now - dt.timedelta(**{_UNITS[m[2]]: int(m[1])})
        except OverflowError:  # further back than year 1
            raise AnalyticsError("--since/--until reach back before year 1",
                                 value=text) from None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise AnalyticsError("--since/--until want 30d, 12h, 2w or an ISO date",
                             value=text) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class DiscoverOptions(BaseModel):
    """Parameters of one discover run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str | None = Field(None, description="Only events with this event_name.")
    since: dt.datetime | None = Field(None, description="Only events that happened at or "
                                      "after (event time, derived_ts).")
    until: dt.datetime | None = Field(None, description="Only events that happened before "
                                      "(event time, derived_ts).")
    target: str | None = Field(None, description="Event name or product_action whose "
                               "occurrence in a session is the target of the lift analysis.")
    top_k: int = Field(5, ge=1, le=100, description="Top values kept per field.")
    top_values_max_distinct: int = Field(
        100_000, ge=1, description="Fields with more distinct values, or with more than one "
        "distinct value per two events (ids, timestamps), get no top values: counting them "
        "costs a hash table entry per value and says nothing.")
    top_values_sample_rows: int = Field(
        200_000, ge=1, description="Past this many events, columns' top values are "
        "counted on a random sample of about this many rows (counts scaled back by the events "
        "sampled; on 10M events shares were within 1.3 points overall, median 0.05, and "
        "within 5.3 points per event name, median 0.16: a rare event name has few rows in "
        "the sample). 1M cost 30% more CPU for the whole catalog at 1M events.")
    target_sample_events: int = Field(
        2_000_000, ge=0, description="Past this many events in scope (of every event name, "
        "also with `event`: a session's numbers count all its events), the target analysis "
        "reads the sessions of a random share of visitors holding about this many events "
        "(whole visitors, chosen by a hash of their id: the same lake gives the same "
        "sample); the report says the share, and the intervals are those of the sessions "
        "read. 0: every session. 2M events are about 250k sessions.")
    lift_values: int = Field(20, ge=2, le=200, description="Values per feature in the lift "
                             "analysis; rarer values are pooled as `(other)`.")
    max_features: int = Field(100, ge=1, description="Most logged fields ranked against the "
                              "target (the best-filled ones), besides the behavioural ones.")
    min_support: int = Field(30, ge=1, description="Groups (a value, or a bucket) of fewer "
                             "sessions are marked small and never decide a feature's rank.")
    buckets: int = Field(5, ge=2, le=20, description="Quantile buckets of a numeric feature.")
    suspect_late_share: float = Field(
        0.6, gt=0, le=1, description="A field first set in the last quarter of the prefix "
        "(right before the target) in at least this share of the target sessions that have "
        "it is suspect.")
    suspect_rate: float = Field(
        0.9, gt=0, le=1, description="A field (or one of its values) whose sessions reach the "
        "target at least this often (lower bound of the 95% interval) is suspect.")

    def where(self, alias: str = "") -> tuple[str, dict[str, Any]]:
        """SQL condition and parameters selecting the events in scope (event time)."""
        p = f"{alias}." if alias else ""
        conds = ["true"]
        params: dict[str, Any] = {}
        if self.since is not None:
            # `date` (of received_at) is the partition column: it prunes whole files.
            conds += [f"{p}date >= $since_date", f"{p}derived_ts >= $since"]
            try:
                since_date = (self.since.astimezone(dt.UTC) - PRUNE_MARGIN).date()
            except OverflowError:  # within a day of year 1: no partition to prune
                since_date = dt.date.min
            params |= {"since": self.since, "since_date": since_date}
        if self.until is not None:
            # No pruning: an event may be received long after it happened (offline queues).
            conds.append(f"{p}derived_ts < $until")
            params["until"] = self.until
        if self.event is not None:
            conds.append(f"{p}event_name = $event")
            params["event"] = self.event
        return " AND ".join(conds), params
