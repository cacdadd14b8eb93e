"""How a column is written in each export format, when its type cannot be written as is.

DuckDB hands every split to the writers as Arrow; some DuckDB types have no form in a
format (pyarrow writes no INTERVAL or UNION to Parquet, no BLOB, BIT or BIGNUM to CSV) and
JSON has no NaN or infinity. The split's SQL converts those columns (set-at-a-time, in
DuckDB), always the same way:

- INTERVAL: DuckDB's text (``1 month 2 days 00:00:03.5``) in every format;
- BLOB: base64 text in CSV and JSON Lines (Parquet keeps the bytes);
- BIT and BIGNUM (VARINT): text (``0101``, the decimal digits) in CSV; JSON Lines writes a
  BIT as its text and a BIGNUM as a number, Parquet keeps them as bytes;
- UNION: JSON text in Parquet and CSV;
- lists, structs and maps: JSON text in CSV;
- a NaN or infinite FLOAT or DOUBLE, at any depth (in a list, struct or map too): null in
  JSON Lines and in the JSON text of a CSV cell (JSON has neither); Parquet and CSV keep
  top-level ones as they are.

Anything else the writers refuse (e.g. an INTERVAL inside a list, for Parquet) stops the
export with an error naming the column and its type (run.py).
"""

from __future__ import annotations

from duckdb.sqltypes import DuckDBPyType

from analytics.export.spec import ExportFormat
from analytics.output import is_nested
from schemas.sql import quote_ident

_FLOATS = ("float", "double")


def _children(kind: DuckDBPyType) -> list[tuple[str, DuckDBPyType]]:
    """(name, type) of a nested type's members (an array's size left out)."""
    if kind.id not in ("list", "array", "struct", "map", "union"):
        return []
    return [(name, child) for name, child in kind.children
            if isinstance(child, DuckDBPyType)]


def _has_float(kind: DuckDBPyType) -> bool:
    return kind.id in _FLOATS or any(_has_float(child) for _, child in _children(kind))


def finite(expr: str, kind: DuckDBPyType, depth: int = 0) -> str:
    """SQL: ``expr`` (of type ``kind``) with every NaN or infinite float in it as NULL.

    Lists and arrays become lists (JSON writes both alike); a union is left as it is."""
    if not _has_float(kind):
        return expr
    if kind.id in _FLOATS:
        return f"CASE WHEN isfinite({expr}) THEN {expr} END"
    var = f"v{depth}"
    if kind.id in ("list", "array"):
        child = _children(kind)[0][1]
        return f"list_transform({expr}, lambda {var}: {finite(var, child, depth + 1)})"
    if kind.id == "map":
        value = _children(kind)[1][1]
        entry = finite(f"{var}.value", value, depth + 1)
        return (f"map_from_entries(list_transform(map_entries({expr}), lambda {var}: "
                f"{{'key': {var}.key, 'value': {entry}}}))")
    if kind.id == "struct":
        fields = ", ".join(
            f"{quote_ident(name)} := {finite(f'({expr}).{quote_ident(name)}', child, depth)}"
            for name, child in _children(kind))
        return f"CASE WHEN {expr} IS NOT NULL THEN struct_pack({fields}) END"
    return expr


def _json_text(expr: str, kind: DuckDBPyType) -> str:
    return f"to_json({finite(expr, kind)})::VARCHAR"


def written_as(name: str, kind: DuckDBPyType, fmt: ExportFormat | None) -> str | None:
    """SQL for column ``name`` as ``fmt`` writes it (None: Arrow tables, the same as
    Parquet), or None when the column is written as it is."""
    col = quote_ident(name)
    type_name = str(kind)
    if kind.id == "interval":
        return f"{col}::VARCHAR"
    if fmt in (None, "parquet"):
        return _json_text(col, kind) if kind.id == "union" else None
    if fmt == "csv":
        if kind.id == "blob":
            return f"to_base64({col})"
        if kind.id in ("bit", "bignum", "varint"):
            return f"{col}::VARCHAR"
        return _json_text(col, kind) if is_nested(type_name) or kind.id == "union" else None
    if fmt == "jsonl":
        if kind.id == "blob":
            return f"to_base64({col})"
        return finite(col, kind) if _has_float(kind) else None
    return None
