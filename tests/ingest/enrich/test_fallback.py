"""A failing enrichment step costs the rows it fails on (quarantined), never the batch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest

from ingest.enrich import ROW_COLUMN, Batch, Chain, default_chain
from ingest.enrich.lookup import DistinctFunction
from ingest.enrich.sessionize import Sessionize
from ingest.loader.pipeline import Pipeline
from tests.ingest.enrich.helpers import frame, no_lake, records, track


class LazyBug:
    """A library that raises on one value: the error surfaces when the view is computed."""

    def __init__(self) -> None:
        self.function = DistinctFunction("bug", self._parse, ["VARCHAR"],
                                         {"out": pa.string()}, 100)

    @staticmethod
    def _parse(value: str | None) -> tuple[str | None]:
        if value == "boom":
            raise ValueError("cannot parse 'boom'")
        return (value,)

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        out = self.function.field(con, "out", "user_agent")
        con.execute(f"CREATE OR REPLACE TEMP VIEW bug AS SELECT * REPLACE ({out} AS user_agent) "
                    f"FROM {relation}")
        return "bug"


def eager_bug(con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
    """A step whose own code raises whenever its input holds a certain row."""
    if con.sql(f"SELECT count(*) FROM {relation} WHERE user_agent = 'boom'").fetchall()[0][0]:
        raise RuntimeError("eager step failed")
    return relation


def _process(chain: Chain, frames: list[bytes]) -> Any:
    pipeline = Pipeline(no_lake(), chain=chain)
    try:
        return pipeline.process(records(*frames), "log")
    finally:
        pipeline.close()


@pytest.mark.parametrize(("bug", "detail"), [
    (LazyBug(), "ValueError: cannot parse 'boom'"),
    (eager_bug, "RuntimeError: eager step failed"),
])
def test_rows_a_step_fails_on_are_quarantined(bug: Any, detail: str) -> None:
    base = default_chain()
    steps = list(base.steps)
    steps.insert(2, ("lazy_bug", bug))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    messages = [track(anonymousId="v1", messageId=f"m{i}",
                      timestamp=(start + dt.timedelta(seconds=i)).isoformat(),
                      context={"userAgent": "boom" if i == 1500 else "Mozilla/5.0"},
                      properties={"n": i})
                for i in range(2500)]
    out = _process(Chain(steps, resources=base.resources),
                   [frame({"batch": messages}, path="/v1/batch")])
    assert out.events.num_rows == 2499
    (q,) = out.quarantine.to_pylist()
    assert (q["reason"], q["event_id"], q["item_index"]) == ("enrichment_failure", "m1500",
                                                             1500)
    assert q["detail"].startswith("enrichment step lazy_bug: ") and detail in q["detail"]
    payload = orjson.loads(q["payload"])
    assert payload["user_agent"] == "boom"
    # The payload is the whole event, columns the chain never sees included, and only those.
    assert orjson.loads(payload["properties"]) == {"n": 1500}
    assert ROW_COLUMN not in payload and "extra" in payload
    assert [orjson.loads(p)["n"] for p in out.events["properties"].to_pylist()] == [
        int(e[1:]) for e in out.events["event_id"].to_pylist()]
    # Row groups were enriched separately, yet the visitor's session is one session.
    assert set(out.events["session_index"].to_pylist()) == {1}
    assert len(set(out.events["session_id"].to_pylist())) == 1
    assert set(out.events["user_agent"].to_pylist()) == {"Mozilla/5.0"}


def test_a_failed_attempt_leaves_no_session_state_behind() -> None:
    sessionize = Sessionize()
    chain = Chain([("sessionize", sessionize), ("lazy_bug", LazyBug())])
    rows = [track(anonymousId="v1", messageId=f"m{i}",
                  context={"userAgent": "boom" if i == 0 else "ok"}) for i in range(3)]
    out = _process(chain, [frame({"batch": rows}, path="/v1/batch")])
    assert out.events.num_rows == 2 and out.quarantine.num_rows == 1
    again = _process(chain, [frame({"batch": rows[1:]}, path="/v1/batch")])
    assert again.events["session_index"].to_pylist() == [1, 1]


def reverse(con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
    """A step that hands its rows on in another order."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW reversed AS SELECT * FROM {relation} "
                f"ORDER BY event_id DESC")
    return "reversed"


def test_columns_the_chain_never_sees_stay_with_their_rows() -> None:
    messages = [track(anonymousId=f"v{i % 7}", messageId=f"m{i:04d}",
                      properties={"n": i, "product_id": f"p{i}", "price": i / 2},
                      context={"userAgent": "Mozilla/5.0"}, extra_field=i)
                for i in range(300)]
    for last in (True, False):  # the chain reorders its rows last, or first
        base = default_chain()
        steps = [*base.steps, ("reverse", reverse)] if last else [("reverse", reverse),
                                                                  *base.steps]
        out = _process(Chain(steps, resources=base.resources),
                       [frame({"batch": messages}, path="/v1/batch")])
        rows = out.events.to_pylist()
        assert [r["event_id"] for r in rows] == [f"m{i:04d}" for i in range(299, -1, -1)]
        for r in rows:
            i = int(r["event_id"][1:])
            assert orjson.loads(r["properties"])["n"] == i
            assert (r["product_id"], r["price"]) == (f"p{i}", i / 2)
            assert orjson.loads(r["extra"]) == {"extra_field": i}
            assert r["session_id"] is not None and r["ua_device"] is not None


class Counting:
    """A step that counts the times it runs."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        self.runs += 1
        return relation


def test_only_the_failing_step_runs_again_on_the_parts() -> None:
    """Finding the rows takes some 20 runs per failing row; when they were runs of the whole
    chain, each failing row cost the loader ~2.5 s on a 50,000-event flush (docs/enrichment.md,
    "Failures")."""
    before, after = Counting(), Counting()
    chain = Chain([("before", before), ("lazy_bug", LazyBug()), ("after", after)])
    messages = [track(anonymousId="v1", messageId=f"m{i}",
                      context={"userAgent": "boom" if i in (10, 1500) else "Mozilla/5.0"})
                for i in range(2500)]
    out = _process(chain, [frame({"batch": messages}, path="/v1/batch")])
    assert sorted(out.quarantine["event_id"].to_pylist()) == ["m10", "m1500"]
    assert out.events.num_rows == 2498
    # The whole batch once, then once step by step: the failing step alone is bisected.
    assert (before.runs, after.runs) == (2, 2)
