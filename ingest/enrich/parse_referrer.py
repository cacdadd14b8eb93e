"""parse_referrer: referrer_class and referrer_source of each event.

Classes, first match wins:

- ``paid``: an ad click id (gclid, gbraid, wbraid, dclid, msclkid, ttclid, li_fat_id), a
  paid ``utm_medium`` (cpc, ppc, paid*, cpm, display, ...) or an ad server's referrer.
  (fbclid and twclid are added to organic links too, so they alone do not mean paid.)
- ``email``: ``utm_medium`` email/newsletter (mail clients send no referrer), or a webmail
  referrer;
- ``direct``: no referrer;
- ``internal``: the referrer's host is the page's host, or one of the internal hosts
  configured globally or for the tenant (``[tenant.enrich] internal_hosts``);
- ``search`` / ``social`` / ``email``: the referrer is in the referrer list (referrers.py);
- ``social``: ``utm_medium`` social and an unknown referrer;
- ``other``: anything else.

``referrer_source`` names the search engine, network, mail service or ad network (Google,
Facebook, Gmail, ...); for ``other`` it is the referrer's host; NULL for direct and internal.
Runs after parse_campaign (page_host, utm_medium, click_id_type). Each distinct input is
classified once and cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from ingest.enrich import Batch
from ingest.enrich.config import ReferrerSettings
from ingest.enrich.lookup import DistinctFunction
from ingest.enrich.referrers import Referrers

PAID_CLICK_IDS: Mapping[str, str] = {
    "gclid": "Google", "gbraid": "Google", "wbraid": "Google", "dclid": "Google",
    "msclkid": "Bing", "ttclid": "TikTok", "li_fat_id": "LinkedIn",
}
"""Click ids that only ads carry, and the network they name."""
_PAID_MEDIUM = re.compile(r"^(cpc|ppc|cpm|cpv|cpa|cpp|paid.*|.*[_ -]paid|display|banner|"
                          r"retargeting|remarketing|affiliate|sem|shopping)$", re.IGNORECASE)
_EMAIL_MEDIUM = re.compile(r"^(e[-_ ]?mail|newsletter|mail|crm)$", re.IGNORECASE)
_SOCIAL_MEDIUM = re.compile(r"^(social|social[-_ ]?(network|media)|sm|organic[-_ ]?social)$",
                            re.IGNORECASE)


# Scheme, host and first path segment are all a referrer's class depends on (Google Images
# is google.com/imgres); dropping the rest makes distinct values few and the cache useful.
_REFERRER_PREFIX = r"regexp_extract(referrer, '^[^?#]*?//[^/?#]*(?:/[^/?#]*)?')"
_REFERRER_PREFIX = f"CASE WHEN referrer LIKE '%//%' THEN {_REFERRER_PREFIX} ELSE referrer END"


def _strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


class ReferrerClassifier:
    """Per (tenant, referrer, page host, utm medium/source, click id type): (class, source)."""

    def __init__(self, internal_hosts: Iterable[str] = (),
                 tenant_internal_hosts: Mapping[str, Iterable[str]] | None = None,
                 referrers: Referrers | None = None) -> None:
        self.referrers = referrers or Referrers()
        self.internal = tuple(h.lower() for h in internal_hosts)
        self.tenant_internal = {t: tuple(h.lower() for h in hosts)
                                for t, hosts in (tenant_internal_hosts or {}).items()}

    def _is_internal(self, tenant: str, host: str, page_host: str | None) -> bool:
        if page_host and _strip_www(host) == _strip_www(page_host.lower()):
            return True
        hosts = self.internal + self.tenant_internal.get(tenant, ())
        return any(host == h or host.endswith("." + h) for h in hosts)

    def classify(self, tenant: str, referrer: str | None, page_host: str | None,
                 utm_medium: str | None, utm_source: str | None,
                 click_id_type: str | None) -> tuple[str, str | None]:
        """(referrer_class, referrer_source)."""
        medium = (utm_medium or "").strip()
        host, path, app = "", "", False
        if referrer and referrer.strip():
            try:
                parts = urlsplit(referrer.strip())
                app = parts.scheme == "android-app"
                host, path = (parts.hostname or "").lower(), parts.path
            except ValueError:
                host = ""
        known = self.referrers.lookup(host, "" if app else path) if host else None
        network = PAID_CLICK_IDS.get(click_id_type or "")
        if network is not None:
            return "paid", network
        if _PAID_MEDIUM.match(medium) or (known is not None and known[0] == "paid"):
            return "paid", known[1] if known is not None else utm_source
        if _EMAIL_MEDIUM.match(medium):
            return "email", known[1] if known is not None else utm_source
        if not referrer or not referrer.strip():
            return "direct", None
        if host and not app and self._is_internal(tenant, host, page_host):
            return "internal", None
        if known is not None and known[0] in ("search", "social", "email"):
            return known
        if _SOCIAL_MEDIUM.match(medium):
            return "social", known[1] if known is not None else utm_source or host or None
        if known is not None:
            return "other", known[1]
        return "other", _strip_www(host) or None


class ParseReferrer:
    """The parse_referrer step."""

    def __init__(self, settings: ReferrerSettings | None = None,
                 tenant_internal_hosts: Mapping[str, Iterable[str]] | None = None) -> None:
        self.settings = settings or ReferrerSettings()
        self.classifier = ReferrerClassifier(self.settings.internal_hosts, tenant_internal_hosts)
        self.function = DistinctFunction("enrich_referrer", self.classifier.classify,
                                         ["VARCHAR"] * 6,
                                         {"class": pa.string(), "source": pa.string()},
                                         self.settings.cache_size)

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, batch: Batch) -> str:
        """Fill referrer_class and referrer_source where NULL."""
        found = self.function.call(con, "tenant", _REFERRER_PREFIX, "page_host", "utm_medium",
                                   "utm_source", "click_id_type")
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW enrich_referrer AS
            SELECT * REPLACE (coalesce(referrer_class, ({found})."class") AS referrer_class,
                              coalesce(referrer_source, ({found}).source) AS referrer_source)
            FROM {relation}""")
        return "enrich_referrer"
