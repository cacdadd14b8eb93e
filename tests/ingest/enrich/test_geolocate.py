"""geolocate over a MaxMind-format database the tests write themselves."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ingest.enrich import Chain
from ingest.enrich.anonymize_ip import IpAnonymizer
from ingest.enrich.config import GeoSettings
from ingest.enrich.geolocate import Geolocate
from tests.ingest.enrich.helpers import build_mmdb, event, run_chain, run_step

GEO = ("geo_country", "geo_region", "geo_city")


@pytest.fixture
def mmdb(tmp_path: Path) -> Path:
    return build_mmdb(tmp_path / "GeoLite2-City-test.mmdb")


@pytest.mark.parametrize(("ip", "place"), [
    ("81.2.69.160", ("GB", "ENG", "London")),
    ("89.160.20.112", ("SE", "E", "Linköping")),
    ("2001:480::52", ("US", "CA", "San Diego")),
    ("2001:0480:0000:0000:0000:0000:0000:0052", ("US", "CA", "San Diego")),
    ("::ffff:81.2.69.160", ("GB", "ENG", "London")),  # IPv4-mapped IPv6 (dual-stack sockets)
    ("5.145.100.1", ("DE", "Bavaria", "Munich")),  # DB-IP style: a region name, no code
    ("8.8.8.8", (None, None, None)),  # not in the database
    ("not an ip", (None, None, None)),
])
def test_places(mmdb: Path, ip: str, place: tuple[str | None, ...]) -> None:
    (row,) = run_step("geolocate", Geolocate(GeoSettings(database=mmdb)), [event(ip=ip)])
    assert tuple(row[c] for c in GEO) == place


def test_geolocation_sees_the_full_ip_before_anonymisation(mmdb: Path) -> None:
    chain = Chain([("geolocate", Geolocate(GeoSettings(database=mmdb))),
                   ("anonymize_ip", IpAnonymizer())])
    (row,) = run_chain(chain, [event(ip="81.2.69.160")])
    assert (row["ip"], row["geo_city"]) == ("81.2.69.0", "London")


def test_each_distinct_ip_is_looked_up_once(mmdb: Path) -> None:
    step = Geolocate(GeoSettings(database=mmdb))
    rows = [event(i, ip=["81.2.69.160", "2001:480::52", None][i % 3]) for i in range(3000)]
    out = run_step("geolocate", step, rows)
    assert [r["geo_country"] for r in out[:3]] == ["GB", "US", None]
    assert step.function.cache_info().misses == 3


def test_absent_database_leaves_nulls_and_warns_once(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    step = Geolocate(GeoSettings(database=tmp_path / "missing.mmdb"))
    with caplog.at_level(logging.WARNING, logger="ingest.enrich.geolocate"):
        for _ in range(3):
            (row,) = run_step("geolocate", step, [event(ip="81.2.69.160")])
            assert tuple(row[c] for c in GEO) == (None, None, None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "missing.mmdb" in warnings[0].getMessage()


def test_database_appearing_or_changing_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "city.mmdb"
    step = Geolocate(GeoSettings(database=path))
    (row,) = run_step("geolocate", step, [event(ip="81.2.69.160")])
    assert row["geo_country"] is None
    build_mmdb(path)
    (row,) = run_step("geolocate", step, [event(ip="81.2.69.160")])
    assert row["geo_city"] == "London"
    moved = {"81.2.69.0/24": {"country": {"iso_code": "IE"}, "city": {"names": {"en": "Dublin"}}}}
    build_mmdb(path, moved)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    (row,) = run_step("geolocate", step, [event(ip="81.2.69.160")])
    assert (row["geo_country"], row["geo_region"], row["geo_city"]) == ("IE", None, "Dublin")
    step.close()


def test_a_corrupt_database_is_a_warning_not_a_crash(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "corrupt.mmdb"
    path.write_bytes(b"this is not a maxmind database" * 10)
    step = Geolocate(GeoSettings(database=path))
    with caplog.at_level(logging.WARNING, logger="ingest.enrich.geolocate"):
        (row,) = run_step("geolocate", step, [event(ip="81.2.69.160")])
    assert row["geo_country"] is None
    assert "cannot read database" in caplog.text
