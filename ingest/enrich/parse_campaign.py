"""parse_campaign: page host and path, UTM fields and the ad click id, from the page URL.

Trackers that send campaign fields (Segment's context.campaign) keep theirs; the URL only
fills what is missing. Parameters are read from the query and from the fragment. The click
id is the first the URL holds of the known click-id parameters, in this order:
``gclid``/``gbraid``/``wbraid`` (Google Ads), ``dclid`` (Display & Video 360),
``msclkid`` (Microsoft Ads), ``fbclid`` (Meta), ``ttclid`` (TikTok), ``twclid`` (X),
``li_fat_id`` (LinkedIn).
"""

from __future__ import annotations

import duckdb

from ingest.enrich import Batch, per_distinct

_SCHEME = r"^[A-Za-z][A-Za-z0-9+.\-]*://"
CLICK_IDS = ("gclid", "gbraid", "wbraid", "dclid", "msclkid", "fbclid", "ttclid", "twclid",
             "li_fat_id")
"""Query parameters that carry an ad click id (the ``click_id_type`` values)."""
# The first of CLICK_IDS the URL holds, in that order (not in the URL's: a Google Ads click
# that also carries fbclid is Google's): {t: its name, v: its value}, each read once.
_CLICK = ("list_filter([" + ", ".join(
    f"{{'t': '{n}', 'v': nullif(regexp_extract(page_url, '[?&#]{n}=([^&#]*)', 1), '')}}"
    for n in CLICK_IDS) + "], lambda c: c.v IS NOT NULL)[1]")
# Cheap substring tests skip the regular expressions for the many URLs without parameters.
_HAS_CLICK = ("(contains(page_url, 'clid=') OR contains(page_url, 'clkid=') "
              "OR contains(page_url, 'braid=') OR contains(page_url, 'li_fat_id='))")


def decoded(text: str) -> str:
    """SQL: ``text`` percent-decoded; as sent when it does not decode to UTF-8 (a URL cut in
    the middle of a character, ``%E2%82``): a field of the event, never a failed step."""
    return f"coalesce(try(url_decode({text})), {text})"


def url_param(url: str, name: str) -> str:
    """SQL: the decoded value of parameter ``name`` in ``url``'s query or fragment (the
    first; ``#utm_medium=cpc&...`` and a single-page app's ``#/p?utm_medium=cpc`` alike),
    NULL when absent/empty."""
    value = f"replace(regexp_extract({url}, '[?&#]{name}=([^&#]*)', 1), '+', ' ')"
    return f"nullif({decoded(value)}, '')"


def parse_campaign(con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
    """Fill page_host, page_path, utm_* and click_id/click_id_type where not sent."""
    from_url = {
        "page_host": f"nullif(lower(regexp_extract(page_url, "
                     f"'{_SCHEME}(?:[^@/?#]*@)?([^/?#:]+)', 1)), '')",
        "page_path": f"CASE WHEN regexp_matches(page_url, '{_SCHEME}') THEN "
                     f"coalesce(nullif(regexp_extract(page_url, '{_SCHEME}[^/?#]*([^?#]*)', 1), "
                     f"''), '/') END",
        "click_id_type": f"CASE WHEN {_HAS_CLICK} THEN ({_CLICK}).t END",
        "click_id": f"CASE WHEN {_HAS_CLICK} THEN nullif({decoded(f'({_CLICK}).v')}, '') END",
    }
    for field in ("source", "medium", "campaign", "term", "content"):
        from_url[f"utm_{field}"] = (f"CASE WHEN contains(page_url, 'utm_') "
                                    f"THEN {url_param('page_url', f'utm_{field}')} END")
    # A batch holds far fewer distinct page URLs than events (50-event batch bodies often
    # one): the regular expressions run once per URL and the results are joined back.
    per_distinct(con, relation, "enrich_campaign_urls", "page_url", from_url)
    replaced = ", ".join(f"coalesce(e.{col}, u.{col}) AS {col}" for col in from_url)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW enrich_campaign AS
        SELECT e.* REPLACE ({replaced})
        FROM {relation} e LEFT JOIN enrich_campaign_urls u ON u.page_url = e.page_url""")
    return "enrich_campaign"
