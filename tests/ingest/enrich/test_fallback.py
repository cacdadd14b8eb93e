"""A failing enrichment step costs the rows it fails on (quarantined), never the batch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest

from ingest.enrich import Batch, Chain, default_chain
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
                      context={"userAgent": "boom" if i == 1500 else "Mozilla/5.0"})
                for i in range(2500)]
    out = _process(Chain(steps, resources=base.resources),
                   [frame({"batch": messages}, path="/v1/batch")])
    assert out.events.num_rows == 2499
    (q,) = out.quarantine.to_pylist()
    assert (q["reason"], q["event_id"], q["item_index"]) == ("enrichment_failure", "m1500",
                                                             1500)
    assert q["detail"].startswith("enrichment step lazy_bug: ") and detail in q["detail"]
    assert orjson.loads(q["payload"])["user_agent"] == "boom"
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
