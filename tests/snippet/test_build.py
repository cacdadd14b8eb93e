"""The dn.js build: reproducible from snippet/ with the pinned terser, within its size budget,
and the integrity value docs/snippet.md publishes is the build's."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import orjson
import pytest

from ingest.collector.snippet import STATIC, build
from tests.support import ROOT

GZIP_BUDGET = 3 * 1024
"""dn.js, gzipped (level 9), must stay within 3 KB."""
LOADER_BUDGET = 300
"""The inline loader a page pastes, minified, in bytes."""


@pytest.fixture(scope="module")
def rebuilt() -> dict[str, str]:
    node = shutil.which("node")
    assert node is not None, "node missing: the snippet is built with node (make test-deps)"
    assert (ROOT / "node_modules" / "terser").is_dir(), "terser missing: run `make test-deps`"
    out = subprocess.run([node, "snippet/build.mjs", "--stdout"], cwd=ROOT, check=True,
                         capture_output=True, timeout=120)
    built: dict[str, str] = orjson.loads(out.stdout)
    return built


def test_the_committed_build_is_what_the_sources_build_to(rebuilt: dict[str, str]) -> None:
    assert set(rebuilt) == {"dn.js", "loader.js"}
    for name, code in rebuilt.items():
        assert (STATIC / name).read_text() == code, (
            f"{name} is stale: run `make snippet` and commit ingest/collector/static/")


def test_dn_js_fits_its_gzip_budget() -> None:
    size = len(gzip.compress(build().code, 9, mtime=0))
    assert 1000 < size <= GZIP_BUDGET, f"dn.js is {size} bytes gzipped"


def test_the_loader_is_about_300_bytes() -> None:
    loader = (STATIC / "loader.js").read_bytes()
    assert len(loader) <= LOADER_BUDGET
    assert b"dn.q" in loader and b"async" in loader


def test_docs_publish_this_builds_version_and_integrity() -> None:
    b = build()
    doc = (ROOT / "docs" / "snippet.md").read_text()
    assert f"/dn/{b.version}.js" in doc
    assert f'integrity="{b.integrity}"' in doc
    gzipped = len(gzip.compress(b.code, 9, mtime=0))
    assert f"| size | {len(b.code)} bytes minified, {gzipped} bytes gzipped" in doc
    assert (STATIC / "loader.js").read_text().strip() in doc
