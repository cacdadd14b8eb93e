"""SQL both Google Analytics protocols share: a body of lines, one event per line.

gtag.js (``/g/collect``) and Universal Analytics (``/collect``, ``/batch``) send URL-encoded
parameters: the query string holds the parameters shared by every event of the hit, the
body one line per event (or nothing). An event's parameters are its line's, then the shared
ones (line wins). ``parts(e, p)`` is each protocol's select list of what an entries column
``e`` contributes, its columns prefixed ``p`` (``q_`` for the query, ``l_`` for the line).
"""

from __future__ import annotations

from collections.abc import Callable

from ingest.loader.protocols.urlencoded import entries, first_wins, valid


def body_lines(text: str) -> str:
    """SQL: the non-blank lines of body ``text``; ``['']`` for a blank body (one event)."""
    return (f"CASE WHEN regexp_full_match({text}, '\\s*') THEN [''] ELSE list_filter("
            f"string_split_regex({text}, '\\r?\\n'), "
            f"lambda l_: NOT regexp_full_match(l_, '\\s*')) END")


def events_of_lines(hits: str, item_key: str, parts: Callable[[str, str], str]) -> str:
    """SQL: one row per line of the accepted hits of table ``hits``.

    Adds ``line``, ``item_index``, ``ev`` (a row number the items join on), ``line_ok`` and
    the ``l_`` columns of ``parts``; keeps the hit's ``q_`` columns.
    """
    return f"""
    SELECT * {parts("le", "l_")}
    FROM (
      SELECT * REPLACE ({first_wins('le')} AS le)
      FROM (
        SELECT *, CASE WHEN line_ok THEN {entries('line', item_key)} ELSE [] END AS le
        FROM (SELECT *, row_number() OVER () AS ev, {valid('line')} AS line_ok
              FROM (SELECT * EXCLUDE (lines, hit_q, bad_body), unnest(lines) AS line,
                           unnest(range(len(lines))) AS item_index
                    FROM {hits} WHERE hit_q IS NULL))
      )
    )"""


ITEM_ENTRIES = ("unnest(list_concat(l_items, list_filter(q_items, lambda e_: NOT "
                "list_contains(list_transform(l_items, lambda f_: f_.key), e_.key))))")
"""SQL: the item parameters of an event, one row each: its line's, then shared ones it lacks."""
