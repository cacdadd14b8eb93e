"""One path table per protocol, read by the collector (routing) and the loader (parsing)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from ingest.collector.routes import ROUTES, find_route
from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline
from ingest.loader.protocols.segment import SegmentAdapter
from ingest.paths import BATCH, SEGMENT_PATHS
from tests.ingest.loader.helpers import envelope, only, run

_FAMILY = set(SegmentAdapter.protocols) - {"dn"}


def test_the_collector_routes_every_path_of_the_table() -> None:
    for path, p in SEGMENT_PATHS.items():
        route = find_route(path)
        assert route is not None, path
        assert (route.protocol, route.single_event) == (p.protocol, p.message != BATCH), path


def test_the_collector_knows_no_segment_path_the_table_does_not() -> None:
    routed = {path for path, route in ROUTES.items() if route.protocol in _FAMILY}
    assert routed == set(SEGMENT_PATHS)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    p = Pipeline(LoaderSettings())
    yield p
    p.close()


# A message without `type`: the path alone says what it is.
_UNTYPED = {"anonymousId": "a", "event": "e", "groupId": "g", "previousId": "p"}


@pytest.mark.parametrize("path", sorted(SEGMENT_PATHS))
def test_the_loader_reads_what_the_path_says(pipeline: Pipeline, path: str) -> None:
    p = SEGMENT_PATHS[path]
    if p.message == BATCH:
        frame = envelope(p.protocol, orjson.dumps({"batch": [{**_UNTYPED, "type": "alias"}]}),
                         path)
        expected = "alias"
    elif p.protocol == "rudderstack":  # the pixel API: a GET, the message in the query
        frame = envelope(p.protocol, b"", path, query="writeKey=k&anonymousId=a&event=e",
                         method="GET")
        expected = p.message
    else:
        frame = envelope(p.protocol, orjson.dumps(_UNTYPED), path)
        expected = p.message
    out = run(pipeline, frame)
    assert out.quarantine.num_rows == 0, out.quarantine.to_pylist()
    assert only(out.events)["event_type"] == expected
