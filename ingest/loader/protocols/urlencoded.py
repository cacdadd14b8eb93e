"""SQL for URL-encoded parameters (``a=1&b=2``): GA4 and Universal Analytics hits, pixels.

Set-at-a-time in DuckDB: a string becomes a list of ``{key, value}`` entries, then a MAP
(first occurrence of a key wins, as in ``URLSearchParams.get``), from which adapters read
their fields and build JSON objects. Values are percent-decoded with ``+`` as a space. The
helpers return SQL text built from our own constants; the strings they work on are columns.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.sql import quote

JSON_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
"""A JSON number literal, which a URL parameter may carry verbatim."""


def decode(x: str) -> str:
    """SQL: ``x`` percent-decoded (``+`` is a space).

    Only for strings that passed :func:`valid`: a string decodes exactly when all its
    parameters do (the separators are ASCII), so one check up front covers them all and
    the per-parameter decode needs no ``try``.
    """
    return f"url_decode(replace({x}, '+', ' '))"


def valid(text: str) -> str:
    """SQL: true when the URL-encoded ``text`` is percent-encoded UTF-8 (or NULL)."""
    return f"({text} IS NULL OR try(url_decode(replace({text}, '+', ' '))) IS NOT NULL)"


def entries(text: str, raw_keys: str | None = None) -> str:
    """SQL: the parameters of ``text`` (which passed :func:`valid`) as ``{key, value}``.

    Empty items are dropped. Values of keys that fully match the regex ``raw_keys`` (whose
    first two characters are literal) stay percent-encoded: GA4 item strings are split on
    ``~`` before they are decoded.
    """
    value = "CASE WHEN strpos(u_, '=') > 0 THEN substr(u_, strpos(u_, '=') + 1) ELSE '' END"
    key = decode("split_part(u_, '=', 1)")
    if raw_keys is not None:
        value = (f"CASE WHEN starts_with(u_, {quote(raw_keys[:2])}) AND "
                 f"regexp_full_match(split_part(u_, '=', 1), {quote(raw_keys)}) "
                 f"THEN {value} ELSE {decode(value)} END")
    else:
        value = decode(value)
    return (f"list_transform(list_filter(string_split({text}, '&'), lambda u_: u_ <> '' "
            f"AND NOT starts_with(u_, '=')), lambda u_: {{'key': {key}, 'value': {value}}})")


def first_wins(column: str) -> str:
    """SQL: the entries in ``column`` with repeated keys dropped; the first of a key wins.

    The check is one pass; the fallback (quadratic) runs only for the rare list that
    repeats a key.
    """
    keys = f"list_transform({column}, lambda f_: f_.key)"
    return (f"CASE WHEN len(list_distinct({keys})) = len({column}) THEN {column} "
            f"ELSE list_filter({column}, lambda e_, i_: list_position({keys}, e_.key) = i_) END")


def matching(entries_sql: str, prefixes: Iterable[str] = (), keys: Iterable[str] = (),
             regex: str | None = None, negate: bool = False, regex_start: str = "") -> str:
    """SQL: the entries whose key starts with one of ``prefixes``, is one of ``keys`` or fully
    matches ``regex``; with ``negate`` the others. Keys must start with ``regex_start``
    (default: the regex's first two characters, which must then be literal) before the
    regex runs, so most keys skip it."""
    conds = [f"starts_with(e_.key, {quote(p)})" for p in prefixes]
    listed = list(keys)
    if listed:
        conds.append(f"list_contains([{', '.join(quote(k) for k in listed)}], e_.key)")
    if regex is not None:
        conds.append(f"(starts_with(e_.key, {quote(regex_start or regex[:2])}) "
                     f"AND regexp_full_match(e_.key, {quote(regex)}))")
    cond = " OR ".join(conds) or "false"
    return f"list_filter({entries_sql}, lambda e_: {'NOT ' if negate else ''}({cond}))"


def unprefixed(entries_sql: str, prefix: str) -> str:
    """SQL: the entries whose key starts with ``prefix``, the prefix cut off."""
    return (f"list_transform({matching(entries_sql, (prefix,))}, lambda e_: "
            f"{{'key': e_.key[{len(prefix) + 1}:], 'value': e_.value}})")


def object_json(entries_sql: str, value: str = "to_json(e_.value)") -> str:
    """SQL: the JSON object text of entries with unique keys; NULL when there are none.

    ``value`` is an SQL expression of the entry ``e_`` giving its JSON value.
    """
    return (f"nullif('{{' || array_to_string(list_transform({entries_sql}, lambda e_: "
            f"to_json(e_.key) || ':' || {value}), ',') || '}}', '{{}}')")


def number_json(v: str) -> str:
    """SQL: the JSON number a parameter value stands for (its own text when that is a JSON
    number, so ``3`` stays an integer); NULL when it is no finite number."""
    return (f"(CASE WHEN NOT isfinite(try_cast({v} AS DOUBLE)) THEN NULL "  # 1e400 too
            f"WHEN regexp_full_match({v}, {quote(JSON_NUMBER)}) THEN {v}::JSON "
            f"ELSE to_json(try_cast({v} AS DOUBLE)) END)")


def not_numbers(entries_sql: str, prefixes: Iterable[str] = (),
                keys: Iterable[str] = ()) -> str:
    """SQL: the keys under ``prefixes`` (or in ``keys``) whose value is no finite number."""
    return (f"list_transform(list_filter({matching(entries_sql, prefixes, keys)}, lambda e_: "
            f"NOT coalesce(isfinite(try_cast(e_.value AS DOUBLE)), false)), lambda e_: e_.key)")


def merge_json(under: str, over: str) -> str:
    """SQL: JSON object ``under`` with ``over``'s keys laid over it; NULL when both are."""
    return (f"CASE WHEN {over} IS NULL THEN {under} WHEN {under} IS NULL THEN {over} "
            f"ELSE json_merge_patch({under}, {over}) END")


def nested_json(text: str, skip: Iterable[str] = ()) -> str:
    """SQL: the parameters of ``text`` (which passed :func:`valid`) as one JSON object, dotted
    keys nested (``properties.color=red`` -> ``{"properties": {"color": "red"}}``), values
    strings, ``skip`` keys left out; a later parameter wins a clash. For RudderStack pixels."""
    kept = matching(entries(text), keys=skip, negate=True) if skip else entries(text)
    one = ("'{' || array_to_string(list_transform(string_split(e_.key, '.'), "
           "lambda s_: to_json(s_)), ':{') || ':' || to_json(e_.value) || "
           "repeat('}', len(string_split(e_.key, '.')))")
    return (f"list_reduce(list_prepend('{{}}'::JSON, list_transform({kept}, lambda e_: "
            f"({one})::JSON)), lambda a_, b_: json_merge_patch(a_, b_))")
