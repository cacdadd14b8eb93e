"""The discover report as one self-contained HTML file (inline CSS and SVG, works offline).

Sections: a summary, the catalog of all fields (fill rate with a fill-over-time sparkline,
types, distinct count, top values as bars), the same per event name (collapsible), and
with a target the feature ranking with lift bars per value.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from analytics.discover.report import FieldStats, Report, TargetReport
from analytics.discover.svg import bars, sparkline

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f3f6f9;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px}
.muted{color:#777}details{margin:8px 0}summary{cursor:pointer;font-weight:600}
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
        rows.append(
            f"<tr><td><code>{escape(f.field)}</code></td><td>{escape(types)}</td>"
            f'<td class="num">{_pct(f.fill_rate)}<br>{spark}</td>'
            f'<td class="num">{f.distinct}</td><td>{_top_bars(f)}</td>'
            f"<td>{_day(f.first_seen)}</td><td>{_day(f.last_seen)}</td></tr>")
    head = ("<tr><th>field</th><th>types seen</th><th>fill rate"
            + (" / per day" if with_spark else "") + "</th><th>distinct</th>"
            "<th>top values</th><th>first seen</th><th>last seen</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _target_section(t: TargetReport) -> str:
    parts = [f"<h2>What predicts <code>{escape(t.target)}</code></h2>",
             f"<p>{t.positives} of {t.sessions} sessions reach the target "
             f"(base rate {_pct(t.base_rate)}, entropy {t.entropy:.4f} bits). "
             f'<span class="muted">{escape(t.method)}</span></p>']
    ranking = bars([(s.field, s.mutual_information, f"{s.mutual_information:.5f} bits")
                    for s in t.features[:30]], width=640, label_width=220)
    parts.append(f"<h3>Features by mutual information</h3>{ranking}")
    for s in t.features:
        lift = bars([(v.value, v.lift, f"x{v.lift:.2f} ({v.positives}/{v.sessions})")
                     for v in s.values], width=640, label_width=220, reference=1.0)
        parts.append(
            f"<details><summary><code>{escape(s.field)}</code>: "
            f"{s.mutual_information:.5f} bits, U = {s.uncertainty_coefficient:.4f}, "
            f"coverage {_pct(s.coverage)}, {s.distinct} values</summary>"
            f"<p>Lift per value (rate of the target among sessions with the value, over the "
            f"base rate; dashed line = 1).</p>{lift}</details>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """The whole report as an HTML document."""
    cat = report.catalog
    scope = f"event {escape(report.event)}" if report.event else "all events"
    since = f" since {escape(report.since.isoformat())}" if report.since else ""
    title = f"driftnet discover: {escape(report.tenant or 'all tenants')}"
    names = "".join(f"<tr><td>{escape(n)}</td><td class='num'>{c}</td></tr>"
                    for n, c in cat.event_names.items())
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body><h1>{title}</h1>",
        f"<p>{cat.events} events ({scope}{since}) from {_day(cat.first_event)} to "
        f"{_day(cat.last_event)}.</p>",
        f"<details><summary>{len(cat.event_names)} event names</summary>"
        f"<table><tr><th>event name</th><th>events</th></tr>{names}</table></details>",
        "<h2>Fields, all events</h2>",
        _field_rows([f for f in cat.overall() if f.filled], report, with_spark=True),
        "<h2>Fields by event name</h2>",
    ]
    for name in cat.event_names:
        fields = [f for f in cat.fields if f.event_name == name]
        parts.append(f"<details><summary>{escape(name)} ({cat.event_names[name]} events, "
                     f"{len(fields)} fields)</summary>"
                     f"{_field_rows(fields, report, with_spark=False)}</details>")
    if report.target is not None:
        parts.append(_target_section(report.target))
    parts.append("</body></html>\n")
    return "\n".join(parts)
