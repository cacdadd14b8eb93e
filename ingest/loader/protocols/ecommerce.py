"""E-commerce event names of each spec -> the canonical ``product_action``."""

from __future__ import annotations

from collections.abc import Mapping

from ingest.loader.sql import quote

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


def items_json(products: str) -> str:
    """SQL: JSON list of normalised items from a list of product structs (Segment spec
    fields product_id | sku | id, name, category, price, quantity)."""
    return (f"CASE WHEN {products} IS NOT NULL THEN to_json(list_transform({products}, "
            "lambda x: {'product_id': coalesce(x.product_id, x.sku, x.id), 'name': x.name, "
            "'category': x.category, 'price': x.price, 'quantity': x.quantity})) END")


def action_case(name_expr: str, table: Mapping[str, str]) -> str:
    """SQL CASE mapping ``lower(name_expr)`` through ``table``; NULL for other names."""
    whens = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in table.items())
    return f"(CASE lower({name_expr}) {whens} END)"
