"""export on a real lake: recipes, leak-free splits, manifests, byte-identical reproduction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from analytics.errors import TenantScopeError
from analytics.export import (
    ExportSpec,
    export_tables,
    export_to_dir,
    reproduce_from_manifest,
    tables_from_manifest,
)
from analytics.export.errors import (
    ExportError,
    ExportSpecError,
    InputChangedError,
    NotReproducedError,
)
from analytics.export.manifest import read_manifest
from driftnet.cli import main
from schemas.version import PIPELINE_VERSION
from tests.analytics.lakes import at, event, write_events

T1 = at(60)    # train_end
T2 = at(120)   # valid_end


def _view(s: str, minute: float, item: str, **kw: Any) -> dict[str, Any]:
    return event(minute=minute, session_id=s, product_id=item, product_action="view", **kw)


def _rows() -> list[dict[str, Any]]:
    return [
        # train session that runs past T1: its events after T1 must not be read
        _view("s1", 0, "i1", ua_device="mobile"),
        event(minute=1, session_id="s1", event_type="page", event_name="page_view"),
        _view("s1", 2, "i2"),
        event(minute=3, session_id="s1", event_name="Product Added", product_id="i2",
              product_action="add"),
        _view("s1", 61, "LATE"),
        event(minute=62, session_id="s1", event_name="Order Completed",
              product_action="purchase", items=[{"product_id": "i2"}]),
        # train session that buys before T1: a multi-item order, then nothing
        _view("s2", 10, "i3", anonymous_id="a2"),
        event(minute=11, session_id="s2", anonymous_id="a2", event_name="Order Completed",
              product_action="purchase", order_id="o2",
              items=[{"product_id": "i3"}, {"product_id": "i4"}]),
        # valid session
        _view("s3", 70, "i5", anonymous_id="a3"),
        # test session, no session id: inferred by inactivity
        _view(None, 130, "i6", anonymous_id="a4"),  # type: ignore[arg-type]
        _view(None, 131, "i7", anonymous_id="a4"),  # type: ignore[arg-type]
    ]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    write_events(root, _rows())
    write_events(root, [event("globex", minute=5, session_id="g", product_id="secret",
                              product_action="view")])
    return root


def _spec(recipe: str = "sessions", **kw: Any) -> ExportSpec:
    return ExportSpec(tenant="acme", recipe=recipe, train_end=T1, valid_end=T2, **kw)  # type: ignore[arg-type]


def test_sessions_recipe_splits_by_session_start_without_leakage(lake: Path) -> None:
    splits = export_tables(lake, _spec())
    assert list(splits) == ["train", "valid", "test"]
    train = {r["session_id"]: r for r in splits["train"].to_pylist()}
    assert train["s1"]["items"] == ["i1", "i2", "i2"]          # LATE and the purchase cut
    assert train["s1"]["actions"] == ["view", "view", "add"]
    assert train["s1"]["timestamps"] == [at(0), at(2), at(3)]
    assert train["s2"]["items"] == ["i3", "i3", "i4"]          # order items in their order
    assert train["s2"]["actions"] == ["view", "purchase", "purchase"]
    assert train["s2"]["anonymous_id"] == "a2" and train["s2"]["length"] == 3
    assert [r["session_id"] for r in splits["valid"].to_pylist()] == ["s3"]
    (test,) = splits["test"].to_pylist()
    assert test["items"] == ["i6", "i7"] and test["session_id"].startswith("gap30:a:a4:")
    everything = json.dumps([t.to_pylist() for t in splits.values()], default=str)
    assert "secret" not in everything and "LATE" not in json.dumps(
        splits["train"].to_pylist(), default=str)


def test_intent_recipe_labels_prefixes_before_the_purchase(lake: Path) -> None:
    rows = export_tables(lake, _spec("intent"))["train"].to_pylist()
    by = {(r["session_id"], r["prefix_length"]): r for r in rows}
    # s1 purchases only after T1: within train it never purchased
    assert [by[("s1", k)]["purchased"] for k in (1, 2, 3)] == [False] * 3
    assert ("s1", 5) not in by and ("s1", 4) in by   # 4 events before T1
    assert by[("s1", 3)]["actions"] == ["view", "page_view", "view"]
    assert by[("s1", 4)]["adds"] == 1 and by[("s1", 4)]["views"] == 2
    assert by[("s1", 1)]["device"] == "mobile"
    # s2: one browsing event, then the purchase (never part of a prefix)
    assert [k for (s, k) in by if s == "s2"] == [1]
    assert by[("s2", 1)]["purchased"] is True and by[("s2", 1)]["actions"] == ["view"]
    assert [(r["session_id"], r["prefix_length"]) for r in rows] == sorted(
        by, key=lambda key: (by[key]["start"], key[0], key[1]))
    capped = export_tables(lake, _spec("intent", max_prefix=2))["train"].to_pylist()
    assert max(r["prefix_length"] for r in capped) == 2


def test_intent_prefix_carries_ids_campaign_searches_and_cart_value(tmp_path: Path) -> None:
    s = {"session_id": "s", "anonymous_id": "d1"}
    write_events(tmp_path, [
        event(minute=0, event_type="page", event_name="page_view", page_path="/", session_index=3,
              referrer_class="email", utm_source="news", utm_medium="email",
              utm_campaign="june", **s),
        event(minute=1, event_name="Products Searched", product_action="search",
              search_query="shoes", **s),
        event(minute=2, event_name="Product Added", product_action="add", product_id="p1",
              price=10.0, quantity=2, **s),
        event(minute=3, event_name="Signed In", user_id="u1", **s),
        event(minute=4, event_name="Product Removed", product_action="remove", product_id="p1",
              price=10.0, quantity=1, utm_source="later", **s),
        event(minute=5, event_name="Order Completed", product_action="purchase", **s),
    ])
    rows = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent"))["all"]
    by = {r["prefix_length"]: r for r in rows.to_pylist()}
    assert [by[k]["cart_value"] for k in (1, 2, 3, 4, 5)] == [0, 0, 20, 20, 10]
    assert [by[k]["searches"] for k in (1, 2, 5)] == [0, 1, 1]
    assert [by[k]["user_id"] for k in (3, 4)] == [None, "u1"]   # known only from step 4
    assert {by[k]["stitched_user_id"] for k in by} == {"u1"}
    assert {(by[k]["anonymous_id"], by[k]["session_index"]) for k in by} == {("d1", 3)}
    assert (by[1]["utm_source"], by[1]["utm_medium"], by[1]["utm_campaign"],
            by[1]["referrer_class"], by[1]["landing_path"]) == ("news", "email", "june",
                                                               "email", "/")
    types = {f.name: str(f.type) for f in rows.schema}
    assert types["searches"] == "int64" and types["cart_value"] == "double"


def test_intent_context_is_what_the_splits_own_steps_show(tmp_path: Path) -> None:
    """Landing and context come from the steps a split reads: a page view or a context
    value first seen after the split's end, or after the purchase, is not known."""
    def ev(s: str, minute: float, **kw: Any) -> dict[str, Any]:
        return event(minute=minute, session_id=s, anonymous_id=f"v-{s}", **kw)

    page = {"event_type": "page", "event_name": "page_view"}
    write_events(tmp_path, [
        # starts before T1 with a product view; its page view and city come after T1
        ev("cut", 50, product_id="p", product_action="view", utm_source="first"),
        ev("cut", 65, page_path="/late", utm_source="late", geo_city="Paris", **page),
        # its first page view and city come only after the purchase
        ev("buy", 0, product_id="p", product_action="view", utm_source="first"),
        ev("buy", 1, event_name="Order Completed", product_action="purchase"),
        ev("buy", 2, page_path="/after", utm_source="after", geo_city="Rome", **page),
        # a page view before the purchase is the landing; the city is seen at a later step
        ev("land", 0, product_id="p", product_action="view", utm_source="first"),
        ev("land", 1, page_path="/in", utm_source="page", **page),
        ev("land", 2, product_id="q", product_action="view", geo_city="Oslo"),
        ev("land", 3, event_name="Order Completed", product_action="purchase"),
    ])
    rows = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent", train_end=T1)
                         )["train"].to_pylist()
    by = {(r["session_id"], r["prefix_length"]): r for r in rows}
    assert set(by) == {("cut", 1), ("buy", 1), ("land", 1), ("land", 2), ("land", 3)}
    assert (by[("cut", 1)]["utm_source"], by[("cut", 1)]["landing_path"],
            by[("cut", 1)]["city"], by[("cut", 1)]["purchased"]) == ("first", None, None, False)
    assert (by[("buy", 1)]["utm_source"], by[("buy", 1)]["city"],
            by[("buy", 1)]["purchased"]) == ("first", None, True)
    assert (by[("land", 1)]["utm_source"], by[("land", 1)]["landing_path"],
            by[("land", 1)]["city"]) == ("page", "/in", "Oslo")
    # the whole data, no split: the late page view is cut's landing
    everything = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent"))["all"]
    cut = [r for r in everything.to_pylist() if r["session_id"] == "cut"]
    assert {(r["utm_source"], r["landing_path"], r["city"]) for r in cut} == {
        ("late", "/late", "Paris")}


