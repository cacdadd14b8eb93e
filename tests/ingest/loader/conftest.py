"""Fixtures of the loader tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.loader.config import LoaderSettings
from ingest.loader.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    """A real loader pipeline with the default settings, shared by a module's tests."""
    p = Pipeline(LoaderSettings())
    yield p
    p.close()
