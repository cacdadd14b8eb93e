"""Which session features say something about a target, and how sure we are.

The target is an event name (``Order Completed``) or a product action (``purchase``); a
session is positive when it contains one. Features are read on the session's prefix
before its first target event (prefix.py): logged fields (string and boolean columns,
JSON paths; ids and lineage excluded) by their first value, and behavioural numbers
(counts, dwell, prices, recency) cut into quantile buckets.

Per group (a value, or a bucket) of a feature: support (sessions, positives), the rate
with its Wilson 95% interval, and the lift (rate / base rate) with its bounds (the
interval's bounds / base rate). Groups with fewer than ``min_support`` sessions are marked
small. A feature's score is the highest lower bound of lift among its well-supported
groups, so a handful of lucky sessions cannot outrank a large group whose lift is certain.

A feature is *suspect* when it looks like a consequence of the target rather than a
predictor (it is kept, ranked after the others, with the reason):

- **late**: in most target sessions that have the field, it is first set in the last
  quarter of the time before the target (an identify call at checkout, a cart quantity);
- **exclusive**: sessions that have the field, or one of its values, reach the target
  almost always (the lower bound of the rate at least ``suspect_rate``) while the target
  is a minority.

Mutual information (bits) and the uncertainty coefficient are reported too, over values
pooled to the ``lift_values`` most frequent (the rest as ``(other)``), which bounds the
upward bias of mutual information on high-cardinality fields.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

import duckdb

from analytics.discover import prefix
from analytics.discover.options import DiscoverOptions
from analytics.discover.report import (
    Catalog,
    FeatureScore,
    FeatureSource,
    FieldStats,
    LiftValue,
    TargetReport,
)

EXCLUDED_COLUMNS = frozenset({
    "tenant", "event_id", "event_type", "event_name", "product_action", "anonymous_id",
    "user_id", "network_user_id", "session_id", "order_id", "ip", "source", "pipeline_version",
    "is_duplicate", "items", "properties", "traits", "context", "extra",
})
"""Identifiers, lineage, the target's own columns and whole JSON documents."""

MISSING = "(missing)"
OTHER = "(other)"
Z95 = 1.959963984540054
_CATEGORICAL_COLUMN_TYPES = frozenset({"VARCHAR", "BOOLEAN"})
_CATEGORICAL_JSON_TYPES = frozenset({"string", "boolean", "null"})

METHOD = ("A session is positive when it has an event whose event_name or product_action is "
          "the target. Features are read on the events strictly before the session's first "
          "target event (sessions without the target: all their events; sessions starting "
          "with it are left out): a logged field by its first value (the {k} most frequent "
          "kept, the rest pooled as (other)), a session number by its quantile bucket. "
          "Rate intervals are Wilson 95%; lift bounds are those over the base rate. Groups "
          "under {m} sessions are small and never decide a rank. Features rank by the "
          "highest lower bound of lift among their well-supported groups; suspect ones "
          "(first set right before the target, or present almost only in target sessions) "
          "come last.")


def candidate_features(catalog: Catalog, opts: DiscoverOptions,
                       con: duckdb.DuckDBPyConnection | None = None) -> list[FieldStats]:
    """Categorical fields of the catalog worth ranking, best-filled first; with ``con``, only
    JSON paths it can read (:func:`prefix.unaddressable`: not a key logged as ``""``)."""
    rows = [f for f in catalog.fields if f.event_name == opts.event]
    out = []
    for f in rows:
        if f.filled == 0 or f.distinct < 2:
            continue
        if f.source == "column":
            ok = f.field not in EXCLUDED_COLUMNS and set(f.types) <= _CATEGORICAL_COLUMN_TYPES
        else:
            types = set(f.types)
            small_ints = types <= {"integer", "null"} and f.distinct <= opts.lift_values
            ok = "[*]" not in f.field and (types <= _CATEGORICAL_JSON_TYPES or small_ints)
        if ok:
            out.append(f)
    if con is not None:
        paths = [f.path for f in out if f.source != "column" and f.path is not None]
        unreadable = prefix.unaddressable(con, paths)
        out = [f for f in out if f.source == "column" or f.path not in unreadable]
    out.sort(key=lambda f: (-f.filled, f.field))
    return out[: opts.max_features]