def test_intent_index_and_visitor_come_from_all_steps_before_the_cut(tmp_path: Path) -> None:
    """A prefix's session_index is the lowest over the session's events before its cut
    (the purchase or the split's end), even past max_prefix; its anonymous id is the first
    one sent before the cut. Pins what the step lists worked out once per export give."""
    def ev(minute: float, **kw: Any) -> dict[str, Any]:
        return event(minute=minute, session_id="s", product_id="p", product_action="view",
                     **kw)

    write_events(tmp_path, [
        ev(0, anonymous_id=None, session_index=None),
        ev(1, anonymous_id="d1", session_index=7),
        ev(2, anonymous_id="d2", session_index=5),
        ev(3),
        ev(50, session_index=2),                       # past max_prefix, before T1
        ev(65, session_index=1),                       # after T1
        event(minute=70, session_id="s", event_name="Order Completed",
              product_action="purchase"),
        # another session whose first purchase comes before its drop
        event(minute=0, session_id="b", anonymous_id="e", product_id="p",
              product_action="view", session_index=4),
        event(minute=1, session_id="b", event_name="Order Completed",
              product_action="purchase"),
        event(minute=2, session_id="b", anonymous_id="e", product_id="p",
              product_action="view", session_index=1),
    ])
    train = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent", train_end=T1,
                                               max_prefix=2))["train"].to_pylist()
    assert {(r["session_id"], r["prefix_length"], r["anonymous_id"], r["session_index"],
             r["purchased"]) for r in train} == {
        ("s", 1, "d1", 2, False), ("s", 2, "d1", 2, False), ("b", 1, "e", 4, True)}
    everything = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent",
                                                    max_prefix=3))["all"].to_pylist()
    assert {(r["session_id"], r["session_index"], r["purchased"]) for r in everything} == {
        ("s", 1, True), ("b", 4, True)}
    assert [r["prefix_length"] for r in everything if r["session_id"] == "s"] == [1, 2, 3]


