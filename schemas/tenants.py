"""Tenants: who may send events, from where, and how their data is treated.

The tenants file is TOML::

    [[tenant]]
    id = "acme"
    write_keys = ["acme-live-3f9c1e"]
    allowed_origins = ["https://shop.acme.example", "https://*.acme.example"]
    ip_mode = "truncate"        # truncate | hash | none
    retention_days = 400

A write key is also accepted as a Snowplow app id (``aid``) and a GA4 measurement id
(``tid``): whatever identifies the sender maps to exactly one tenant.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from schemas.errors import ConfigError, toml_file_error, validation_problems

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
# Exact host with an optional port or any port; or a subdomain wildcard with an optional
# exact port (origin_allowed matches no wildcard host with any port).
_ORIGIN = re.compile(rf"https?://(?:{_HOST}(:(\d+|\*))?|\*\.{_HOST}(:\d+)?)")

IpMode = Literal["truncate", "hash", "none"]
"""How client IPs are stored: ``truncate`` (IPv4 /24, IPv6 /48), ``hash`` (keyed), or
``none`` (as is)."""

EnrichStep = Literal["parse_campaign", "parse_referrer", "parse_user_agent", "detect_bot",
                     "geolocate", "sessionize"]
"""Enrichment steps a tenant may skip (anonymize_ip and derive_timestamps always run)."""


class TenantEnrich(BaseModel):
    """Per-tenant enrichment overrides (``[tenant.enrich]``); unset means the loader's setting.

    ::

        [tenant.enrich]
        skip = ["geolocate"]
        session_timeout_minutes = 60
        internal_hosts = ["checkout.acme.example", "paypal.com"]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    skip: tuple[EnrichStep, ...] = ()
    """Steps not run on this tenant's events (their columns stay as the protocol set them)."""
    session_timeout_minutes: Annotated[float, Field(gt=0, le=525_600)] | None = None
    """Inactivity that ends a server-side session, instead of the loader's default (at most a
    year)."""
    internal_hosts: tuple[str, ...] = ()
    """Hosts whose referrers count as internal, besides the page's own host."""


_ALIAS_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{1,200}")


class TenantSnippet(BaseModel):
    """How this tenant's dn.js is served and treated (``[tenant.snippet]``, docs/snippet.md).

    ::

        [tenant.snippet]
        script_path = "/assets/app-7c1.js"   # dn.js, served at this path too
        ingest_path = "/api/v/e"             # dn.js batches accepted at this path too
        honor_gpc = true
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    script_path: str | None = None
    """A path of the tenant's choosing the collector also serves dn.js at (first-party, behind
    the shop's proxy or CDN)."""
    ingest_path: str | None = None
    """A path of the tenant's choosing the collector also accepts dn.js batches at; only this
    tenant's write keys are accepted there."""
    honor_gpc: bool = False
    """Treat a request with ``Sec-GPC: 1`` (Global Privacy Control) as not consenting: its
    events keep the cookieless visitor id whatever id they name."""

    @field_validator("script_path", "ingest_path")
    @classmethod
    def _check_path(cls, path: str | None) -> str | None:
        if path is not None and (not _ALIAS_PATH.fullmatch(path) or "//" in path
                                 or "/../" in path + "/" or path.endswith("/")):
            raise ValueError(f"path {path!r} must be an absolute URL path like "
                             "/assets/app.js, without '..', '//', a query or a trailing '/'")
        return path


