"""The discover report: a field catalog and, with a target, what predicts it.

Plain pydantic models, so the JSON output is ``Report.model_dump_json()`` and the terminal
and HTML renderers read the same structure.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["column", "items", "properties", "traits", "context", "extra"]
FeatureSource = Literal["column", "items", "properties", "traits", "context", "extra", "session"]
"""Where a ranked feature comes from; ``session``: computed from the session's events."""

UNDEFINED = "n/a"
"""How the table and HTML show an undefined lift or score (None: base rate 0, no session
reaches the target)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueCount(_Model):
    """One frequent value of a field."""

    value: str | None
    count: int
    share: float = Field(description="count / events that have the field.")


class FieldStats(_Model):
    """What was logged in one field, over all events (event_name None) or one event name."""

    field: str = Field(description="Column name, or `<json column>.<path>` "
                       "(e.g. `properties.category`, `items[*].price`).")
    source: Source
    path: str | None = Field(None, description="JSON path inside the column ($.a.b[*].c).")
    event_name: str | None = Field(description="None: all events in scope.")
    types: dict[str, int] = Field(description="Types seen (SQL type of a column; JSON types "
                                  "string, integer, number, boolean, null of a path) and how "
                                  "often.")
    events: int = Field(description="Events in scope (of this event name).")
    filled: int = Field(description="Of those, events where the field is not null. For a "
                        "path inside an array: events where any element has it.")
    fill_rate: float
    distinct: int = Field(description="Approximate count of distinct values (HyperLogLog).")
    top_values: list[ValueCount] = Field(default_factory=list, description="Most frequent "
                                         "values; on large scopes counted on a sample and "
                                         "scaled (see DiscoverOptions.top_values_sample_rows).")
    first_seen: dt.datetime | None = Field(description="First received_at with a value.")
    last_seen: dt.datetime | None = Field(description="Last received_at with a value.")
    aliases: list[str] = Field(default_factory=list, description="JSON paths holding the same "
                               "values on the same events (e.g. `context.page.url` of "
                               "`page_url`): shown once, under this field.")


class FillPoint(_Model):
    """Fill rate of a field on one day (all events in scope)."""

    date: dt.date
    events: int
    filled: int


class Catalog(_Model):
    """Every field logged in scope: columns and JSON paths, overall and by event name."""

    events: int
    first_event: dt.datetime | None = Field(description="Earliest event time (derived_ts).")
    last_event: dt.datetime | None = Field(description="Latest event time (derived_ts).")
    event_names: dict[str, int] = Field(description="Events in scope per event name.")
    fields: list[FieldStats]
    fill_over_time: dict[str, list[FillPoint]] = Field(
        description="Per field (overall), events and filled events per day.")
    aliases: dict[str, str] = Field(default_factory=dict, description="JSON path -> the "
                                    "column it duplicates (not listed as a field itself).")

    def overall(self) -> list[FieldStats]:
        """The all-events rows, in catalog order."""
        return [f for f in self.fields if f.event_name is None]


class LiftValue(_Model):
    """Sessions having one value (or bucket) of a feature, and how often they reach the
    target, with a Wilson 95% interval."""

    value: str
    sessions: int = Field(description="Support: sessions in the group.")
    positives: int = Field(description="Of those, sessions that reach the target.")
    rate: float = Field(description="positives / sessions.")
    rate_low: float = Field(description="Wilson 95% interval of the rate, lower bound.")
    rate_high: float = Field(description="Wilson 95% interval of the rate, upper bound.")
    lift: float | None = Field(description="rate / base rate of all sessions; None (null) "
                               "when the base rate is 0: no session reaches the target, "
                               "and a lift is undefined.")
    lift_low: float | None = Field(description="rate_low / base rate (None: undefined).")
    lift_high: float | None = Field(description="rate_high / base rate (None: undefined).")
    small: bool = Field(description="Fewer sessions than min_support: shown, never ranked on.")


class FeatureScore(_Model):
    """A session-level feature, with lift per value and why it ranks where it does."""

    field: str
    source: FeatureSource
    kind: Literal["categorical", "numeric"] = Field(
        description="numeric: values are quantile buckets like `[3, 7)`.")
    aliases: list[str] = Field(default_factory=list, description="Other names of the field.")
    score: float | None = Field(description="Ranking key: the highest lift_low among the "
                                "groups with enough support (0 when none has; None when lift "
                                "is undefined, at a base rate of 0, ranked after every "
                                "score).")
    best_value: str | None = Field(description="The group that gives the score.")
    mutual_information: float = Field(description="I(feature; target) in bits.")
    uncertainty_coefficient: float = Field(description="I / H(target): share of the "
                                           "target's entropy the feature explains, 0..1.")
    distinct: int = Field(description="Distinct session values before pooling.")
    coverage: float = Field(description="Share of sessions where the feature has a value.")
    suspect: bool = Field(False, description="Looks like a consequence of the target rather "
                          "than a predictor (see suspect_reasons); ranked after the others.")
    suspect_reasons: list[str] = Field(default_factory=list)
    values: list[LiftValue]


class TargetReport(_Model):
    """Lift per value of session features against a session-level target."""

    target: str
    sessions: int = Field(description="Sessions analysed (with a non-empty prefix).")
    positives: int
    base_rate: float
    entropy: float = Field(description="H(target) in bits.")
    min_support: int = Field(30, description="Groups with fewer sessions are marked small.")
    sampled_share: float = Field(1.0, description="Share of the visitors whose sessions "
                                 "were read (1.0: all; see DiscoverOptions."
                                 "target_sample_events).")
    excluded_sessions: int = Field(0, description="Sessions left out because their first "
                                   "event already is the target (nothing observable before).")
    features: list[FeatureScore] = Field(description="Best first: not suspect before "
                                         "suspect, then by score.")
    method: str = Field(description="How session features and the target are defined.")


class Report(_Model):
    """Output of ``driftnet discover``."""

    tenant: str | None
    event: str | None
    since: dt.datetime | None
    until: dt.datetime | None = None
    catalog: Catalog
    target: TargetReport | None = None
