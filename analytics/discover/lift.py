"""Which logged fields carry information about a target, at session level.

The target is an event name (``Order Completed``) or a product action (``purchase``); a
session is positive when it contains one. A session's value of a feature is the first
value the field took in the session *before* the first target event (so a field that is
only sent with the purchase itself, like an order id, cannot look predictive); sessions
whose first event already is the target have no such prefix and are left out.

For each categorical field (string or boolean columns and JSON paths, ids and lineage
excluded) the values are counted per session, the ``lift_values`` most frequent kept and
the rest pooled as ``(other)``, missing values kept as ``(missing)``. Pooling bounds the
upward bias of mutual information on high-cardinality fields (an id column would
otherwise "explain" everything). Fields are ranked by mutual information I(feature;
target) in bits, with the uncertainty coefficient I/H(target) as a 0..1 score.

One DuckDB query does the session aggregation and the per-value counts; Python only sees
the small (feature, value) count table.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import duckdb

from analytics.discover.options import DiscoverOptions
from analytics.discover.report import Catalog, FeatureScore, FieldStats, LiftValue, TargetReport
from analytics.views import EVENT_ORDER, ORDER_KEY

EXCLUDED_COLUMNS = frozenset({
    "tenant", "event_id", "event_type", "event_name", "product_action", "anonymous_id",
    "user_id", "network_user_id", "session_id", "order_id", "ip", "source", "pipeline_version",
    "is_duplicate", "items", "properties", "traits", "context", "extra",
})
"""Identifiers, lineage, the target's own columns and whole JSON documents."""

MISSING = "(missing)"
OTHER = "(other)"
_CATEGORICAL_COLUMN_TYPES = frozenset({"VARCHAR", "BOOLEAN"})
_CATEGORICAL_JSON_TYPES = frozenset({"string", "boolean", "null"})

METHOD = ("A session is positive when it has an event whose event_name or product_action is "
          "the target. Features are the first non-null value of each field in the session "
          "before its first target event; the {k} most frequent values of a feature are kept, "
          "the rest pooled as (other). Ranked by mutual information in bits.")


