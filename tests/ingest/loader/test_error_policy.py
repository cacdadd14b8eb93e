"""A problem with the machine is not a problem with the data: no event is quarantined for
it, no offset moves, and the batch is retried."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import duckdb
import maxminddb
import pytest

from ingest.enrich import Batch, Chain, default_chain
from ingest.failures import environmental
from ingest.loader.config import LoaderSettings
from ingest.loader.loop import Loader
from ingest.loader.pipeline import Pipeline
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import EmbeddedConsumer, EmbeddedProducer
from tests.ingest.loader.test_loop import _bundle
from tests.support import lake_rows


class FlakyStep:
    """An enrichment step that fails like a machine does, ``failures`` times."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return relation


@pytest.mark.parametrize("error", [
    duckdb.OutOfMemoryException("could not allocate block of size 256 KiB"),
    OSError(28, "No space left on device"),
    maxminddb.InvalidDatabaseError("the MaxMind DB file's data section contains bad data"),
])
def test_an_environment_error_retries_the_batch_and_quarantines_nothing(
        tmp_path: Path, error: Exception) -> None:
    log = EmbeddedLogSettings(path=tmp_path / "log.sqlite")
    producer = EmbeddedProducer(log)
    sent = [str(uuid.uuid4()) for _ in range(12)]
    producer.produce([(None, _bundle(sent[i:i + 3])) for i in range(0, 12, 3)])
    producer.close()
    settings = LoaderSettings(lake=tmp_path / "lake", flush_interval_s=0.2)
    flaky = FlakyStep(error, failures=2)
    real = default_chain()
    chain = Chain([*real.steps, ("flaky", flaky)], resources=real.resources)
    loader = Loader(lambda listener: EmbeddedConsumer(log, listener=listener), settings,
                    pipeline=Pipeline(settings, chain=chain))
    stop = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while loader.stats.events < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert flaky.failures == 0 and loader.stats.processing_failures == 2
    events = lake_rows(tmp_path / "lake", "events", "SELECT event_id FROM t")
    assert sorted(r[0] for r in events) == sorted(sent)
    assert lake_rows(tmp_path / "lake", "quarantine", "SELECT * FROM t") == []


def test_what_counts_as_the_machines_fault() -> None:
    assert environmental(duckdb.OutOfMemoryException("x"))
    assert environmental(duckdb.IOException("x"))
    assert environmental(PermissionError("x"))
    wrapped = RuntimeError("step failed")
    wrapped.__cause__ = MemoryError()
    assert environmental(wrapped)
    # a data problem stays one: it costs the hit, as a quarantine row
    assert not environmental(duckdb.ConversionException("Could not convert string 'x'"))
    assert not environmental(ValueError("bad timestamp"))
    assert not environmental(KeyError("items"))
