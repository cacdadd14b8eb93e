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


def action_case(name_expr: str, table: Mapping[str, str]) -> str:
    """SQL CASE mapping ``lower(name_expr)`` through ``table``; NULL for other names."""
    whens = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in table.items())
    return f"(CASE lower({name_expr}) {whens} END)"
