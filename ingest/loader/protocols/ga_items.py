"""E-commerce items of Google Analytics hits -> JSON lists of item objects -> ``items``.

GA4 sends an item as one parameter, ``pr1=idSKU_1~nmShoe~pr10.5~qt2~k0size~v042``:
two-letter field codes with their values, and custom item parameters as ``k<N>`` (name)
/ ``v<N>`` (value) pairs. Universal Analytics spreads it over parameters
(``pr1id=SKU_1&pr1nm=Shoe``). Both arrive here as one row per field, ``(ev, n, pos, code,
value)``: event key, item number, position, field code, decoded value. Only events with
items get here, so a few set-at-a-time aggregations are cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ingest.loader.protocols.ecommerce import item_list
from ingest.loader.protocols.urlencoded import number_json
from schemas.sql import quote

GA4_ITEM_FIELDS: Mapping[str, str] = {
    "id": "item_id", "nm": "item_name", "br": "item_brand", "ca": "item_category",
    "c2": "item_category2", "c3": "item_category3", "c4": "item_category4",
    "c5": "item_category5", "va": "item_variant", "pr": "price", "qt": "quantity",
    "cp": "coupon", "ds": "discount", "ln": "item_list_name", "li": "item_list_id",
    "lp": "index", "af": "affiliation", "lo": "location_id", "cn": "creative_name",
    "cs": "creative_slot", "pi": "promotion_id", "pn": "promotion_name",
}
"""GA4 item field codes -> the item keys of gtag's ``items`` (as a site passes them)."""
GA4_ITEM_NUMBERS = ("pr", "qt", "ds", "lp")

UA_ITEM_FIELDS: Mapping[str, str] = {
    "id": "id", "nm": "name", "br": "brand", "ca": "category", "va": "variant",
    "pr": "price", "qt": "quantity", "cc": "coupon", "ps": "position",
}
"""Universal Analytics product codes (``pr<N><code>``) -> analytics.js ``ec:addProduct`` keys."""
UA_ITEM_NUMBERS = ("pr", "qt", "ps")

GA4_CANONICAL: Mapping[str, str] = {
    "product_id": "item_id", "name": "item_name", "category": "item_category",
    "brand": "item_brand", "variant": "item_variant", "price": "price",
    "quantity": "quantity", "currency": "currency",
}
"""Item fields of the ``items`` column -> GA4's item keys (gtag and Measurement Protocol)."""
UA_CANONICAL: Mapping[str, str] = {
    "product_id": "id", "name": "name", "category": "category", "brand": "brand",
    "variant": "variant", "price": "price", "quantity": "quantity",
}
"""Item fields of the ``items`` column -> analytics.js product keys (UA has no item currency)."""


def items_sql(parts: str, names: Mapping[str, str], numbers: Iterable[str],
              custom_pairs: bool) -> str:
    """SQL selecting ``(ev, items)``: per event, a JSON list of item objects ordered by ``n``.

    Codes are renamed through ``names`` (others keep their code); ``numbers`` codes become
    JSON numbers when numeric. With ``custom_pairs`` (GA4) a ``k<N>``/``v<N>`` pair becomes
    one key; an unpaired one keeps its code. Repeated fields keep their first value.
    """
    rename = "CASE code " + " ".join(
        f"WHEN {quote(c)} THEN {quote(n)}" for c, n in names.items()) + " ELSE code END"
    number_codes = ", ".join(quote(c) for c in numbers)
    value = (f"CASE WHEN code IN ({number_codes}) THEN coalesce({number_json('value')}, "
             f"to_json(value)) ELSE to_json(value) END")
    pair = "regexp_full_match(code, '[kv][0-9]')"
    fields = f"SELECT ev, n, pos, {rename} AS name, {value} AS val FROM {parts}"
    if custom_pairs:
        fields += f"""
      WHERE NOT {pair}
    UNION ALL
    SELECT k.ev, k.n, k.pos, k.value, to_json(v.value)
    FROM {parts} k JOIN {parts} v
      ON k.ev = v.ev AND k.n = v.n AND v.code = 'v' || k.code[2:]
    WHERE regexp_full_match(k.code, 'k[0-9]') AND k.value <> ''
    UNION ALL
    SELECT p.ev, p.n, p.pos, p.code, to_json(p.value) FROM {parts} p
    WHERE regexp_full_match(p.code, '[kv][0-9]') AND NOT EXISTS (
      SELECT 1 FROM {parts} o WHERE o.ev = p.ev AND o.n = p.n
        AND o.code = CASE WHEN p.code[1] = 'k' THEN 'v' ELSE 'k' END || p.code[2:]
        AND CASE WHEN p.code[1] = 'k' THEN p.value ELSE o.value END <> '')"""
    return f"""
SELECT ev, ('[' || string_agg(obj, ',' ORDER BY n) || ']')::JSON AS items
FROM (
  SELECT ev, n, '{{' || string_agg(to_json(name) || ':' || val, ',' ORDER BY name) || '}}' AS obj
  FROM (SELECT ev, n, name, arg_min(val, pos) AS val FROM ({fields}) GROUP BY ev, n, name)
  GROUP BY ev, n
)
GROUP BY ev"""


def canonical_items(items: str, keys: Mapping[str, str], currency: str) -> str:
    """SQL: the ``items`` column (a list of item structs) from a JSON list of item objects
    whose keys ``keys`` names; an item without a currency takes ``currency``."""
    spec = "[{" + ", ".join(f'"{k}": "VARCHAR"' for k in keys.values()) + "}]"
    fields = {name: f"i_.{key}" for name, key in keys.items()}
    for number in ("price", "quantity"):
        fields[number] = f"try_cast(i_.{keys[number]} AS DOUBLE)"
    listed = f"json_transform({items}, {quote(spec)})"
    return f"CASE WHEN {items} IS NOT NULL THEN {item_list(listed, 'i_', fields, currency)} END"
