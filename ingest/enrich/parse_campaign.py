"""parse_campaign: page host and path, UTM fields and the ad click id, from the page URL.

Trackers that send campaign fields (Segment's context.campaign) keep theirs; the URL only
fills what is missing. The click id is the first of the known click-id parameters in the
URL: ``gclid``/``gbraid``/``wbraid`` (Google Ads), ``dclid`` (Display & Video 360),
``msclkid`` (Microsoft Ads), ``fbclid`` (Meta), ``ttclid`` (TikTok), ``twclid`` (X),
``li_fat_id`` (LinkedIn).
"""

from __future__ import annotations

import duckdb

from ingest.enrich import Batch, replace_columns

_SCHEME = r"^[A-Za-z][A-Za-z0-9+.\-]*://"
CLICK_IDS = ("gclid", "gbraid", "wbraid", "dclid", "msclkid", "fbclid", "ttclid", "twclid",
             "li_fat_id")
"""Query parameters that carry an ad click id (the ``click_id_type`` values)."""
_CLICK = f"[?&]({'|'.join(CLICK_IDS)})=([^&#]+)"
# Cheap substring tests skip the regular expressions for the many URLs without parameters.
_HAS_CLICK = ("(contains(page_url, 'clid=') OR contains(page_url, 'clkid=') "
              "OR contains(page_url, 'braid=') OR contains(page_url, 'li_fat_id='))")


def url_param(url: str, name: str) -> str:
    """SQL: the decoded value of query parameter ``name`` in ``url``, NULL when absent/empty."""
    return (f"nullif(url_decode(replace(regexp_extract({url}, '[?&]{name}=([^&#]*)', 1), "
            f"'+', ' ')), '')")


def parse_campaign(con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
    """Fill page_host, page_path, utm_* and click_id/click_id_type where not sent."""
    exprs = {
        "page_host": f"coalesce(page_host, nullif(lower(regexp_extract(page_url, "
                     f"'{_SCHEME}(?:[^@/?#]*@)?([^/?#:]+)', 1)), ''))",
        "page_path": f"coalesce(page_path, CASE WHEN regexp_matches(page_url, '{_SCHEME}') THEN "
                     f"coalesce(nullif(regexp_extract(page_url, '{_SCHEME}[^/?#]*([^?#]*)', 1), "
                     f"''), '/') END)",
        "click_id_type": f"coalesce(click_id_type, CASE WHEN {_HAS_CLICK} THEN "
                         f"nullif(regexp_extract(page_url, '{_CLICK}', 1), '') END)",
        "click_id": f"coalesce(click_id, CASE WHEN {_HAS_CLICK} THEN "
                    f"nullif(url_decode(regexp_extract(page_url, '{_CLICK}', 2)), '') END)",
    }
    for field in ("source", "medium", "campaign", "term", "content"):
        exprs[f"utm_{field}"] = (f"coalesce(utm_{field}, CASE WHEN contains(page_url, 'utm_') "
                                 f"THEN {url_param('page_url', f'utm_{field}')} END)")
    return replace_columns(con, relation, "enrich_campaign", exprs)
