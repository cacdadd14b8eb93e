"""geolocate: country, region and city of the client IP, from a MaxMind-format database.

Any ``.mmdb`` file with the GeoIP2 City / Country layout works: MaxMind's GeoLite2-City or
GeoIP2-City, DB-IP's free "IP to City Lite". The path is configured
(``enrich.geo.database``); the file is re-opened when it changes (geoipupdate replaces it
weekly) and, when it is not there, the geo columns stay NULL and one warning is logged.

Runs on the full IP, before anonymize_ip. Each distinct IP of a batch is looked up once.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import duckdb
import maxminddb
import pyarrow as pa

from ingest.enrich import Batch
from ingest.enrich.config import GeoSettings
from ingest.enrich.lookup import DistinctFunction

log = logging.getLogger(__name__)

_OUTPUTS = {"country": pa.string(), "region": pa.string(), "city": pa.string()}


def _name(record: Any) -> str | None:
    names = record.get("names") if isinstance(record, dict) else None
    if isinstance(names, dict):
        name = names.get("en")
        return name if isinstance(name, str) else None
    return None


def place(record: Any) -> tuple[str | None, str | None, str | None]:
    """(country ISO code, region, city) of a GeoIP2 City/Country record.

    Region is the ISO 3166-2 subdivision code when the database has one (GeoLite2), else
    the subdivision's English name (DB-IP lite).
    """
    if not isinstance(record, dict):
        return None, None, None
    country = None
    for key in ("country", "registered_country"):
        entry = record.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("iso_code"), str):
            country = entry["iso_code"]
            break
    region = None
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], dict):
        code = subdivisions[0].get("iso_code")
        region = code if isinstance(code, str) else _name(subdivisions[0])
    return country, region, _name(record.get("city"))


def normalise_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``value``; IPv4-mapped IPv6 (``::ffff:1.2.3.4``) as IPv4; else None."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Geolocate:
    """The geolocate step."""

    def __init__(self, settings: GeoSettings | None = None) -> None:
        self.settings = settings or GeoSettings()
        self._reader: maxminddb.Reader | None = None
        self._stamp: tuple[int, int] | None = None
        self._warned = False
        self.function = self._function()

    def _function(self) -> DistinctFunction:
        return DistinctFunction("enrich_geo", self._locate, ["VARCHAR"], _OUTPUTS,
                                self.settings.cache_size)

    def _warn_once(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message, *args)

    def reader(self) -> maxminddb.Reader | None:
        """The open database, re-opened when its file changed; None when there is none."""
        path: Path | None = self.settings.database
        if path is None:
            if not self._warned:
                self._warned = True
                log.info("geolocate: no database configured (enrich.geo.database); "
                         "geo columns stay NULL")
            return None
        try:
            st = path.stat()
        except OSError:
            self._warn_once("geolocate: database %s not found; geo columns stay NULL "
                            "until it appears", path)
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self.close()
            try:
                self._reader = maxminddb.open_database(str(path))
            except (OSError, maxminddb.InvalidDatabaseError) as exc:
                self._warn_once("geolocate: cannot read database %s (%s); geo columns stay "
                                "NULL", path, exc)
                return None
            self._stamp = stamp
            self._warned = False
            # Results of the previous file must not outlive it.
            self.function = self._function()
            log.info("geolocate: using %s (%s, built %d)", path,
                     self._reader.metadata().database_type,
                     self._reader.metadata().build_epoch)
        return self._reader

    def _locate(self, value: str | None) -> tuple[str | None, str | None, str | None]:
        ip = normalise_ip(value) if value is not None else None
        if ip is None or self._reader is None:
            return None, None, None
        return place(self._reader.get(ip))

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Fill geo_country, geo_region and geo_city from ``ip`` where they are NULL."""
        if self.reader() is None:
            return relation
        found = self.function.call(con, "ip")
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW enrich_geo AS
            SELECT * REPLACE (coalesce(geo_country, ({found}).country) AS geo_country,
                              coalesce(geo_region, ({found}).region) AS geo_region,
                              coalesce(geo_city, ({found}).city) AS geo_city)
            FROM {relation}""")
        return "enrich_geo"

    def close(self) -> None:
        """Close the database file."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            self._stamp = None
