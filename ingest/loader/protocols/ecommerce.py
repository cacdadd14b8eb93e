"""E-commerce of each spec -> the canonical ``product_action`` and ``items``.

Every adapter builds ``items`` with :func:`item_list` (a list of structs of the one
element type, :class:`schemas.event.Item`), then takes the product columns of an event
that carries exactly one item from :func:`only_item`: the same product view, add to cart
or order gives the same row whatever the tracker.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.columns import sql_type
from schemas.event import EVENT_SCHEMA
from schemas.sql import quote

ITEM_TYPE = EVENT_SCHEMA.field("items").type.value_type
"""Arrow struct type of one element of ``items``."""
ITEM_FIELDS: tuple[str, ...] = tuple(f.name for f in ITEM_TYPE)
"""Fields of an item, in column order: product_id, name, category, brand, variant, price,
quantity, currency."""
_ITEM_SQL_TYPES = {f.name: sql_type(f.type) for f in ITEM_TYPE}

SEGMENT_ACTIONS: Mapping[str, str] = {
    "product list viewed": "list_view",
    "product list filtered": "list_view",
    "product clicked": "click",
    "product viewed": "view",
    "product added": "add",
    "product removed": "remove",
    "checkout started": "checkout",
    "order completed": "purchase",
    "order refunded": "refund",
    "products searched": "search",
}
"""Segment e-commerce spec v2 event names (case-insensitive), also used by RudderStack."""

SNOWPLOW_ACTIONS: Mapping[str, str] = {
    "list_view": "list_view",
    "list_click": "click",
    "product_view": "view",
    "add_to_cart": "add",
    "remove_from_cart": "remove",
    "checkout_step": "checkout",
    "transaction": "purchase",
    "refund": "refund",
}
"""``type`` of Snowplow's snowplow_ecommerce_action event (browser-plugin-snowplow-ecommerce)."""

GA4_ACTIONS: Mapping[str, str] = {
    "view_item_list": "list_view",
    "select_item": "click",
    "view_item": "view",
    "add_to_cart": "add",
    "remove_from_cart": "remove",
    "begin_checkout": "checkout",
    "purchase": "purchase",
    "refund": "refund",
    "search": "search",
    "view_search_results": "search",
}
"""GA4 recommended e-commerce event names (gtag ``en``, Measurement Protocol ``name``)."""

UA_ACTIONS: Mapping[str, str] = {
    "detail": "view",
    "click": "click",
    "add": "add",
    "remove": "remove",
    "checkout": "checkout",
    "checkout_option": "checkout",
    "purchase": "purchase",
    "refund": "refund",
}
"""Universal Analytics enhanced e-commerce product actions (``pa``)."""


def item_struct(fields: Mapping[str, str], currency: str = "NULL") -> str:
    """SQL: one item (a struct of :data:`ITEM_FIELDS`, typed) from SQL expressions per field;
    NULL for fields not given. An item without a currency takes ``currency`` (the event's)."""
    unknown = set(fields) - set(ITEM_FIELDS)
    if unknown:
        raise KeyError(f"not fields of an item: {sorted(unknown)}")
    exprs = dict(fields)
    exprs["currency"] = f"coalesce({exprs.get('currency', 'NULL')}, {currency})"
    return "{" + ", ".join(f"{quote(name)}: CAST({exprs.get(name, 'NULL')} AS {kind})"
                           for name, kind in _ITEM_SQL_TYPES.items()) + "}"


