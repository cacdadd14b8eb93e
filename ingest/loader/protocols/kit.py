"""The adapter kit: the SQL pieces every protocol adapter shares.

An adapter's stages mark a rejected hit or item with a rejection (:func:`reject`): a struct
``{reason, detail}`` whose reason is a :class:`~schemas.quarantine.ReasonCode` (the short
names below), never a plain string, and whose detail is an SQL expression (``quote(...)``
for a constant). The quarantine rows take both as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.quarantine import ReasonCode
from schemas.sql import quote

__all__ = [
    "FORMAT",
    "MAX_BATCH_ITEMS",
    "MAX_EVENT_BYTES",
    "NOT_UTF8",
    "NUMBER_TYPES",
    "PROTOCOL",
    "QUERY_NOT_UTF8",
    "SCALAR_TYPES",
    "SCHEMA",
    "SIZE",
    "Check",
    "first_rejection",
    "json_body_checks",
    "merge_keeping_nulls",
    "not_a",
    "other_keys",
    "reject",
    "too_big_event",
    "too_many_events",
]

FORMAT = ReasonCode.PAYLOAD_FORMAT
"""Not what the protocol carries: not UTF-8, not JSON, bad percent-encoding or base64."""
PROTOCOL = ReasonCode.PROTOCOL_VIOLATION
"""Well-formed but against the protocol: no type, no identity, no events."""
SCHEMA = ReasonCode.SCHEMA_VIOLATION
"""A field of the wrong JSON type or an impossible value."""
SIZE = ReasonCode.SIZE
"""An event or a batch over its limit."""


def reject(code: ReasonCode, detail: str) -> str:
    """SQL: a rejection, the ``{reason, detail}`` struct of a ``q`` / ``hit_q`` column.

    ``detail`` is an SQL expression of the text that says what exactly was wrong.
    """
    return f"{{'reason': {quote(ReasonCode(code).value)}, 'detail': {detail}}}"


MAX_EVENT_BYTES = "$max_event_bytes"
"""SQL: the byte limit of one event (:class:`~ingest.loader.protocols.Limits`), a bound
parameter: a statement that names it gets its value from :func:`run_stages`."""
MAX_BATCH_ITEMS = "$max_batch_items"
"""SQL: the event limit of one batch, a bound parameter like :data:`MAX_EVENT_BYTES`."""

SCALAR_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')"
"""SQL: the JSON types an id may have (a number is taken as its text)."""
NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"
"""SQL: the JSON types of a number."""


def usable_time(ts: str) -> str:
    """SQL: the TIMESTAMPTZ ``ts`` when it falls in years 1 to 9999, else NULL.

    DuckDB reads ``99999-01-01`` or ``0000-01-01`` as times, but no Python ``datetime`` can
    hold them: one such value in the lake breaks every ``fetchall()`` and pandas frame that
    reads its row. A client time outside that range is as good as none (Snowplow's ``dtm`` is
    held to the same range)."""
    return (f"(CASE WHEN {ts} BETWEEN TIMESTAMPTZ '0001-01-01 00:00:00+00' "
            f"AND TIMESTAMPTZ '9999-12-31 23:59:59.999999+00' THEN {ts} END)")


NOT_UTF8 = reject(FORMAT, quote("body is not valid UTF-8"))
"""SQL: the rejection of a body whose bytes are not UTF-8."""
QUERY_NOT_UTF8 = reject(FORMAT, quote("query string is not percent-encoded UTF-8"))
"""SQL: the rejection of a query string that does not decode to UTF-8."""


Check = tuple[str, str]
"""A rejection rule: (SQL condition that is true of a bad hit or event, its :func:`reject`)."""


def first_rejection(checks: Sequence[Check]) -> str:
    """SQL: the rejection of the first check that fails, NULL when none does (the ``q`` of
    an adapter's parsed stage: its rejections, declared as a list in the order they apply)."""
    whens = "\n      ".join(f"WHEN {cond} THEN {rejection}" for cond, rejection in checks)
    return f"CASE\n      {whens}\n    END"


def json_body_checks(text: str, kinds: str, expected: str = "an object",
                     roots: tuple[str, ...] = ("OBJECT",)) -> str:
    """SQL: the ``WHEN ... THEN rejection`` clauses of a JSON body, in order: not UTF-8
    (``text``, the decoded body, is NULL), empty, not JSON (``kinds``, a ``try(json_type(text,
    [...]))`` list whose first path is ``'$'``, is NULL), a root that is not one of ``roots``
    (the detail says what was ``expected``)."""
    root = f"{kinds}[1]"
    wrong_root = (f"{root} <> {quote(roots[0])}" if len(roots) == 1
                  else f"{root} NOT IN ({', '.join(quote(r) for r in roots)})")
    return "\n".join([
        f"WHEN {text} IS NULL THEN {NOT_UTF8}",
        f"WHEN {kinds} IS NULL AND trim({text}) = '' THEN "
        f"{reject(FORMAT, quote('body is empty'))}",
        f"WHEN {kinds} IS NULL THEN {reject(FORMAT, quote('body is not valid JSON'))}",
        f"WHEN {wrong_root} THEN {reject(PROTOCOL, not_a(root, 'body', expected))}",
    ])


def not_a(kind: str, what: str, expected: str = "an object") -> str:
    """SQL: the detail ``<what> is a JSON <kind>, not <expected>`` (``kind`` a JSON type name
    or NULL, which reads as nothing)."""
    return f"{quote(what + ' is a JSON ')} || lower(coalesce({kind}, 'nothing')) || " \
           f"{quote(', not ' + expected)}"


def too_big_event(size: str, what: str = "event") -> str:
    """SQL: the rejection of an event of ``size`` bytes over :data:`MAX_EVENT_BYTES`."""
    return reject(SIZE, f"{quote(what + ' of ')} || {size} || ' bytes exceeds the ' || "
                        f"{MAX_EVENT_BYTES} || '-byte limit'")


def too_many_events(count: str, what: str, unit: str = "event") -> str:
    """SQL: the rejection of a batch (``what``) of ``count`` events over
    :data:`MAX_BATCH_ITEMS`."""
    return reject(SIZE, f"{quote(what + ' of ')} || {count} || {quote(f' {unit}s exceeds the ')}"
                        f" || {MAX_BATCH_ITEMS} || {quote(f'-{unit} limit')}")


_JSON_TOKEN = quote(r'"(?:[^"\\]|\\.)*"|[^"]+')
"""RE2: a JSON text as its tokens: each string (keys too), and the runs of text between
strings (punctuation, numbers, ``true``, ``false``, ``null``)."""


def _tokens(json_text: str, string: str, other: str) -> str:
    """SQL: JSON text ``json_text`` rewritten token by token: ``string`` and ``other`` are SQL
    expressions of ``tok``, a string token (``"..."`` as written) or the text between two."""
    return (f"array_to_string(list_transform(regexp_extract_all({json_text}, {_JSON_TOKEN}), "
            f"lambda tok: CASE WHEN starts_with(tok, '\"') THEN {string} ELSE {other} END), "
            f"'')")


def merge_keeping_nulls(target: str, patch: str) -> str:
    """SQL: JSON object ``patch`` merged over JSON object ``target`` key by key, as
    ``json_merge_patch`` (RFC 7386) merges (objects merged, any other value of ``patch``
    replaces ``target``'s), except that a null is a value like any other: a null of
    ``patch`` replaces and is kept, a null of either stays wherever it is.

    ``json_merge_patch`` reads a null of the patch as "delete this key", and drops the nulls
    of a patch's object that ``target`` lacks: a tracker's ``"coupon": null`` disappeared.
    Here, when either text holds ``null`` at all, every string is marked (``"x"`` becomes
    ``"sx"``) and every null becomes the string ``"n"``, which no marked string can be; the
    patch merges; and the marks are undone. Both must be valid JSON (as DuckDB writes it).
    """
    encoded = [_tokens(x, "'\"s' || substr(tok, 2)", "replace(tok, 'null', '\"n\"')")
               for x in (target, patch)]
    merged = f"json_merge_patch({encoded[0]}, {encoded[1]})"
    decoded = _tokens(merged, "CASE WHEN tok = '\"n\"' THEN 'null' ELSE '\"' || "
                              "substr(tok, 3) END", "tok")
    return (f"(CASE WHEN contains({target}, 'null') OR contains({patch}, 'null') "
            f"THEN json({decoded}) ELSE json_merge_patch({target}, {patch}) END)")


def other_keys(json_text: str, names: Sequence[str]) -> str:
    """SQL: how many top-level keys of the JSON object ``json_text`` are not in ``names`` (a
    look at its keys spares the rows holding no others a merge patch, which copies the
    whole object)."""
    listed = "[" + ", ".join(quote(n) for n in names) + "]"
    return (f"len(list_filter(json_keys({json_text}), "
            f"lambda k: NOT list_contains({listed}, k)))")
