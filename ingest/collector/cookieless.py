"""The cookieless visitor id of dn.js hits: a daily hash of (tenant, IP, User-Agent, salt).

Until a visitor consents, dn.js stores and sends no identifier. The collector derives one
from what every request carries anyway, before the loader anonymises the IP:

    cl-<hex> = sha256(salt_of_the_day | tenant | client IP | User-Agent)[:16 bytes]

The salt is 32 random bytes drawn when the first hit of a UTC day arrives and held in the
collector's memory only; the previous day's is forgotten then. It is never written to the
envelope, the log or the lake, so yesterday's ids cannot be recomputed from anything stored,
and one visitor's ids on two days cannot be joined. Collector replicas (or a restart) draw
their own salts unless ``collector.visitor_salt_secret`` is set: then the day's salt is
HMAC-SHA256(secret, date), the same on every replica, and whoever holds the secret can
recompute past days' ids (docs/snippet.md weighs the two).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading

from pydantic import SecretStr

VISITOR_HEADER = "x-driftnet-visitor"
"""Envelope header carrying the cookieless visitor id of a dn.js hit."""
GPC_HEADER = "x-driftnet-gpc"
"""Envelope header set to ``1`` when the tenant honours Global Privacy Control and the
request carried ``Sec-GPC: 1``: the loader then keeps the cookieless id, whatever id the
event names."""
PREFIX = "cl-"
"""Cookieless ids start with it; persistent (consented) ids are dn.js's random uuids."""


class DailySalt:
    """The salt of the current UTC day; the previous day's is dropped when the day changes."""

    def __init__(self, secret: SecretStr | None = None) -> None:
        self._secret = secret
        self._lock = threading.Lock()
        self._day: dt.date | None = None
        self._salt = b""

    def today(self, now: dt.datetime | None = None) -> bytes:
        """The salt of ``now``'s UTC day (default: the current time)."""
        day = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
        with self._lock:
            if day != self._day:
                self._day = day
                if self._secret is None:
                    self._salt = secrets.token_bytes(32)
                else:
                    self._salt = hmac.digest(self._secret.get_secret_value().encode(),
                                             day.isoformat().encode(), "sha256")
            return self._salt


def visitor_id(salt: bytes, tenant: str, ip: str | None, user_agent: str | None) -> str:
    """The cookieless id of a visitor on the salt's day: ``cl-`` and 32 hex digits."""
    digest = hashlib.sha256(b"\0".join((
        salt, tenant.encode(), (ip or "").encode(), (user_agent or "").encode("utf-8",
                                                                               "replace"))))
    return PREFIX + digest.hexdigest()[:32]