def test_export_with_rates_reproduces_from_its_manifest(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_events(lake, [event(minute=0, session_id="s", product_action="purchase",
                              order_id="o", revenue=10.0, currency="USD")])
    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,rate\n2026-01-01,USD,0.5\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "export", "--lake", str(lake), "--tenant", "acme", "--recipe", "sql", "--out", str(out),
        "--format", "jsonl", "--rates", str(rates), "--reporting-currency", "EUR",
        "--query", "select order_id, revenue_converted, reporting_currency from orders"])
    assert result.exit_code == 0, result.output
    (line,) = (out / "all.jsonl").read_text().splitlines()
    assert json.loads(line) == {"order_id": "o", "revenue_converted": 5.0,
                                "reporting_currency": "EUR"}
    rates.write_text("date,currency,rate\n2026-01-01,USD,0.9\n")   # the file may change
    again = CliRunner().invoke(main, ["export", "--from-manifest", str(out / "manifest.json"),
                                      "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "all.jsonl").read_text() == (out / "all.jsonl").read_text()
    half = CliRunner().invoke(main, [
        "export", "--lake", str(lake), "--tenant", "acme", "--recipe", "sql",
        "--out", str(tmp_path / "x"), "--rates", str(rates), "--query", "select 1"])
    assert half.exit_code == 2 and "go together" in half.output


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_manifest_and_byte_identical_reproduction(lake: Path, tmp_path: Path, fmt: str) -> None:
    spec = _spec(format=fmt)
    manifest = export_to_dir(lake, spec, tmp_path / "a")
    assert manifest.tenant == "acme" and manifest.recipe == "sessions"
    assert manifest.parameters == spec
    assert manifest.code.pipeline_version == PIPELINE_VERSION and manifest.code.driftnet
    assert [f.path for f in manifest.inputs] == sorted(
        p.relative_to(lake).as_posix() for p in (lake / "events/tenant=acme").rglob("*.parquet"))
    assert all(len(f.sha256) == 64 and f.bytes > 0 for f in manifest.inputs)
    assert [(o.split, o.rows) for o in manifest.outputs] == [("train", 2), ("valid", 1),
                                                             ("test", 1)]
    # data landing later does not change a reproduction: it reads the manifest's files only
    write_events(lake, [_view("s9", 5, "NEW")])
    again = reproduce_from_manifest(tmp_path / "a" / "manifest.json", tmp_path / "b")
    for out in manifest.outputs:
        assert (tmp_path / "a" / out.file).read_bytes() == (tmp_path / "b" / out.file).read_bytes()
    manifests = [(tmp_path / d / "manifest.json").read_bytes() for d in "ab"]
    assert manifests[0] == manifests[1]
    assert again.outputs == manifest.outputs
    # a fresh export does see the new file
    fresh = export_to_dir(lake, spec, tmp_path / "c")
    assert len(fresh.inputs) == len(manifest.inputs) + 1


def test_reproduction_fails_loudly_when_an_input_changed(lake: Path, tmp_path: Path) -> None:
    manifest = export_to_dir(lake, _spec(), tmp_path / "a")
    victim = lake / manifest.inputs[0].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(InputChangedError) as err:
        reproduce_from_manifest(tmp_path / "a/manifest.json", tmp_path / "b")
    assert manifest.inputs[0].path in str(err.value)
    victim.unlink()
    with pytest.raises(InputChangedError, match="can no longer be read"):
        reproduce_from_manifest(tmp_path / "a/manifest.json", tmp_path / "c")


def test_api_tables_equal_the_parquet_files(lake: Path, tmp_path: Path) -> None:
    spec = _spec("intent")
    export_to_dir(lake, spec, tmp_path / "a")
    tables = export_tables(lake, spec)
    for name, table in tables.items():
        assert pq.read_table(tmp_path / "a" / f"{name}.parquet").equals(table)
    assert tables_from_manifest(tmp_path / "a/manifest.json") == tables


def test_sql_recipe(lake: Path, tmp_path: Path) -> None:
    query = ("SELECT session_id, events, purchased FROM sessions WHERE ($split_start IS NULL "
             "OR start >= $split_start) AND ($split_end IS NULL OR start < $split_end)")
    splits = export_tables(lake, _spec("sql", query=query))
    assert [r["session_id"] for r in splits["train"].to_pylist()] == ["s1", "s2"]
    whole = export_tables(lake, ExportSpec(tenant="acme", recipe="sql",
                                           query="SELECT * FROM events WHERE product_id = $p",
                                           params={"p": "i1"}))
    assert whole["all"].num_rows == 1
    manifest = export_to_dir(lake, ExportSpec(tenant="acme", recipe="sql",
                                              query="SELECT count(*) FROM quarantine"),
                             tmp_path / "q")
    assert manifest.inputs == []           # quarantine has no files; events were not read
    with pytest.raises(ExportSpecError, match="split_start"):
        _spec("sql", query="SELECT * FROM sessions")
    with pytest.raises(TenantScopeError):
        export_to_dir(lake, ExportSpec(tenant="acme", recipe="sql",
                                       query=f"COPY (SELECT 1) TO '{lake}/events/x.csv'"),
                      tmp_path / "w")


def test_cli_export_and_from_manifest(lake: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(main, ["export", "--lake", str(lake), "--tenant", "acme",
                                  "--recipe", "sessions", "--out", str(out),
                                  "--train-end", T1.isoformat(), "--valid-end", T2.isoformat(),
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert read_manifest(out / "manifest.json").outputs[0].rows == 2
    again = runner.invoke(main, ["export", "--from-manifest", str(out / "manifest.json"),
                                 "--out", str(tmp_path / "ds2"), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert (out / "train.parquet").read_bytes() == (tmp_path / "ds2/train.parquet").read_bytes()
    refused = runner.invoke(main, ["export", "--lake", str(lake), "--tenant", "acme",
                                   "--recipe", "sessions", "--out", str(out)])
    assert refused.exit_code != 0 and "not empty" in refused.output


def test_bad_specs_fail_before_reading_anything(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportSpecError, match="tenant"):
        ExportSpec(tenant="../globex", recipe="sessions")
    with pytest.raises(ExportSpecError, match="--train-end"):
        ExportSpec(tenant="acme", recipe="sessions", valid_end=T2)
    with pytest.raises(ExportSpecError, match="after"):
        ExportSpec(tenant="acme", recipe="sessions", train_end=T2, valid_end=T1)
    with pytest.raises(ExportSpecError, match="--query"):
        ExportSpec(tenant="acme", recipe="sessions", query="SELECT 1")


def test_tenant_without_data_exports_empty_typed_files(lake: Path, tmp_path: Path) -> None:
    manifest = export_to_dir(lake, ExportSpec(tenant="initech", recipe="sessions"),
                             tmp_path / "e")
    assert manifest.inputs == [] and manifest.outputs[0].rows == 0
    assert "items" in pq.read_schema(tmp_path / "e/all.parquet").names


def test_a_view_of_a_product_priced_past_the_double_range_leaves_the_cart_alone(
        tmp_path: Path) -> None:
    """A view's price x quantity can overflow (1e308 x 10): 0 x inf would be NaN, and every
    later prefix's cart value with it."""
    s = {"session_id": "s", "anonymous_id": "d1"}
    write_events(tmp_path, [
        event(minute=0, event_name="Product Added", product_action="add", product_id="p1",
              price=10.0, quantity=1, **s),
        event(minute=1, product_action="view", product_id="p2", price=1e308, quantity=10, **s),
        event(minute=2, product_action="view", product_id="p3", price=5.0, **s),
    ])
    rows = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent"))["all"]
    assert [r["cart_value"] for r in rows.to_pylist()] == [10.0, 10.0, 10.0]


def test_jsonl_writes_json_csv_names_any_column(tmp_path: Path) -> None:
    """JSON Lines holds JSON (an infinite or NaN double is null, as `driftnet sql --format
    json` writes it); CSV writes a nested column whatever its name (a pivot's, from the
    data) and whatever list it is (a fixed-size one too)."""
    write_events(tmp_path, [event(minute=0, product_id="p1", price=1e308, quantity=10),
                            event(minute=1, event_name='Clicked "Buy"')])
    query = ("SELECT event_id, price * quantity AS amount, 'NaN'::DOUBLE AS nan, "
             "[event_name] AS \"say \"\"hi\"\"\", [1, 2]::INTEGER[2] AS pair "
             "FROM events ORDER BY event_id")
    out = tmp_path / "out"
    for fmt in ("jsonl", "csv"):
        export_to_dir(tmp_path, ExportSpec(tenant="acme", recipe="sql", query=query,
                                           format=fmt), out / fmt)
    def strict(token: str) -> None:
        raise ValueError(f"{token} is no JSON")

    rows = [json.loads(line, parse_constant=strict)
            for line in (out / "jsonl" / "all.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "event_id"} for r in rows] == [
        {"amount": None, "nan": None, 'say "hi"': ["Product Viewed"], "pair": [1, 2]},
        {"amount": None, "nan": None, 'say "hi"': ['Clicked "Buy"'], "pair": [1, 2]}]
    header, first, _ = (out / "csv" / "all.csv").read_text().splitlines()
    assert header == '"event_id","amount","nan","say ""hi""","pair"'
    assert first.endswith(',"[""Product Viewed""]","[1,2]"'), first


def test_a_manifest_naming_a_file_out_of_scope_learns_nothing_about_it(
        lake: Path, tmp_path: Path) -> None:
    """Out-of-scope inputs are refused before any file is looked at: the error names
    neither size nor checksum (another tenant's file, a file outside the lake, an absolute
    path, a NUL, another table's scope)."""
    export_to_dir(lake, _spec(), tmp_path / "a")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    globex = next((lake / "events/tenant=globex").rglob("*.parquet")).relative_to(lake)
    original = json.loads((tmp_path / "a/manifest.json").read_text())
    for n, (table, path) in enumerate([
            ("events", globex.as_posix()), ("events", "../secret.txt"),
            ("events", str(secret)), ("events", "events/tenant=acme/\0x"),
            ("events", "events/tenant=acme/../tenant=globex/x.parquet"),
            ("raw", original["inputs"][0]["path"])]):
        crafted = json.loads(json.dumps(original))
        crafted["inputs"].append({"table": table, "path": path,
                                  "bytes": secret.stat().st_size, "sha256": "0" * 64})
        path_to = tmp_path / f"crafted{n}.json"
        path_to.write_text(json.dumps(crafted))
        with pytest.raises(TenantScopeError, match="outside the scope") as err:
            reproduce_from_manifest(path_to, tmp_path / f"out{n}")
        assert "actual" not in str(err.value)
        with pytest.raises(TenantScopeError):
            tables_from_manifest(path_to)
        result = CliRunner().invoke(main, ["export", "--from-manifest", str(path_to),
                                           "--out", str(tmp_path / f"cli{n}")])
        assert result.exit_code == 1 and "outside the scope" in result.output
        assert "Traceback" not in result.output and "actual" not in result.output


def test_a_manifest_at_odds_with_itself_or_of_another_version_is_refused(
        lake: Path, tmp_path: Path) -> None:
    export_to_dir(lake, _spec(), tmp_path / "a")
    original = json.loads((tmp_path / "a/manifest.json").read_text())
    for n, (key, value, why) in enumerate([("tenant", "globex", "differ"),
                                           ("recipe", "intent", "differ"),
                                           ("manifest_version", 999, "manifest_version")]):
        crafted = {**original, key: value}
        path = tmp_path / f"m{n}.json"
        path.write_text(json.dumps(crafted))
        with pytest.raises(ExportError, match=why):
            read_manifest(path)


def _strict_json(line: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is no JSON")
    return json.loads(line, parse_constant=refuse)


def test_non_finite_numbers_inside_lists_structs_and_maps_are_null_in_json(
        tmp_path: Path) -> None:
    write_events(tmp_path, [event(minute=0)])
    query = ("SELECT ['NaN'::DOUBLE, 1.5, 'inf'::DOUBLE] AS l, "
             "{'a': 'NaN'::DOUBLE, 'b': '-inf'::FLOAT, 'c': [{'d': 'inf'::DOUBLE}]} AS s, "
             "map(['k', 'j'], ['nan'::DOUBLE, 2.0]) AS m, "
             "['-inf'::DOUBLE, 3.0]::DOUBLE[2] AS pair FROM events")
    expected = {"l": [None, 1.5, None], "s": {"a": None, "b": None, "c": [{"d": None}]},
                "m": {"k": None, "j": 2.0}, "pair": [None, 3.0]}
    for fmt in ("jsonl", "csv"):
        export_to_dir(tmp_path, ExportSpec(tenant="acme", recipe="sql", query=query,
                                           format=fmt), tmp_path / fmt)
    (line,) = (tmp_path / "jsonl/all.jsonl").read_text().splitlines()
    assert _strict_json(line) == expected
    (row,) = pacsv.read_csv(tmp_path / "csv/all.csv").to_pylist()
    assert {k: _strict_json(v) for k, v in row.items()} == expected


def test_sql_rows_are_ordered_by_their_values_in_every_format(tmp_path: Path) -> None:
    """By all columns, as Parquet orders them: not by a JSON line's or cell's text (where
    "10" sorts before "9" and [10] before [9])."""
    write_events(tmp_path, [event(minute=m, quantity=q)
                            for m, q in [(0, 9), (1, 10), (2, 100), (3, -5)]])
    query = "SELECT quantity::INTEGER AS n, [quantity::INTEGER] AS l FROM events"
    for fmt in ("parquet", "jsonl", "csv"):
        export_to_dir(tmp_path, ExportSpec(tenant="acme", recipe="sql", query=query,
                                           format=fmt), tmp_path / fmt)
    ordered = [-5, 9, 10, 100]
    assert pq.read_table(tmp_path / "parquet/all.parquet").column("n").to_pylist() == ordered
    lines = (tmp_path / "jsonl/all.jsonl").read_text().splitlines()
    assert [_strict_json(line)["n"] for line in lines] == ordered
    csv_rows = pacsv.read_csv(tmp_path / "csv/all.csv").to_pylist()
    assert [r["n"] for r in csv_rows] == ordered
    assert [r["l"] for r in csv_rows] == [f"[{n}]" for n in ordered]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_types_a_format_cannot_hold_are_written_as_documented(tmp_path: Path, fmt: str) -> None:
    """INTERVAL as text everywhere; BLOB as base64 in CSV and JSON Lines; BIT and BIGNUM
    as text in CSV; UNION as JSON text in Parquet and CSV."""
    write_events(tmp_path, [event(minute=0)])
    query = ("SELECT INTERVAL '1 month 2 days 3 seconds' AS i, '\\xAA\\x00b'::BLOB AS b, "
             "'0101'::BIT AS bit, 123456789012345678901234567890::VARINT AS big, "
             "union_value(k := 7) AS u FROM events")
    export_to_dir(tmp_path, ExportSpec(tenant="acme", recipe="sql", query=query,
                                       format=fmt), tmp_path / "out")  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"all.{fmt}",
                                                                     "manifest.json"]
    if fmt == "parquet":
        (row,) = pq.read_table(tmp_path / "out/all.parquet").to_pylist()
        assert (row["i"], row["b"], row["u"]) == ("1 month 2 days 00:00:03", b"\xaa\x00b",
                                                  '{"k":7}')
    elif fmt == "csv":
        as_text = pacsv.ConvertOptions(column_types={"bit": pa.string(), "big": pa.string()})
        (row,) = pacsv.read_csv(tmp_path / "out/all.csv", convert_options=as_text).to_pylist()
        assert row == {"i": "1 month 2 days 00:00:03", "b": "qgBi", "bit": "0101",
                       "big": "123456789012345678901234567890", "u": '{"k":7}'}
    else:
        (line,) = (tmp_path / "out/all.jsonl").read_text().splitlines()
        assert _strict_json(line) == {"i": "1 month 2 days 00:00:03", "b": "qgBi",
                                      "bit": "0101", "big": 123456789012345678901234567890,
                                      "u": {"k": 7}}


def _tampered(manifest_path: Path) -> None:
    """The manifest as another DuckDB or pyarrow would have recorded it: other bytes."""
    data = json.loads(manifest_path.read_text())
    data["outputs"][0]["sha256"] = "f" * 64
    manifest_path.write_text(json.dumps(data, indent=2))


def test_a_failed_reproduction_writes_nothing_and_never_replaces_the_original(
        lake: Path, tmp_path: Path) -> None:
    original = tmp_path / "orig"
    export_to_dir(lake, _spec(), original)
    _tampered(original / "manifest.json")
    before = {p.name: p.read_bytes() for p in original.iterdir()}
    with pytest.raises(NotReproducedError, match="nothing was written"):
        reproduce_from_manifest(original / "manifest.json", tmp_path / "again")
    assert not (tmp_path / "again").exists()
    with pytest.raises(NotReproducedError):
        reproduce_from_manifest(original / "manifest.json", original, overwrite=True)
    assert {p.name: p.read_bytes() for p in original.iterdir()} == before
    result = CliRunner().invoke(main, ["export", "--from-manifest",
                                       str(original / "manifest.json"), "--out",
                                       str(original), "--overwrite", "--no-progress"])
    assert result.exit_code == 1 and "differs" in result.output, result.output
    assert {p.name: p.read_bytes() for p in original.iterdir()} == before


def test_a_column_no_writer_holds_is_a_one_line_error_and_leaves_nothing(
        lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, [
        "export", "--lake", str(lake), "--tenant", "acme", "--recipe", "sql", "--no-progress",
        "--out", str(out), "--query", "SELECT 1 AS n, [INTERVAL 1 DAY] AS waits FROM events"])
    assert result.exit_code == 1, result.output
    assert "'waits'" in result.output and "interval" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert list(out.iterdir()) == []          # no *.tmp, no manifest: the next run can start
    again = CliRunner().invoke(main, [
        "export", "--lake", str(lake), "--tenant", "acme", "--recipe", "sql", "--no-progress",
        "--out", str(out), "--query", "SELECT 1 AS n FROM events"])
    assert again.exit_code == 0, again.output


def test_overwrite_leaves_only_the_new_exports_files(lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export_to_dir(lake, _spec(), out)
    (out / "notes.txt").write_text("mine")
    manifest = export_to_dir(lake, ExportSpec(tenant="acme", recipe="sessions", format="csv"),
                             out, overwrite=True)
    assert [o.file for o in manifest.outputs] == ["all.csv"]
    assert sorted(p.name for p in out.iterdir()) == ["all.csv", "manifest.json", "notes.txt"]
    reproduce_from_manifest(out / "manifest.json", out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["all.csv", "manifest.json", "notes.txt"]


def test_intent_stitches_a_session_to_its_own_user_before_the_devices_later_one(
        tmp_path: Path) -> None:
    """One device, two people: u1 signs in in S1, u2 in a later S2. S1's stitched user is
    its own (as in `sessions` and the sessions view), not whom the device was identified as
    last."""
    d = {"anonymous_id": "d1"}
    write_events(tmp_path, [
        event(minute=0, session_id="S1", event_name="Signed In", user_id="u1", **d),
        event(minute=1, session_id="S1", product_id="p1", product_action="view", user_id="u1",
              **d),
        event(minute=100, session_id="S2", event_name="Signed In", user_id="u2", **d),
        event(minute=101, session_id="S2", product_id="p2", product_action="view",
              user_id="u2", **d),
    ])
    for recipe in ("intent", "sessions"):
        rows = export_tables(tmp_path, ExportSpec(tenant="acme", recipe=recipe))["all"]  # type: ignore[arg-type]
        assert {(r["session_id"], r["stitched_user_id"]) for r in rows.to_pylist()} == {
            ("S1", "u1"), ("S2", "u2")}, recipe


def test_intent_steps_are_the_events_before_the_purchase_in_event_order(
        tmp_path: Path) -> None:
    """Events sent in one batch share a time: those before the purchase in event order
    (lineage) are steps, with their context and landing page; those after it are not."""
    s = {"session_id": "s", "anonymous_id": "d1"}
    write_events(tmp_path, [
        event(minute=0, product_id="p1", product_action="view", source_offset=1, **s),
        event(minute=5, event_type="page", event_name="page_view", page_path="/cart",
              utm_source="mail", source_offset=99, **s),
        event(minute=5, event_name="Product Added", product_id="p1", product_action="add",
              price=3.0, ua_device="tablet", source_offset=100, **s),
        event(minute=5, event_name="Order Completed", product_action="purchase",
              source_offset=101, **s),
        event(minute=5, event_name="Product Added", product_id="p2", product_action="add",
              price=7.0, ua_os="after", source_offset=102, **s),
    ])
    rows = export_tables(tmp_path, ExportSpec(tenant="acme", recipe="intent"))["all"]
    by = {r["prefix_length"]: r for r in rows.to_pylist()}
    assert by[3]["actions"] == ["view", "page_view", "add"] and sorted(by) == [1, 2, 3]
    assert [by[k]["cart_value"] for k in (1, 2, 3)] == [0, 0, 3.0]
    assert {(r["device"], r["os"], r["utm_source"], r["landing_path"], r["purchased"])
            for r in by.values()} == {("tablet", None, "mail", "/cart", True)}


def test_from_manifest_refuses_every_parameter_given_with_it(lake: Path, tmp_path: Path) -> None:
    """--format and --max-prefix have defaults, yet typed with --from-manifest they were
    silently ignored."""
    export_to_dir(lake, _spec("intent"), tmp_path / "a")
    base = ["export", "--from-manifest", str(tmp_path / "a/manifest.json"), "--no-progress"]
    for n, extra in enumerate([["--format", "csv"], ["--format", "parquet"],
                               ["--max-prefix", "5"], ["--max-prefix", "20"],
                               ["--tenant", "acme"], ["-p", "a=b"]]):
        result = CliRunner().invoke(main, [*base, "--out", str(tmp_path / f"o{n}"), *extra])
        assert result.exit_code == 2, (extra, result.output)
        flag = "--param" if extra[0] == "-p" else extra[0]
        assert f"drop {flag}" in result.output and not (tmp_path / f"o{n}").exists()
    ok = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b"), "--memory-limit", "1GB"])
    assert ok.exit_code == 0, ok.output
