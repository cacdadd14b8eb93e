"""The schema models are the one source of truth: Arrow schemas, docs and envelopes agree."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.columns import docs_table, json_columns
from schemas.envelope import EnvelopeError, encode_bundle, encode_frame, iter_frames
from schemas.event import EVENT_SCHEMA, CanonicalEvent
from schemas.lake import (
    ROW_SCHEMAS,
    TABLES,
    delta_schema,
    file_schema,
    parse_partition,
    partition_path,
)
from schemas.quarantine import QUARANTINE_SCHEMA, ReasonCode
from schemas.raw import RAW_SCHEMA
from tests.support import ROOT

DESIGN_COLUMNS = (
    "tenant event_id event_name event_type protocol client_ts sent_ts received_at derived_ts "
    "anonymous_id user_id session_id session_index page_url page_host page_path page_title "
    "referrer utm_source utm_medium utm_campaign utm_term utm_content user_agent is_bot screen "
    "viewport language timezone geo_country geo_region geo_city ip product_id product_action "
    "price currency quantity search_query properties context"
).split()


def test_event_schema_has_every_column_design_md_promises() -> None:
    assert set(DESIGN_COLUMNS) <= set(EVENT_SCHEMA.names)


def test_arrow_types_follow_the_model() -> None:
    assert EVENT_SCHEMA.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert not EVENT_SCHEMA.field("received_at").nullable
    assert EVENT_SCHEMA.field("client_ts").nullable
    assert EVENT_SCHEMA.field("session_index").type == pa.int32()
    assert EVENT_SCHEMA.field("price").type == pa.float64()
    assert EVENT_SCHEMA.field("is_bot").type == pa.bool_()
    assert set(json_columns(CanonicalEvent)) == {"properties", "traits", "context", "extra"}
    assert EVENT_SCHEMA.field("items").type == pa.list_(pa.struct([
        ("product_id", pa.string()), ("name", pa.string()), ("category", pa.string()),
        ("brand", pa.string()), ("variant", pa.string()), ("price", pa.float64()),
        ("quantity", pa.float64()), ("currency", pa.string())]))
    assert QUARANTINE_SCHEMA.field("payload").type == pa.binary()
    assert RAW_SCHEMA.field("body").type == pa.binary()
    assert set(ReasonCode) >= {ReasonCode.PAYLOAD_FORMAT, ReasonCode.SIZE}


@pytest.mark.parametrize("schema", [EVENT_SCHEMA, QUARANTINE_SCHEMA, RAW_SCHEMA])
def test_every_column_is_described(schema: pa.Schema) -> None:
    for f in schema:
        assert f.metadata and f.metadata[b"description"], f.name


def test_docs_lake_md_is_generated_from_the_models() -> None:
    """docs/lake.md embeds the generated tables; regenerate with `python -m schemas.docs`."""
    text = (ROOT / "docs" / "lake.md").read_text()
    assert docs_table(CanonicalEvent) in text


@given(st.lists(st.tuples(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                          st.binary(max_size=200)), min_size=1, max_size=10))
def test_bundle_round_trip(items: list[tuple[dict[str, str], bytes]]) -> None:
    bundle = encode_bundle([encode_frame(dict(h), body) for h, body in items])
    decoded = list(iter_frames(bundle))
    assert [body for _, body in decoded] == [body for _, body in items]


@pytest.mark.parametrize("value", [b"", b"garbage", b"DNB\x01\x00\x00\x00\x10{}",
                                   encode_bundle([encode_frame({}, b"abc")])[:-1]])
def test_corrupt_bundles_raise(value: bytes) -> None:
    with pytest.raises(EnvelopeError):
        list(iter_frames(value))


def test_partition_paths_round_trip() -> None:
    path = partition_path("acme", dt.date(2026, 12, 1)) + "/c-1-ab.parquet"
    assert parse_partition(path) == ("acme", dt.date(2026, 12, 1))
    assert parse_partition("_delta_log/00000000000000000001.json") is None


def test_delta_schema_is_the_row_schema_plus_the_date_partition() -> None:
    for table in TABLES:
        schema = delta_schema(table)
        assert schema.names == [*ROW_SCHEMAS[table].names, "date"]
        assert "tenant" not in file_schema(table).names