def wilson(positives: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0, 1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = positives / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _group(value: str, n: int, pos: int, base: float, min_support: int) -> LiftValue:
    """A group's support, rate and lift; at a base rate of 0 (no session reaches the
    target) the lift is undefined: None, never a number that could rank."""
    low, high = wilson(pos, n)
    rate = pos / n if n else 0.0
    return LiftValue(value=value, sessions=n, positives=pos, rate=rate, rate_low=low,
                     rate_high=high, lift=rate / base if base else None,
                     lift_low=low / base if base else None,
                     lift_high=high / base if base else None, small=n < min_support)


def _mutual_information(groups: list[LiftValue], total: int, positives: int) -> float:
    mi = 0.0
    for g in groups:
        for joint, marginal_y in ((g.positives, positives),
                                  (g.sessions - g.positives, total - positives)):
            if joint and marginal_y:
                p_xy = joint / total
                mi += p_xy * math.log2(p_xy / ((g.sessions / total) * (marginal_y / total)))
    return max(mi, 0.0)


def _entropy(*probabilities: float) -> float:
    return 0.0 - sum(p * math.log2(p) for p in probabilities if p > 0)  # never -0.0


def _pool(counts: list[tuple[str, int, int]], k: int) -> list[tuple[str, int, int]]:
    """Keep the ``k`` most frequent values (and missing); pool the rest as (other)."""
    counts = sorted(counts, key=lambda c: (-c[1], c[0]))
    top = {c[0] for c in [c for c in counts if c[0] != MISSING][:k]}
    kept: dict[str, list[int]] = {}
    for value, n, pos in counts:
        acc = kept.setdefault(value if value == MISSING or value in top else OTHER, [0, 0])
        acc[0] += n
        acc[1] += pos
    return [(v, n, p) for v, (n, p) in kept.items()]


def _exclusive(label: str, g: LiftValue, opts: DiscoverOptions, base: float) -> str | None:
    if g.small or base >= 0.5 or g.rate_low < opts.suspect_rate:
        return None
    return (f"{label} reach the target in {g.positives} of {g.sessions} sessions "
            f"({100 * g.rate:.0f}%, base {100 * base:.1f}%): is it sent because of the target?")


Kind = Literal["categorical", "numeric"]


def _score(field: str, source: FeatureSource, kind: Kind, groups: list[LiftValue],
           distinct: int, total: int, positives: int, opts: DiscoverOptions, aliases: list[str],
           reasons: list[str]) -> FeatureScore:
    base = positives / total
    h = _entropy(base, 1 - base)
    mi = _mutual_information(groups, total, positives)
    # lift_low is None for every group at a base rate of 0: no group is best, no score
    supported = [g for g in groups if not g.small and g.lift_low is not None]
    best = max(supported, key=lambda g: (g.lift_low or 0.0, g.sessions), default=None)
    for g in groups if not reasons else []:  # one reason of this kind is enough
        if g.value not in (MISSING, OTHER):
            reason = _exclusive(f"sessions with {field} = {g.value!r}", g, opts, base)
            if reason:
                reasons.append(reason)
                break
    missing = sum(g.sessions for g in groups if g.value == MISSING)
    if kind == "categorical":  # numeric groups stay in bucket order
        groups.sort(key=lambda g: (-g.sessions, g.value))
    return FeatureScore(
        field=field, source=source, kind=kind,
        aliases=aliases, score=best.lift_low if best else (0.0 if base else None),
        best_value=best.value if best else None, mutual_information=mi,
        uncertainty_coefficient=mi / h if h else 0.0, distinct=distinct,
        coverage=1 - missing / total, suspect=bool(reasons), suspect_reasons=reasons,
        values=groups)


def _categorical(con: duckdb.DuckDBPyConnection, features: list[FieldStats],
                 opts: DiscoverOptions) -> tuple[dict[int, list[tuple[str, int, int]]],
                                                 dict[int, tuple[int, int]]]:
    """Per field index: (value, sessions, positives), and (target sessions having it,
    of which it was set late)."""
    counts: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    late: dict[int, tuple[int, int]] = {}
    if not features:
        return counts, late
    cols = ", ".join(f"coalesce(c{i}, '{MISSING}') AS c{i}" for i in range(len(features)))
    for feature, value, n, pos in prefix.rows(con, f"""
        SELECT feature, v, count(*), sum(CASE WHEN y THEN 1 ELSE 0 END)::BIGINT
        FROM (UNPIVOT (SELECT y, {cols} FROM {prefix.TABLE})
              ON COLUMNS(* EXCLUDE (y)) INTO NAME feature VALUE v)
        GROUP BY ALL"""):
        counts[int(str(feature)[1:])].append((str(value), int(n), int(pos)))
    aggs = ", ".join(f"count(c{i}) FILTER (y), count(*) FILTER (y AND l{i})"
                     for i in range(len(features)))
    row = prefix.rows(con, f"SELECT {aggs} FROM {prefix.TABLE}")[0]
    for i in range(len(features)):
        late[i] = (int(row[2 * i]), int(row[2 * i + 1]))
    return counts, late


def _label(lo: float | None, hi: float | None, integral: bool,
           least: float | None, most: float | None) -> str:
    """What a bucket ``[lo, hi)`` holds (None: open end), given the smallest and largest
    values (None: not known): the lowest bucket starts at the smallest value (``0``, not
    ``< 1``), a bucket of one value is that value, the highest stays open (``≥ 4``).
    Integers as ranges (``2-3``; ``-5 to -4`` with a negative bound), other numbers as
    intervals (``[0.5, 1.75)``)."""
    def num(x: float) -> str:
        x += 0.0  # -0.0 -> 0.0
        return f"{x:.0f}" if integral or x == int(x) else f"{x:.4g}"
    start = least if lo is None else lo
    if start is None:
        return "all" if hi is None else f"< {num(hi)}"
    if hi is None:
        return num(start) if start == most else f"≥ {num(start)}"
    if integral:
        last = hi - 1
        if start == last:
            return num(start)
        return f"{num(start)}{' to ' if start < 0 or last < 0 else '-'}{num(last)}"
    return f"[{num(start)}, {num(hi)})"


def _numeric(con: duckdb.DuckDBPyConnection,
             opts: DiscoverOptions) -> dict[str, list[tuple[str, int, int]]]:
    """Per numeric feature: (bucket label, sessions, positives) in bucket order, then
    (missing); bucket edges are the feature's quantiles (duplicates merged)."""
    names = prefix.NUMERIC
    qs = [i / opts.buckets for i in range(1, opts.buckets)]
    row = prefix.rows(con, "SELECT " + ", ".join(
        f"quantile_disc({n}, {qs}), bool_and({n} = round({n})), min({n}), max({n})"
        for n in names) + f" FROM {prefix.TABLE}")[0]
    exprs, labels = [], []
    for i, name in enumerate(names):
        quantiles, integral, least, most = row[4 * i: 4 * i + 4]
        integral = bool(integral)
        edges = sorted({float(math.ceil(e)) if integral else float(e)
                        for e in (quantiles or []) if e is not None and math.isfinite(e)})
        # Edges are our own numbers, written as float literals.
        index = " + ".join(f"CASE WHEN {name} >= {e!r} THEN 1 ELSE 0 END" for e in edges) or "0"
        # -1: no value (no add, no product viewed, first session seen)
        exprs.append(f"CASE WHEN {name} IS NULL THEN -1 ELSE {index} END AS b{i}")
        bounds: list[float | None] = [None, *edges, None]
        least, most = (float(x) if x is not None and math.isfinite(x) else None
                       for x in (least, most))
        labels.append([_label(bounds[j], bounds[j + 1], integral, least, most)
                       for j in range(len(edges) + 1)])
    found: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for feature, bucket, n, pos in prefix.rows(con, f"""
        SELECT feature, v, count(*), sum(CASE WHEN y THEN 1 ELSE 0 END)::BIGINT
        FROM (UNPIVOT (SELECT y, {', '.join(exprs)} FROM {prefix.TABLE})
              ON COLUMNS(* EXCLUDE (y)) INTO NAME feature VALUE v)
        GROUP BY ALL"""):
        found[names[int(str(feature)[1:])]][int(bucket)] = (int(n), int(pos))
    out: dict[str, list[tuple[str, int, int]]] = {}
    for i, name in enumerate(names):
        buckets = found.get(name, {})
        out[name] = [(MISSING if b < 0 else labels[i][b], *buckets[b])
                     for b in sorted(buckets, key=lambda b: (b < 0, b))]
    return out


def target_report(con: duckdb.DuckDBPyConnection, catalog: Catalog,
                  opts: DiscoverOptions) -> TargetReport:
    """Rank logged fields and session numbers by what they say about ``opts.target``."""
    assert opts.target is not None
    features = candidate_features(catalog, opts, con)
    method = METHOD.format(k=opts.lift_values, m=opts.min_support)
    empty = TargetReport(target=opts.target, sessions=0, positives=0, base_rate=0.0,
                         entropy=0.0, min_support=opts.min_support, features=[], method=method)
    if catalog.events == 0:
        return empty
    try:
        # The catalog counts the --event events only; the sample bounds all the events read.
        in_scope = (catalog.events if opts.event is None or not opts.target_sample_events
                    else prefix.events_in_scope(con, opts))
        share = prefix.sample_fraction(in_scope, opts)
        excluded = prefix.build(con, features, opts, share)
        total, positives = (int(x or 0) for x in prefix.rows(
            con, f"SELECT count(*), sum(CASE WHEN y THEN 1 ELSE 0 END) FROM {prefix.TABLE}")[0])
        if total == 0:
            return empty.model_copy(update={"excluded_sessions": excluded})
        counts, late = _categorical(con, features, opts)
        numeric = _numeric(con, opts)
    finally:
        prefix.drop(con)
    base = positives / total
    scores = []
    for i, f in enumerate(features):
        groups = [_group(v, n, p, base, opts.min_support)
                  for v, n, p in _pool(counts[i], opts.lift_values)]
        if len(groups) < 2:
            continue  # one value in every session (or none) says nothing
        reasons = []
        has, set_late = late.get(i, (0, 0))
        if has >= opts.min_support and set_late / has >= opts.suspect_late_share:
            reasons.append(f"first set right before the target (last quarter of the time "
                           f"before it) in {set_late} of the {has} target sessions that "
                           "have it")
        present_n = sum(g.sessions for g in groups if g.value != MISSING)
        present_pos = sum(g.positives for g in groups if g.value != MISSING)
        if present_n < total:
            reason = _exclusive(f"sessions that have {f.field}",
                                _group("", present_n, present_pos, base, opts.min_support),
                                opts, base)
            if reason:
                reasons.append(reason)
        distinct = len([c for c in counts[i] if c[0] != MISSING])
        scores.append(_score(f.field, f.source, "categorical", groups, distinct, total,
                             positives, opts, f.aliases, reasons))
    for name in prefix.NUMERIC:
        groups = [_group(v, n, p, base, opts.min_support) for v, n, p in numeric[name]]
        if len(groups) < 2:
            continue  # one group (constant, or never filled) says nothing
        distinct = len([g for g in groups if g.value != MISSING])
        scores.append(_score(name, "session", "numeric", groups, distinct, total, positives,
                             opts, [], []))
    scores.sort(key=lambda s: (s.suspect, s.score is None, -(s.score or 0.0),
                               -s.mutual_information, s.field))
    return TargetReport(target=opts.target, sessions=total, positives=positives, base_rate=base,
                        entropy=_entropy(base, 1 - base), min_support=opts.min_support,
                        sampled_share=share, excluded_sessions=excluded, features=scores,
                        method=method)
