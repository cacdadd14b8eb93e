"""Client IPs inside payloads: the raw body and query, and quarantine payloads.

The raw archive keeps each hit's body, but a sender may have written the client's IP into it
(Segment's ``context.ip`` from a server SDK, Snowplow's ``ip`` parameter). When a tenant's
``ip_mode`` is not ``none``, each such IP is replaced where it occurs verbatim in the
payload by its anonymised form (still valid JSON or query syntax), so replaying the archive
parses the same events with the anonymised IP. Looked for: every IP the hit's events
carried, and the values of ``"ip"`` / ``"$ip"`` / ``"ip_override"`` JSON keys and ``ip=`` /
``uip=`` / ``_uip=`` parameters that are IP addresses (UA's ``ip=`` is an item price).

Set-at-a-time: DuckDB finds the rows whose payload holds such an IP; only those (server-side
hits, rare in browser traffic) are rewritten, in Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ingest.enrich.anonymize_ip import IpAnonymizer, truncate

_LINEAGE = "source_partition, source_offset, source_index"
# "ip" (Segment, RudderStack, Jitsu context), "$ip" (PostHog) and "ip_override" (GA4
# Measurement Protocol) keys; Snowplow's ip=, Universal Analytics' uip= and gtag's _uip=
# parameters. Only values that are IP addresses count: ip= is also UA's item price.
_JSON_IP = r"""'"(?:\$?ip|ip_override)"\s*:\s*"([0-9A-Fa-f:.]{3,45})"'"""
_QUERY_IP = r"""'(?:^|[?&])_?u?ip=([0-9A-Fa-f:.]{3,45})'"""


@lru_cache(maxsize=4096)
def _pattern(ip: str) -> re.Pattern[str]:
    # Not inside a longer address: "1.2.3.4" must not match within "11.2.3.45".
    return re.compile(rf"(?<![0-9A-Za-z.:]){re.escape(ip)}(?![0-9A-Za-z.:])")


def _replace(text: str, ips: Sequence[str], anonymizer: IpAnonymizer, tenant: str) -> str:
    for ip in sorted(ips, key=len, reverse=True):
        text = _pattern(ip).sub(anonymizer.anonymize(tenant, ip) or "", text)
    return text


def scrub_payloads(con: duckdb.DuckDBPyConnection, anonymizer: IpAnonymizer, table: pa.Table,
                   events: pa.Table, raw: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``table`` (raw or quarantine rows) with client IPs anonymised in ``columns``.

    The IPs looked for in a row are those the events of its hit carried (``events``: the
    batch's parsed events before anonymisation; an event IP equal to its hit's connection
    IP in ``raw`` counts only when the event also sent it in ``context``), and the values of
    ``"ip"`` / ``"$ip"`` / ``"ip_override"`` JSON keys and ``ip=`` / ``uip=`` / ``_uip=``
    parameters in the row's own text (a hit whose events were all quarantined), when they
    are IP addresses.
    """
    if anonymizer.keeps_everything or table.num_rows == 0:
        return table
    numbered = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    con.register("scrub_events", events)
    con.register("scrub_raw", raw)
    con.register("scrub_in", numbered)
    # A BLOB cast to VARCHAR escapes quotes ("\x22"): decode UTF-8 instead where it is valid.
    text = "concat_ws(chr(10), " + ", ".join(
        f"coalesce(try(decode({c})), CAST({c} AS VARCHAR))"
        if pa.types.is_binary(table.schema.field(c).type) else c for c in columns) + ")"
    # One scan of the payloads: the text is made and searched within a single projection,
    # never stored (a CTE read three times would copy every body). The IPs the events
    # carried are only those of the rows being scrubbed (quarantine rows are few).
    try:
        found = con.sql(f"""
            WITH carried AS (
                SELECT e.{_LINEAGE.replace(", ", ", e.")}, e.ip AS v
                FROM scrub_events e SEMI JOIN scrub_in USING ({_LINEAGE})
                LEFT JOIN scrub_raw r USING ({_LINEAGE})
                WHERE e.ip IS NOT NULL AND e.ip IS DISTINCT FROM r.ip
                UNION
                SELECT {_LINEAGE}, json_extract_string(context, '$.ip')
                FROM scrub_events SEMI JOIN scrub_in USING ({_LINEAGE})
                WHERE contains(context, '"ip"')
            ), lists AS (
                SELECT {_LINEAGE}, list(v) AS vs FROM carried GROUP BY ALL
            ), c AS (
                SELECT _row, tenant, list_concat(
                    list_filter(coalesce(k.vs, []), lambda x: contains(txt, x)),
                    CASE WHEN contains(txt, 'ip"') OR contains(txt, 'ip_override"')
                         THEN regexp_extract_all(txt, {_JSON_IP}, 1) END,
                    CASE WHEN contains(txt, 'ip=')
                         THEN regexp_extract_all(txt, {_QUERY_IP}, 1) END) AS vs
                FROM (SELECT _row, tenant, {_LINEAGE}, {text} AS txt FROM scrub_in) s
                LEFT JOIN lists k USING ({_LINEAGE})
            )
            SELECT _row, any_value(tenant) AS tenant, list(DISTINCT v) AS ips
            FROM (SELECT _row, tenant, unnest(vs) AS v FROM c WHERE len(vs) > 0)
            WHERE regexp_full_match(v, '[0-9A-Fa-f:.]{{3,45}}')
            GROUP BY _row ORDER BY _row""").to_arrow_table()
    finally:
        for name in ("scrub_events", "scrub_raw", "scrub_in"):
            con.unregister(name)
    if found.num_rows == 0:
        return table
    rows = found["_row"].to_pylist()
    tenants = found["tenant"].to_pylist()
    ips = found["ips"].to_pylist()
    mask = pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=found["_row"])
    # The text matched may be no address (UA's ip= is an item price, "12.50"): replacing
    # it would rewrite every such number of the payload.
    ips = [[ip for ip in row_ips if truncate(ip) is not None] for row_ips in ips]
    for column in columns:
        values = table[column].take(pa.array(rows)).to_pylist()
        fixed: list[str | bytes | None] = []
        for value, tenant, row_ips in zip(values, tenants, ips, strict=True):
            if isinstance(value, bytes):
                text = value.decode("utf-8", "surrogateescape")
                fixed.append(_replace(text, row_ips, anonymizer, tenant)
                             .encode("utf-8", "surrogateescape"))
            elif isinstance(value, str):
                fixed.append(_replace(value, row_ips, anonymizer, tenant))
            else:
                fixed.append(value)
        index = table.schema.get_field_index(column)
        replaced = pc.replace_with_mask(table[column].combine_chunks(), mask,
                                        pa.array(fixed, table.schema.field(column).type))
        table = table.set_column(index, table.schema.field(column), replaced)
    return table