class Tenant(BaseModel):
    """One business customer. Tenants never see each other's data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=TENANT_ID_PATTERN)]
    """Tenant id; names the lake partition ``tenant=<id>``."""
    write_keys: Annotated[tuple[SecretStr, ...], Field(min_length=1)]
    """Keys that authenticate hits as this tenant (also Snowplow app ids, GA4 measurement ids);
    none empty or blank, none shared with another tenant."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to send with this tenant's keys: exact ``https://shop.example``,
    a subdomain wildcard ``https://*.shop.example``, any port ``http://localhost:*``, or
    ``*`` for any origin."""
    ip_mode: IpMode = "truncate"
    """How the client IP is anonymised before anything is written to the lake."""
    ip_salt: SecretStr | None = None
    """Secret salt for ``ip_mode = "hash"``; required in that mode."""
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 400
    """Days of data kept in the lake for this tenant (at most 36,500: a hundred years)."""
    enrich: TenantEnrich = TenantEnrich()
    """Enrichment overrides for this tenant."""
    snippet: TenantSnippet = TenantSnippet()
    """dn.js settings for this tenant: first-party path aliases, Global Privacy Control."""

    @field_validator("write_keys")
    @classmethod
    def _check_write_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for n, key in enumerate(keys, 1):
            if not key.get_secret_value().strip():
                # A typo, not a secret: no sender can authenticate with it (an empty key
                # is refused by every key finder) and a blank one is guessed at once.
                raise ValueError(f"write key {n} of {len(keys)} is empty or only whitespace")
        return keys

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"origin {origin!r} must look like https://host[:port], "
                    "https://*.host, http://host:* or '*'"
                )
        return tuple(o.lower() for o in origins)

    def origin_allowed(self, origin: str) -> bool:
        """True when a browser ``Origin`` header may send with this tenant's keys.

        Patterns match on host boundaries: ``https://*.acme.example`` allows
        ``https://shop.acme.example`` but not ``https://evil.com/.acme.example`` nor
        ``https://evilacme.example``; an origin that is not ``scheme://host[:port]`` matches
        nothing but ``*``.
        """
        origin = origin.lower()
        parsed = _parse_origin(origin)
        for allowed in self.allowed_origins:
            if allowed == "*":
                return True
            if parsed is None:
                continue
            if allowed == origin:
                return True
            scheme, host, port = parsed
            if allowed.endswith(":*"):
                pattern = _parse_origin(allowed[:-2])
                if pattern is not None and pattern[:2] == (scheme, host) and port is not None:
                    return True
            elif "://*." in allowed:
                pattern = _parse_origin(allowed.replace("://*.", "://", 1))
                if (pattern is not None and pattern[0] == scheme and pattern[2] == port
                        and host.endswith("." + pattern[1])):
                    return True
        return False


_ORIGIN_PARTS = re.compile(r"([a-z][a-z0-9+.-]*)://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])"
                     r"(?::([0-9]{1,5}))?")


def _parse_origin(origin: str) -> tuple[str, str, str | None] | None:
    """(scheme, host, port) of ``scheme://host[:port]``, else None (paths, userinfo, ...)."""
    match = _ORIGIN_PARTS.fullmatch(origin)
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3)


class TenantsFile(BaseModel):
    """The whole tenants file: a list of ``[[tenant]]`` tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: Annotated[tuple[Tenant, ...], Field(min_length=1)]

    @field_validator("tenant")
    @classmethod
    def _unique(cls, tenants: tuple[Tenant, ...]) -> tuple[Tenant, ...]:
        seen_ids: set[str] = set()
        seen_keys: dict[str, str] = {}
        seen_paths: dict[str, str] = {}
        seen_salts: dict[str, str] = {}
        for t in tenants:
            if t.id in seen_ids:
                raise ValueError(f"tenant id {t.id!r} appears twice")
            seen_ids.add(t.id)
            for key in t.write_keys:
                owner = seen_keys.setdefault(key.get_secret_value(), t.id)
                if owner != t.id:
                    # Print the owners, never the key itself.
                    raise ValueError(f"a write key is shared by tenants {owner!r} and {t.id!r}")
            if t.ip_mode == "hash":
                salt = t.ip_salt.get_secret_value() if t.ip_salt is not None else ""
                if not salt:
                    raise ValueError(f"tenant {t.id!r}: ip_mode 'hash' needs a non-empty "
                                     "ip_salt (an empty key lets anyone reverse the hashes)")
                other = seen_salts.setdefault(salt, t.id)
                if other != t.id:
                    # Equal salts give equal hashes: the tenants' visitors could be linked.
                    raise ValueError(f"tenants {other!r} and {t.id!r} share an ip_salt; give "
                                     "each its own")
            for path in (t.snippet.script_path, t.snippet.ingest_path):
                if path is None:
                    continue
                owner = seen_paths.setdefault(path, t.id)
                if owner != t.id or t.snippet.script_path == t.snippet.ingest_path:
                    raise ValueError(f"snippet path {path!r} is used twice (tenants "
                                     f"{owner!r} and {t.id!r})")
        return tenants


class Tenants:
    """Lookup over a validated tenants file: key -> tenant, id -> tenant."""

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self._by_id: dict[str, Tenant] = {}
        self._by_key: dict[str, Tenant] = {}
        for t in tenants:
            self._by_id[t.id] = t
            for key in t.write_keys:
                self._by_key[key.get_secret_value()] = t

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def ids(self) -> list[str]:
        """Tenant ids in file order."""
        return list(self._by_id)

    def by_key(self, key: str) -> Tenant | None:
        """The tenant owning a write key (or app id / measurement id), else None."""
        return self._by_key.get(key)

    def by_id(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, else None."""
        return self._by_id.get(tenant_id)

    def any_origin_allowed(self, origin: str) -> bool:
        """True when some tenant allows this origin (CORS preflights carry no key)."""
        return any(t.origin_allowed(origin) for t in self._by_id.values())


def is_tenant_id(value: str) -> bool:
    """True when ``value`` is a syntactically valid tenant id."""
    return bool(_TENANT_ID.fullmatch(value))  # match() let "acme\n" through ($)


def load_tenants(path: str | Path) -> Tenants:
    """Read and validate a tenants TOML file; raise ConfigError naming what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise toml_file_error("tenants file", path, exc) from exc
    try:
        parsed = TenantsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid tenants file: {validation_problems(exc)}",
                          path=str(path)) from exc
    return Tenants(parsed.tenant)
