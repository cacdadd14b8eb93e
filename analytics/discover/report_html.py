"""The discover report as one self-contained HTML file (inline CSS and SVG, works offline).

Sections: a header with the event-time range analysed and a table of contents; with a
target, first the feature ranking (support, 95% intervals, suspects) with lift bars and a
table per feature; then the catalog of all fields (fill rate with a fill-over-time
sparkline, types, distinct count, top values as bars, aliases) and the same per event name
(collapsible).
"""

from __future__ import annotations

import datetime as dt
from html import escape

from analytics.discover.report import (
    UNDEFINED,
    FeatureScore,
    FieldStats,
    LiftValue,
    Report,
    TargetReport,
)
from analytics.discover.svg import bars, sparkline

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f3f6f9;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px}
.muted{color:#777}.warn{color:#b85c38;font-weight:600}details{margin:8px 0}
summary{cursor:pointer;font-weight:600}
"""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _day(ts: dt.datetime | None) -> str:
    return ts.date().isoformat() if ts else ""


def _top_bars(f: FieldStats) -> str:
    return bars([(v.value or "", v.share, f"{v.count} ({_pct(v.share)})")
                 for v in f.top_values], width=380, label_width=140)


def _field_rows(fields: list[FieldStats], report: Report, with_spark: bool) -> str:
    rows = []
    for f in fields:
        series = report.catalog.fill_over_time.get(f.field, []) if with_spark else []
        spark = sparkline([p.filled / p.events if p.events else 0.0 for p in series],
                          title=f"fill rate per day of {f.field}")
        types = ", ".join(f"{t} ({n})" for t, n in f.types.items())
        aliases = (f"<br><span class='muted'>also {escape(', '.join(f.aliases))}</span>"
                   if f.aliases else "")
        rows.append(
            f"<tr><td><code>{escape(f.field)}</code>{aliases}</td><td>{escape(types)}</td>"
            f'<td class="num">{_pct(f.fill_rate)}<br>{spark}</td>'
            f'<td class="num">{f.distinct}</td><td>{_top_bars(f)}</td>'
            f"<td>{_day(f.first_seen)}</td><td>{_day(f.last_seen)}</td></tr>")
    head = ("<tr><th>field</th><th>types seen</th><th>fill rate"
            + (" / per day" if with_spark else "") + "</th><th>distinct</th>"
            "<th>top values</th><th>first seen</th><th>last seen</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _interval(low: float, high: float, fmt: str) -> str:
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def _lift(v: LiftValue) -> str:
    """``x1.85 [1.52, 2.19]``, or ``n/a`` when the lift is undefined (base rate 0)."""
    if v.lift is None or v.lift_low is None or v.lift_high is None:
        return UNDEFINED
    return f"x{v.lift:.2f} {_interval(v.lift_low, v.lift_high, '{:.2f}')}"


def _score(s: FeatureScore) -> str:
    return UNDEFINED if s.score is None else f"{s.score:.2f}"


def _group_rows(s: FeatureScore) -> str:
    rows = []
    for v in s.values:
        small = ' <span class="warn">small</span>' if v.small else ""
        best = " <b>best</b>" if v.value == s.best_value else ""
        rows.append(
            f"<tr><td><code>{escape(v.value)}</code>{best}{small}</td>"
            f'<td class="num">{v.positives}/{v.sessions}</td>'
            f'<td class="num">{_pct(v.rate)} {_interval(v.rate_low, v.rate_high, "{:.1%}")}</td>'
            f'<td class="num">{_lift(v)}</td></tr>')
    return ("<table><tr><th>value</th><th>target / sessions</th><th>rate [95%]</th>"
            f"<th>lift [95%]</th></tr>{''.join(rows)}</table>")


def _feature_id(i: int) -> str:
    return f"feature-{i}"


def _target_section(t: TargetReport) -> str:
    parts = [f"<section id='target'><h2>What predicts <code>{escape(t.target)}</code></h2>",
             f"<p>{t.positives} of {t.sessions} sessions reach the target "
             f"(base rate {_pct(t.base_rate)}, entropy {t.entropy:.4f} bits). "
             f"Groups under {t.min_support} sessions are marked <span class='warn'>small</span> "
             "and never decide a rank."
             + (f" These are the sessions of a random {_pct(t.sampled_share)} of the "
                "visitors (the same on every run over the same lake)."
                if t.sampled_share < 1 else "")
             + (f" {t.excluded_sessions} sessions start with the target (nothing observable "
                "before it) and are left out." if t.excluded_sessions else "")
             + (f" No session reaches the target: lift is undefined ({UNDEFINED})."
                if t.sessions and not t.positives else "")
             + f'</p><p class="muted">{escape(t.method)}</p>']
    rows = []
    for i, s in enumerate(t.features, 1):
        best = next((v for v in s.values if v.value == s.best_value), None)
        best_cell = (f"<code>{escape(best.value)}</code>: {best.positives}/{best.sessions}, "
                     f"{_lift(best)}" if best else "")
        aliases = (f"<br><span class='muted'>also {escape(', '.join(s.aliases))}</span>"
                   if s.aliases else "")
        suspect = ("<span class='warn'>suspect</span>: " + escape("; ".join(s.suspect_reasons))
                   if s.suspect else "")
        rows.append(
            f"<tr><td class='num'>{i}</td><td><a href='#{_feature_id(i)}'><code>"
            f"{escape(s.field)}</code></a>{aliases}</td><td>{s.kind}</td>"
            f"<td class='num'>{_score(s)}</td><td>{best_cell}</td>"
            f"<td class='num'>{s.mutual_information:.5f}</td>"
            f"<td class='num'>{_pct(s.coverage)}</td><td>{suspect}</td></tr>")
    parts.append(
        "<h3>Features, best first</h3><p>Score: the lower bound of lift (95%) of the "
        "feature's best well-supported group. Suspect features come last.</p>"
        "<table><tr><th>#</th><th>feature</th><th>kind</th><th>score</th>"
        "<th>best group: target/support, lift [95%]</th><th>MI bits</th><th>coverage</th>"
        f"<th>suspect</th></tr>{''.join(rows)}</table>")
    for i, s in enumerate(t.features, 1):
        defined = all(v.lift is not None for v in s.values)
        lift = bars([(v.value, v.lift or 0.0,
                      f"{_lift(v)} ({v.positives}/{v.sessions}{', small' if v.small else ''})")
                     for v in s.values], width=640, label_width=220,
                    reference=1.0 if defined else None)
        flag = " <span class='warn'>suspect</span>" if s.suspect else ""
        parts.append(
            f"<details id='{_feature_id(i)}'><summary>{i}. <code>{escape(s.field)}</code>{flag}: "
            f"score {_score(s)}, {s.mutual_information:.5f} bits, "
            f"coverage {_pct(s.coverage)}, {s.distinct} values</summary>"
            + "".join(f"<p class='warn'>{escape(r)}</p>" for r in s.suspect_reasons)
            + "<p>Lift per value (rate of the target among sessions with the value, over the "
            f"base rate; dashed line = 1).</p>{lift}{_group_rows(s)}</details>")
    parts.append("</section>")
    return "".join(parts)


def _minute(ts: dt.datetime | None) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if ts else "?"


def render_html(report: Report) -> str:
    """The whole report as an HTML document: header, table of contents, the target
    section (with --target), then the catalog."""
    cat = report.catalog
    scope = f"event {escape(report.event)}" if report.event else "all events"
    window = "".join([f", since {escape(report.since.isoformat())}" if report.since else "",
                      f", until {escape(report.until.isoformat())}" if report.until else ""])
    title = f"driftnet discover: {escape(report.tenant or 'all tenants')}"
    names = "".join(f"<tr><td>{escape(n)}</td><td class='num'>{c}</td></tr>"
                    for n, c in cat.event_names.items())
    toc = []
    if report.target is not None:
        toc.append(f"<li><a href='#target'>What predicts {escape(report.target.target)}</a>"
                   f" ({len(report.target.features)} features)</li>")
    toc += ["<li><a href='#fields'>Fields, all events</a></li>",
            "<li><a href='#by-event'>Fields by event name</a></li>"]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{title}</h1>",
        f"<p>{cat.events} events ({scope}{window}) that happened from "
        f"<b>{_minute(cat.first_event)}</b> to <b>{_minute(cat.last_event)}</b> UTC "
        "(event time, derived_ts).</p></header>",
        f"<nav id='toc'><h2>Contents</h2><ol>{''.join(toc)}</ol></nav>",
    ]
    if report.target is not None:
        parts.append(_target_section(report.target))
    parts += [
        "<section id='fields'><h2>Fields, all events</h2>",
        f"<details><summary>{len(cat.event_names)} event names</summary>"
        f"<table><tr><th>event name</th><th>events</th></tr>{names}</table></details>",
        _field_rows([f for f in cat.overall() if f.filled], report, with_spark=True),
        "</section><section id='by-event'><h2>Fields by event name</h2>",
    ]
    for name in cat.event_names:
        fields = [f for f in cat.fields if f.event_name == name]
        parts.append(f"<details><summary>{escape(name)} ({cat.event_names[name]} events, "
                     f"{len(fields)} fields)</summary>"
                     f"{_field_rows(fields, report, with_spark=False)}</details>")
    parts.append("</section></body></html>\n")
    return "\n".join(parts)