def candidate_features(catalog: Catalog, opts: DiscoverOptions) -> list[FieldStats]:
    """Categorical fields of the catalog worth ranking, best-filled first."""
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
    out.sort(key=lambda f: (-f.filled, f.field))
    return out[: opts.max_features]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _feature_exprs(features: list[FieldStats]) -> tuple[list[str], list[str]]:
    """(expressions over session_events computing JSON path lists, one expression per feature)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for f in features:
        if f.source != "column":
            assert f.path is not None
            by_source[f.source].append(f.path)
    lists = [f"try(json_extract_string({_ident(src)}, [{', '.join(map(_lit, paths))}])) "
             f"AS _j_{src}" for src, paths in by_source.items()]
    exprs = []
    for f in features:
        if f.source == "column":
            exprs.append(f"CAST({_ident(f.field)} AS VARCHAR)")
        else:
            assert f.path is not None
            exprs.append(f"_j_{f.source}[{by_source[f.source].index(f.path) + 1}]")
    return lists, exprs


def _counts_sql(features: list[FieldStats], opts: DiscoverOptions) -> tuple[str, dict[str, Any]]:
    """One query: (feature, value, sessions, positives) over the sessions in scope.

    The wide per-event rows are never materialised: the target time per session comes from
    a narrow scan, joined to the streaming feature scan, and each feature keeps a single
    ``arg_min`` state per session (an ordered aggregate would buffer every event).
    """
    lists, exprs = _feature_exprs(features)
    where, params = opts.model_copy(update={"event": None}).where()
    params["target"] = opts.target
    only_event = "true"
    if opts.event is not None:
        only_event = "event_name = $event"
        params["event"] = opts.event
    feats = ", ".join(f"{e} AS f{i}" for i, e in enumerate(exprs))
    firsts = ", ".join(
        f"coalesce(arg_min(CASE WHEN {only_event} THEN f{i} END, {ORDER_KEY}), "
        f"{_lit(MISSING)}) AS f{i}" for i in range(len(exprs)))
    fcols = ", ".join(f"f{i}" for i in range(len(exprs)))
    sql = f"""
    WITH tgt AS (
      SELECT session_id, min(derived_ts) AS t_at FROM session_events
      WHERE {where} AND (event_name = $target OR product_action = $target)
      GROUP BY session_id
    ),
    base AS NOT MATERIALIZED (
      SELECT e.*, t.t_at, {", ".join(lists) if lists else "NULL AS _none"}
      FROM session_events e LEFT JOIN tgt t USING (session_id)
      WHERE {where} AND (t.t_at IS NULL OR e.derived_ts < t.t_at)
    ),
    ev AS NOT MATERIALIZED (
      SELECT session_id, event_name, t_at, {EVENT_ORDER}, {feats} FROM base
    ),
    s AS (
      SELECT session_id, bool_or(t_at IS NOT NULL) AS y, {firsts}
      FROM ev GROUP BY session_id
    ),
    long AS (UNPIVOT s ON {fcols} INTO NAME feature VALUE v)
    SELECT feature, v, count(*) AS n, sum(CASE WHEN y THEN 1 ELSE 0 END)::BIGINT AS pos
    FROM long GROUP BY feature, v
    """
    return sql, params


def _entropy(*probabilities: float) -> float:
    return -sum(p * math.log2(p) for p in probabilities if p > 0)


def _score(field: FieldStats, counts: list[tuple[str, int, int]], total: int, positives: int,
           k: int) -> FeatureScore:
    """Pool rare values, then lift per value and mutual information of the feature."""
    counts = sorted(counts, key=lambda c: (-c[1], c[0]))
    kept: dict[str, list[int]] = {}
    real = [c for c in counts if c[0] != MISSING]
    top = {c[0] for c in real[:k]}
    for value, n, pos in counts:
        key = value if value == MISSING or value in top else OTHER
        acc = kept.setdefault(key, [0, 0])
        acc[0] += n
        acc[1] += pos
    base = positives / total
    mi = 0.0
    values = []
    for value, (n, pos) in kept.items():
        for joint, marginal_y in ((pos, positives), (n - pos, total - positives)):
            if joint and marginal_y:
                p_xy = joint / total
                mi += p_xy * math.log2(p_xy / ((n / total) * (marginal_y / total)))
        rate = pos / n
        values.append(LiftValue(value=value, sessions=n, positives=pos, rate=rate,
                                lift=rate / base if base else 0.0))
    values.sort(key=lambda v: (-v.sessions, v.value))
    h = _entropy(base, 1 - base)
    missing = kept.get(MISSING, [0, 0])[0]
    return FeatureScore(field=field.field, source=field.source, mutual_information=max(mi, 0.0),
                        uncertainty_coefficient=max(mi, 0.0) / h if h else 0.0,
                        distinct=len(real), coverage=1 - missing / total, values=values)


def target_report(con: duckdb.DuckDBPyConnection, catalog: Catalog,
                  opts: DiscoverOptions) -> TargetReport:
    """Rank the catalog's categorical fields by information about ``opts.target``."""
    assert opts.target is not None
    features = candidate_features(catalog, opts)
    method = METHOD.format(k=opts.lift_values)
    if not features:
        return TargetReport(target=opts.target, sessions=0, positives=0, base_rate=0.0,
                            entropy=0.0, features=[], method=method)
    sql, params = _counts_sql(features, opts)
    per_feature: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for feature, value, n, pos in con.sql(sql, params=params).fetchall():
        per_feature[int(str(feature)[1:])].append((str(value), int(n), int(pos)))
    first = per_feature.get(0, [])
    total = sum(n for _, n, _ in first)
    positives = sum(p for _, _, p in first)
    if total == 0:
        return TargetReport(target=opts.target, sessions=0, positives=0, base_rate=0.0,
                            entropy=0.0, features=[], method=method)
    scores = [_score(f, per_feature[i], total, positives, opts.lift_values)
              for i, f in enumerate(features)]
    scores.sort(key=lambda s: (-s.mutual_information, s.field))
    base = positives / total
    return TargetReport(target=opts.target, sessions=total, positives=positives, base_rate=base,
                        entropy=_entropy(base, 1 - base), features=scores, method=method)
