"""Where a lake lives: a local directory or an object-store URL, with its storage options.

Every command takes ``--lake`` as a path (``./lake``) or a URL (``s3://bucket/prefix``,
``gs://...``, ``az://...``). A :class:`LakeLocation` turns it into what each library needs:
the table URIs and storage options of delta-rs, and a pyarrow filesystem plus a path inside
it for reading and writing data files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import duckdb
import pyarrow.fs as pafs

from schemas.errors import ConfigError, LakeError

REMOTE_SCHEMES: Final = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
"""URL schemes of object stores a lake may live on."""


@dataclass(frozen=True)
class LakeLocation:
    """A lake root: ``uri`` is an absolute local path or an object-store URL."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, lake: str | Path | LakeLocation,
              storage_options: Mapping[str, str] | None = None) -> LakeLocation:
        """A location from a ``--lake`` value (a path, or a URL with a known scheme)."""
        if isinstance(lake, LakeLocation):
            return lake
        text = str(lake)
        scheme = urlparse(text).scheme.lower()
        if scheme in REMOTE_SCHEMES:
            return cls(text.rstrip("/"), dict(storage_options or {}))
        if scheme == "file":
            text = urlparse(text).path
        elif scheme and len(scheme) > 1:
            raise ConfigError("unsupported lake URL scheme (use a path, s3://, gs:// or az://)",
                              lake=text)
        return cls(str(Path(text).expanduser().resolve()), dict(storage_options or {}))

    @property
    def is_local(self) -> bool:
        """True for a directory on this machine's filesystem."""
        return urlparse(self.uri).scheme.lower() not in REMOTE_SCHEMES

    @property
    def path(self) -> Path:
        """The local directory (only for local lakes)."""
        if not self.is_local:
            raise ConfigError("this operation needs a local lake directory", lake=self.uri)
        return Path(self.uri)

    def exists(self) -> bool:
        """Whether there is a lake here: a local directory, or objects under the
        object-store prefix (a prefix without any is no lake; a typo looks like that)."""
        if self.is_local:
            return Path(self.uri).is_dir()
        fs, root = self.filesystem()
        return bool(fs.get_file_info(root).type != pafs.FileType.NotFound)

    def must_exist(self) -> None:
        """Raise ``LakeError`` unless :meth:`exists`: a command that reads or changes a lake
        must not take a mistyped one for an empty one, nor create it."""
        if not self.exists():
            raise LakeError("lake directory not found" if self.is_local
                            else "no lake at this location (no object under the prefix)",
                            lake=self.uri)

    def join(self, *parts: str) -> str:
        """URI of a path below the lake root."""
        return "/".join([self.uri.rstrip("/"), *(p.strip("/") for p in parts)])

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the lake root's path inside it."""
        if self.is_local:
            return pafs.LocalFileSystem(), self.uri
        fs, path = pafs.FileSystem.from_uri(self.uri)
        return fs, path

    def register_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read (and write) this lake's URIs: for an object store, register its
        pyarrow filesystem with DuckDB through fsspec (DuckDB's httpfs extension cannot be
        installed everywhere; this needs none). Nothing to do for a local lake.

        Only for connections the pipeline itself runs: a tenant's analytics session reads
        the object store through Arrow datasets instead (analytics/connect.py), since a
        registered filesystem would reach every object the credentials can read."""
        if self.is_local:
            return
        scheme = urlparse(self.uri).scheme.lower()
        wrapper = _fsspec_wrapper(scheme)
        if not con.filesystem_is_registered(wrapper.protocol[0]):
            con.register_filesystem(wrapper(self.filesystem()[0]))

    def __str__(self) -> str:
        return self.uri


def _fsspec_wrapper(scheme: str) -> type[Any]:
    """An fsspec wrapper of a pyarrow filesystem answering to ``scheme://`` URLs."""
    from fsspec.implementations.arrow import ArrowFSWrapper  # type: ignore[import-untyped]

    names = {"s3": ("s3", "s3a"), "s3a": ("s3", "s3a"), "gs": ("gs", "gcs"),
             "gcs": ("gs", "gcs")}.get(scheme, (scheme,))
    return type(f"DriftnetArrowFS_{scheme}", (ArrowFSWrapper,), {"protocol": names})
