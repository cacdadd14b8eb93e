from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigError
from schemas.tenants import load_tenants
from tests.support import EXAMPLE_TENANTS


def test_example_tenants_file_is_valid_and_has_three_tenants() -> None:
    tenants = load_tenants(EXAMPLE_TENANTS)
    assert len(tenants) >= 3
    for tenant in tenants:
        assert tenant.write_keys and tenant.allowed_origins


def test_lookup_by_key_and_id(tenants_file: Path) -> None:
    tenants = load_tenants(tenants_file)
    assert tenants.by_key("acme-key").id == "acme"  # type: ignore[union-attr]
    assert tenants.by_key("nope") is None
    assert tenants.by_id("globex") is not None


@pytest.mark.parametrize(
    ("allowed", "origin", "ok"),
    [
        ("https://shop.example", "https://shop.example", True),
        ("https://shop.example", "https://SHOP.example", True),
        ("https://shop.example", "http://shop.example", False),
        ("https://shop.example", "https://shop.example.evil.com", False),
        ("https://*.shop.example", "https://www.shop.example", True),
        ("https://*.shop.example", "https://shop.example", False),
        ("https://*.shop.example", "https://evilshop.example", False),
        # host boundaries: a path, userinfo or a port cannot smuggle the suffix in
        ("https://*.shop.example", "https://evil.com/.shop.example", False),
        ("https://*.shop.example", "https://evil.com?.shop.example", False),
        ("https://*.shop.example", "https://evil.com#.shop.example", False),
        ("https://*.shop.example", "https://x.shop.example@evil.com", False),
        ("https://*.shop.example", "https://www.shop.example:8443", False),
        ("https://*.shop.example", "https://a.b.shop.example", True),
        ("https://shop.example", "https://shop.example/", False),
        ("http://localhost:*", "http://localhost:5173", True),
        ("http://localhost:*", "http://localhost:5173.evil", False),
        ("http://localhost:*", "http://localhost", False),
        ("*", "https://anything.example", True),
    ],
)
def test_origin_rules(tmp_path: Path, allowed: str, origin: str, ok: bool) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[[tenant]]\nid = "t"\nwrite_keys = ["k"]\nallowed_origins = ["{allowed}"]\n')
    tenant = load_tenants(path).by_id("t")
    assert tenant is not None
    assert tenant.origin_allowed(origin) is ok


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[tenant]]\nid = "Bad Id"\nwrite_keys = ["k"]\n', "tenant.0.id"),
        ('[[tenant]]\nid = "a"\nwrite_keys = []\n', "write_keys"),
        # an empty key is a typo, not a secret (the key finders refuse an empty one)
        ('[[tenant]]\nid = "a"\nwrite_keys = [""]\n', r"tenant\.0\.write_keys.*empty"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k", " \\t"]\n', "write key 2 of 2 is empty"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\n[[tenant]]\nid = "a"\nwrite_keys = ["j"]\n',
         "appears twice"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\n[[tenant]]\nid = "b"\nwrite_keys = ["k"]\n',
         "shared by tenants"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nip_mode = "hash"\n', "ip_salt"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nallowed_origins = ["shop.example"]\n',
         "must look like"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nunknown = 1\n', "unknown"),
        # an empty salt is a key anyone has; a shared one links two tenants' visitors
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nip_mode = "hash"\nip_salt = ""\n',
         "non-empty ip_salt"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nip_mode = "hash"\nip_salt = "s3cret"\n'
         '[[tenant]]\nid = "b"\nwrite_keys = ["j"]\nip_mode = "hash"\nip_salt = "s3cret"\n',
         "share an ip_salt"),
        # values that broke every tenant's loading or maintenance
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\n[tenant.enrich]\n'
         'session_timeout_minutes = inf\n', "session_timeout_minutes"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nretention_days = 1000000\n',
         "retention_days"),
        # origins no request could ever match
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nallowed_origins = ["https://*.a.example:*"]\n',
         "must look like"),
        ('[[tenant]]\nid = "a"\nwrite_keys = ["k"]\nallowed_origins = ["https://-.example"]\n',
         "must look like"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_invalid_files_fail_loudly_with_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_tenants(path)


def test_write_keys_never_appear_in_errors_or_repr(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[tenant]]\nid = "a"\nwrite_keys = ["secret-1"]\n'
                    '[[tenant]]\nid = "b"\nwrite_keys = ["secret-1"]\n')
    with pytest.raises(ConfigError) as info:
        load_tenants(path)
    assert "secret-1" not in str(info.value)
    path.write_text('[[tenant]]\nid = "a"\nwrite_keys = ["secret-1"]\n')
    assert "secret-1" not in repr(load_tenants(path).by_id("a"))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_tenants("/nonexistent/tenants.toml")


def test_snippet_settings_and_alias_paths_unique_across_tenants(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    one = ('[[tenant]]\nid = "a"\nwrite_keys = ["ka"]\n[tenant.snippet]\n'
           'script_path = "/assets/app-7c1.js"\ningest_path = "/api/v/e"\nhonor_gpc = true\n')
    path.write_text(one)
    tenant = load_tenants(path).by_id("a")
    assert tenant is not None
    assert (tenant.snippet.script_path, tenant.snippet.ingest_path, tenant.snippet.honor_gpc) \
        == ("/assets/app-7c1.js", "/api/v/e", True)
    path.write_text(one + '[[tenant]]\nid = "b"\nwrite_keys = ["kb"]\n[tenant.snippet]\n'
                    'ingest_path = "/api/v/e"\n')
    with pytest.raises(ConfigError, match="used twice"):
        load_tenants(path)
    for bad in ("assets/x.js", "/x//y", "/x?y=1", "/x/", "/a/../b"):
        path.write_text(f'[[tenant]]\nid = "a"\nwrite_keys = ["ka"]\n[tenant.snippet]\n'
                        f'script_path = "{bad}"\n')
        with pytest.raises(ConfigError, match="absolute URL path"):
            load_tenants(path)
