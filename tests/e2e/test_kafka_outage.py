"""The broker goes away while collectors take hits: the spool keeps them, then all land.

The broker is reached through a Kafka proxy that the test stops and starts again (see
tests/kafka_broker.py for why the broker process itself is not restarted). Collectors and
the loader all go through the proxy, so for every driftnet process the broker is gone.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from tests.kafka_broker import (
    Driftnet,
    KafkaProxy,
    Traffic,
    kafka_env,
    kafka_test_settings,
    lake_event_ids,
    stop_all,
    wait_lake,
)


def test_hits_taken_while_the_broker_is_down_all_land_and_a_full_spool_answers_503(
        kafka_proxy: KafkaProxy, tmp_path: Path, tenants_file: Path) -> None:
    settings = kafka_test_settings(kafka_proxy.bootstrap, tmp_path, max_poll_interval_ms=2_000,
                                   session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
    env = kafka_env(settings)
    lake = tmp_path / "lake"
    roomy = Driftnet("collector", tmp_path / "roomy", tenants_file, env, name="roomy")
    tiny = Driftnet("collector", tmp_path / "tiny", tenants_file,
                    {**env, "DRIFTNET_KAFKA__SPOOL_MAX_BYTES": "8000"}, name="tiny")
    loader = Driftnet("loader", tmp_path / "loader", tenants_file, env, lake=lake)
    try:
        for process in (roomy, tiny, loader):
            process.start()
        loader.wait_log("assigned partitions")
        before = Traffic(roomy.url).send(20)
        assert wait_lake(lake, 20, settle_s=0)[0] == 20

        kafka_proxy.stop()
        down = Traffic(roomy.url)  # N hits while the broker is unreachable
        overflow = Traffic(tiny.url, threads=2)
        both = [threading.Thread(target=down.send, args=(60,)),
                threading.Thread(target=overflow.send, args=(60,))]
        for t in both:
            t.start()
        for t in both:
            t.join()
        assert down.refused == [] and down.accepted_requests == 60
        assert overflow.accepted_requests > 0 and overflow.refused
        for r in overflow.refused:
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "spool is full" in overflow.refused[0].text
        time.sleep(1.0)  # the loader, too, keeps failing to reach the broker for a while
        assert wait_lake(lake, 21, timeout_s=0, settle_s=0)[0] == 20

        kafka_proxy.start()
        expected = 20 + 60 + overflow.accepted_requests
        hits, _, _ = wait_lake(lake, expected, timeout_s=60)
    finally:
        codes = stop_all(loader, roomy, tiny)
    assert codes == [0, 0, 0], loader.logs()[-3000:]
    assert hits == expected
    acknowledged = before.accepted_ids + down.accepted_ids + overflow.accepted_ids
    assert Counter(lake_event_ids(lake)) == Counter(acknowledged)
    assert "spooling until it is back" in roomy.logs()
    assert "spool drained" in roomy.logs() and "spool drained" in tiny.logs()
