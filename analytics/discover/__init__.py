"""``driftnet discover``: what did we log that might be a feature?

>>> from analytics import connect
>>> from analytics.discover import DiscoverOptions, discover
>>> report = discover(connect("lake", "acme"), DiscoverOptions(target="purchase"))
>>> report.target.features[0].field
'utm_source'

The catalog (catalog.py) lists every column and JSON path with types, fill rate, distinct
count, top values and first/last seen, overall and by event name; a JSON path that copies a
column is shown as that column's alias (aliases.py). With a target, prefix.py builds each
session's features from its events before the target and lift.py gives lift per value with
support and intervals, flags suspect features and ranks the rest. report_table.py and
report_html.py render the same :class:`Report`.
"""

from __future__ import annotations

import duckdb

from analytics.discover.catalog import build_catalog
from analytics.discover.lift import target_report
from analytics.discover.options import DiscoverOptions, parse_since
from analytics.discover.report import Report

__all__ = ["DiscoverOptions", "Report", "discover", "parse_since"]


def discover(con: duckdb.DuckDBPyConnection, opts: DiscoverOptions,
             tenant: str | None = None) -> Report:
    """Catalog the events in scope and, with ``opts.target``, rank features against it."""
    catalog = build_catalog(con, opts)
    target = target_report(con, catalog, opts) if opts.target else None
    return Report(tenant=tenant, event=opts.event, since=opts.since, until=opts.until,
                  catalog=catalog, target=target)
