"""The discover report as terminal text: the catalog table, then the target ranking."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from analytics.discover.report import FieldStats, Report

MAX_CELL = 48


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table (numbers right-aligned), no terminal codes: pipes stay clean."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) and bool(rows)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(list(headers)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _day(ts: dt.datetime | None) -> str:
    return ts.date().isoformat() if ts else ""


def _types(f: FieldStats) -> str:
    return ",".join(t.lower() for t in f.types if t.lower() != "null") or "null"


def _tops(f: FieldStats) -> str:
    return ", ".join(f"{v.value} {_pct(v.share)}" for v in f.top_values[:3])


def render_text(report: Report, show_empty: bool = False) -> str:
    """The catalog (all events, or the --event one) and the target ranking, as text."""
    cat = report.catalog
    scope = f"event {report.event!r}" if report.event else "all events"
    since = f" since {report.since.isoformat()}" if report.since else ""
    parts = [f"{cat.events} events ({scope}{since}), {len(cat.event_names)} event names, "
             f"{_day(cat.first_event)} .. {_day(cat.last_event)}"]
    in_events: dict[str, list[str]] = {}
    for f in cat.fields:
        if f.event_name is not None:
            in_events.setdefault(f.field, []).append(f.event_name)
    rows = []
    for f in cat.overall():
        if not f.filled and not show_empty:
            continue
        names = in_events.get(f.field, [])
        where = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
        rows.append([f.field, _types(f), _pct(f.fill_rate), f.distinct, _tops(f),
                     _day(f.first_seen), _day(f.last_seen), where])
    parts.append(text_table(["field", "types", "fill", "distinct", "top values", "first seen",
                             "last seen", "in events"], rows))
    empty = sum(1 for f in cat.overall() if not f.filled)
    if empty and not show_empty:
        parts.append(f"({empty} columns never filled in scope are not shown; "
                     "--format json lists them)")
    t = report.target
    if t is not None:
        parts.append("")
        parts.append(f"target {t.target!r}: {t.positives} of {t.sessions} sessions "
                     f"({_pct(t.base_rate)}), H = {t.entropy:.4f} bits")
        ranking = []
        for i, s in enumerate(t.features, 1):
            common = [v for v in s.values if v.sessions >= max(30, 0.01 * t.sessions)]
            best = max(common, key=lambda v: v.lift, default=None)
            worst = min(common, key=lambda v: v.lift, default=None)
            ranking.append([i, s.field, round(s.mutual_information, 5),
                            round(s.uncertainty_coefficient, 4), _pct(s.coverage),
                            f"{best.value} x{best.lift:.2f}" if best else "",
                            f"{worst.value} x{worst.lift:.2f}" if worst else ""])
        parts.append(text_table(["#", "feature", "MI bits", "U", "coverage",
                                 "highest lift", "lowest lift"], ranking))
    return "\n".join(parts) + "\n"
