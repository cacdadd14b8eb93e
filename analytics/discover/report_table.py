"""The discover report as terminal text: the catalog table, then the target ranking."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from analytics.discover.report import UNDEFINED, FieldStats, LiftValue, Report, TargetReport
from analytics.output import REORDERING

MAX_CELL = 48
# Control characters of logged text (C0 but tab and newline, DEL, C1): a terminal would obey
# them (ESC sequences clear the screen or retitle the window); and the characters that
# reorder or break what is shown (bidirectional overrides and isolates, U+202E turning
# "gpj.exe" around; line and paragraph separators): shown escaped instead.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + "".join(REORDERING) + "]")


def printable(text: str) -> str:
    """``text`` with line breaks and tabs as spaces and other control characters escaped
    (``\\x1b``, ``\\u202e``): logged values and keys are shown, never obeyed by the
    terminal."""
    text = text.replace("\n", " ").replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


def _cell(value: object) -> str:
    text = printable("" if value is None else str(value))
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


def _minute(ts: dt.datetime | None) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


def _types(f: FieldStats) -> str:
    return ",".join(t.lower() for t in f.types if t.lower() != "null") or "null"


def _tops(f: FieldStats) -> str:
    return ", ".join(f"{v.value} {_pct(v.share)}" for v in f.top_values[:3])


def render_text(report: Report, show_empty: bool = False) -> str:
    """The catalog (all events, or the --event one) and the target ranking, as text."""
    cat = report.catalog
    scope = f"event {report.event!r}" if report.event else "all events"
    since = f" since {report.since.isoformat()}" if report.since else ""
    until = f" until {report.until.isoformat()}" if report.until else ""
    parts = [f"{cat.events} events ({scope}{since}{until}), {len(cat.event_names)} event "
             f"names, happened {_minute(cat.first_event)} .. {_minute(cat.last_event)}"]
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
        name = f.field + (f" (= {', '.join(f.aliases)})" if f.aliases else "")
        rows.append([name, _types(f), _pct(f.fill_rate), f.distinct, _tops(f),
                     _day(f.first_seen), _day(f.last_seen), where])
    parts.append(text_table(["field", "types", "fill", "distinct", "top values", "first seen",
                             "last seen", "in events"], rows))
    empty = sum(1 for f in cat.overall() if not f.filled)
    if empty and not show_empty:
        parts.append(f"({empty} columns never filled in scope are not shown; "
                     "--format json lists them)")
    t = report.target
    if t is not None:
        parts += ["", *target_lines(t)]
    return "\n".join(parts) + "\n"


def lift_text(v: LiftValue) -> str:
    """``x1.85 [1.52-2.19]``: the lift and its 95% bounds, or ``n/a`` when undefined."""
    if v.lift is None or v.lift_low is None or v.lift_high is None:
        return UNDEFINED
    return f"x{v.lift:.2f} [{v.lift_low:.2f}-{v.lift_high:.2f}]"


def _group(v: LiftValue) -> str:
    return f"{v.value}: {v.positives}/{v.sessions} {lift_text(v)}"


def target_lines(t: TargetReport) -> list[str]:
    """The target ranking: one row per feature with its best well-supported group."""
    lines = [f"target {t.target!r}: {t.positives} of {t.sessions} sessions "
             f"({_pct(t.base_rate)}), H = {t.entropy:.4f} bits; features read before the "
             f"target; groups under {t.min_support} sessions are small and never rank"]
    if t.sampled_share < 1:
        lines.append(f"(sessions of a random {_pct(t.sampled_share)} of the visitors, the "
                     "same on every run over the same lake: --sample-events sets the size)")
    if t.excluded_sessions:
        lines.append(f"({t.excluded_sessions} sessions start with the target: nothing to "
                     "read before it, left out)")
    if t.sessions and not t.positives:
        lines.append(f"(no session reaches the target: lift is undefined, shown {UNDEFINED})")
    rows = []
    for i, s in enumerate(t.features, 1):
        best = next((v for v in s.values if v.value == s.best_value), None)
        supported = [v for v in s.values if not v.small and v.lift_high is not None]
        worst = min(supported, key=lambda v: v.lift_high or 0.0, default=None)
        score = UNDEFINED if s.score is None else round(s.score, 2)
        rows.append([i, s.field, s.kind, score, _group(best) if best else "",
                     _group(worst) if worst and worst is not best else "",
                     round(s.mutual_information, 5), _pct(s.coverage),
                     "suspect" if s.suspect else ""])
    lines.append(text_table(["#", "feature", "kind", "score", "best group: target/support "
                             "xlift [95%]", "lowest group", "MI bits", "coverage", ""], rows))
    for i, s in enumerate(t.features, 1):
        for reason in s.suspect_reasons:
            lines.append(printable(f"suspect #{i} {s.field}: {reason}"))
        if s.aliases:
            lines.append(printable(f"#{i} {s.field} also logged as {', '.join(s.aliases)}"))
    return lines
