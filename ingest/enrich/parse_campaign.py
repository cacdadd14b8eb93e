"""parse_campaign: page host and path, and UTM fields from the page URL when not sent."""

from __future__ import annotations

import duckdb

from ingest.enrich import replace_columns

_SCHEME = r"^[A-Za-z][A-Za-z0-9+.\-]*://"


def url_param(url: str, name: str) -> str:
    """SQL: the decoded value of query parameter ``name`` in ``url``, NULL when absent/empty."""
    return (f"nullif(url_decode(replace(regexp_extract({url}, '[?&]{name}=([^&#]*)', 1), "
            f"'+', ' ')), '')")


def parse_campaign(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """Fill page_host, page_path and utm_* from page_url where the tracker did not send them."""
    exprs = {
        "page_host": f"coalesce(page_host, nullif(lower(regexp_extract(page_url, "
                     f"'{_SCHEME}(?:[^@/?#]*@)?([^/?#:]+)', 1)), ''))",
        "page_path": f"coalesce(page_path, CASE WHEN regexp_matches(page_url, '{_SCHEME}') THEN "
                     f"coalesce(nullif(regexp_extract(page_url, '{_SCHEME}[^/?#]*([^?#]*)', 1), "
                     f"''), '/') END)",
    }
    for field in ("source", "medium", "campaign", "term", "content"):
        exprs[f"utm_{field}"] = f"coalesce(utm_{field}, {url_param('page_url', f'utm_{field}')})"
    return replace_columns(con, relation, "enrich_campaign", exprs)