def item_list(elements: str, var: str, fields: Mapping[str, str], currency: str = "NULL") -> str:
    """SQL: the ``items`` column from the SQL list ``elements``: each element, named ``var``
    in ``fields``' expressions, becomes an :func:`item_struct`. NULL for no (or no) elements.
    An element with no item field but its currency is no item: a ``null`` (``JSON.stringify``
    writes an ``undefined`` product so), a string, a number or ``{}`` where a product object
    belongs; a one-product order with such a stray element stays a one-product order (the
    element stays in ``properties``)."""
    # The items are built once, then kept when one of their fields (but the currency, which
    # the event's fills) is set.
    some = " OR ".join(f"i_.{name} IS NOT NULL" for name in ITEM_FIELDS if name != "currency")
    items = (f"list_filter(list_transform({elements}, lambda {var}: "
             f"{item_struct(fields, currency)}), lambda i_: {some})")
    return f"CASE WHEN len({elements}) > 0 THEN nullif({items}, []) END"  # most have none


def only_item(items: str) -> str:
    """SQL: the one item of an ``items`` list, NULL unless it holds exactly one (then the
    event is about that product and its product columns come from it)."""
    return f"CASE WHEN len({items}) = 1 THEN {items}[1] END"


SEGMENT_PRODUCT = {"product_id": "VARCHAR", "sku": "VARCHAR", "id": "VARCHAR",
                   "name": "VARCHAR", "category": "VARCHAR", "brand": "VARCHAR",
                   "variant": "VARCHAR", "price": "DOUBLE", "quantity": "DOUBLE",
                   "currency": "VARCHAR"}
"""json_transform spec of a product of the Segment e-commerce spec (also PostHog's)."""


def segment_items(props: str, action: str) -> str:
    """SQL: ``items`` of a Segment-spec event whose properties struct is ``props`` (read with
    :data:`SEGMENT_PRODUCT` fields and ``products``): its ``products``, else, for an
    e-commerce event (``action`` not NULL) about one product, that product."""
    def fields(x: str) -> dict[str, str]:
        return {"product_id": f"coalesce({x}.product_id, {x}.sku, {x}.id)",
                "name": f"{x}.name", "category": f"{x}.category", "brand": f"{x}.brand",
                "variant": f"{x}.variant", "price": f"{x}.price",
                "quantity": f"{x}.quantity", "currency": f"{x}.currency"}

    one = (f"CASE WHEN {action} IS NOT NULL AND coalesce({props}.product_id, {props}.sku, "
           f"{props}.id) IS NOT NULL THEN [{item_struct(fields(props))}] END")
    listed = item_list(f"{props}.products", "x_", fields("x_"), f"{props}.currency")
    return f"coalesce({listed}, {one})"


def action_case(name_expr: str, table: Mapping[str, str]) -> str:
    """SQL CASE mapping ``lower(name_expr)`` through ``table``; NULL for other names."""
    whens = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in table.items())
    return f"(CASE lower({name_expr}) {whens} END)"


def product_columns(items: str, action: str, currency: str | None = None,
                    props: str | None = None, one: str = "one") -> dict[str, str]:
    """SQL of the canonical e-commerce columns of an event, the same for every protocol.

    ``items`` is its ``items`` list and ``one`` its :func:`only_item`, where the product
    columns come from; ``action`` its ``product_action``; ``currency`` the event's own
    currency, which wins over the item's. With ``props`` (a properties struct read with
    :data:`SEGMENT_PRODUCT` and ``order_id``, ``revenue``, ``total``: the Segment e-commerce
    spec, also PostHog's), the event's own product fields win, and the order is its own.
    """
    def column(item_field: str, *own: str) -> str:
        mine = [f"{props}.{f}" for f in own] if props else []
        return f"coalesce({', '.join([*mine, f'{one}.{item_field}'])})" if mine else \
            f"{one}.{item_field}"

    return {
        "product_id": column("product_id", "product_id", "sku", "id"),
        "product_name": column("name", "name"),
        "product_category": column("category", "category"),
        "product_action": action,
        "price": column("price", "price"),
        "quantity": column("quantity", "quantity"),
        "currency": (f"coalesce({currency}, {one}.currency)" if currency
                     else column("currency", "currency")),
        "items": items,
        **({"order_id": f"{props}.order_id", "revenue": f"coalesce({props}.revenue, {props}.total)"}
           if props else {}),
    }
