"""Column markers that turn pydantic field annotations into Arrow types.

The models in schemas/ are the one source of truth for the lake's tables; this module
derives their Arrow schemas (and the docs table) from the annotations, so a column is
declared exactly once.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass

import pyarrow as pa
from pydantic import BaseModel


@dataclass(frozen=True)
class ArrowType:
    """Annotate a field with an explicit Arrow type, e.g. ``Annotated[str | None, JSON_TEXT]``."""

    type: pa.DataType
    kind: str


JSON_TEXT = ArrowType(pa.string(), "json")
"""A string column holding a JSON document (objects kept whole, nothing dropped)."""
INT32 = ArrowType(pa.int32(), "int32")
BINARY = ArrowType(pa.binary(), "binary")

TIMESTAMP = pa.timestamp("us", tz="UTC")

_PY_TO_ARROW: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
    dt.datetime: TIMESTAMP,
    dt.date: pa.date32(),
}


def _arrow_type(annotation: object, metadata: list[object]) -> tuple[pa.DataType, bool]:
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unsupported union column type {annotation!r}")
        annotation = args[0]
    for m in metadata:
        if isinstance(m, ArrowType):
            return m.type, nullable
    if typing.get_origin(annotation) is list:
        (element,) = typing.get_args(annotation)
        return pa.list_(_arrow_type(element, [])[0]), nullable
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([f.remove_metadata() for f in arrow_schema(annotation)]), nullable
    if not isinstance(annotation, type) or annotation not in _PY_TO_ARROW:
        raise TypeError(f"no Arrow type for column annotation {annotation!r}")
    return _PY_TO_ARROW[annotation], nullable


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of a table model: one column per field, in declaration order."""
    fields = []
    for name, info in model.model_fields.items():
        arrow, nullable = _arrow_type(info.annotation, list(info.metadata))
        meta = {b"description": (info.description or "").encode()}
        fields.append(pa.field(name, arrow, nullable=nullable, metadata=meta))
    return pa.schema(fields)


def json_columns(model: type[BaseModel]) -> list[str]:
    """Names of the columns that hold JSON text."""
    return [
        name
        for name, info in model.model_fields.items()
        if any(m is JSON_TEXT for m in info.metadata)
    ]


def docs_table(model: type[BaseModel]) -> str:
    """A Markdown table of the model's columns (name, type, null, description) for docs/."""
    schema = arrow_schema(model)
    json_cols = set(json_columns(model))
    rows = ["| column | type | nullable | description |", "| --- | --- | --- | --- |"]
    for f in schema:
        kind = ("json (string)" if f.name in json_cols
                else f"`{type_name(f.type)}`" if pa.types.is_nested(f.type) else str(f.type))
        desc = (f.metadata or {}).get(b"description", b"").decode()
        rows.append(f"| `{f.name}` | {kind} | {'yes' if f.nullable else 'no'} | {desc} |")
    return "\n".join(rows)


_SQL_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.binary(): "BLOB",
    TIMESTAMP: "TIMESTAMPTZ",
    pa.date32(): "DATE",
}


def sql_type(arrow: pa.DataType) -> str:
    """The SQL (DuckDB) type name of an Arrow column type used in the lake, nested ones
    included (``STRUCT(product_id VARCHAR, ...)[]`` for a list of structs)."""
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return f"{sql_type(arrow.value_type)}[]"
    if pa.types.is_struct(arrow):
        fields = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in arrow)
        return f"STRUCT({fields})"
    return _SQL_TYPES[arrow]


def type_name(arrow: pa.DataType) -> str:
    """A short readable name of a column type for the docs: ``list<struct<id string, ...>>``."""
    if pa.types.is_list(arrow):
        return f"list<{type_name(arrow.value_type)}>"
    if pa.types.is_struct(arrow):
        return "struct<" + ", ".join(f"{f.name} {type_name(f.type)}" for f in arrow) + ">"
    return str(arrow)
