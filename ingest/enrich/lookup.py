"""Python once per distinct value: how steps that need a library stay set-at-a-time.

A batch of 50,000 events holds a few hundred distinct user agents and a few thousand
distinct IPs. A :class:`DistinctFunction` is a vectorised DuckDB scalar function: DuckDB
hands it a chunk of up to 2,048 rows as Arrow arrays; it finds the distinct argument tuples
of the chunk (Arrow dictionary encoding and numpy, in C), calls the Python function once per
distinct tuple through an LRU cache that lives across batches, and scatters the results
back with one Arrow ``take``. A step is thus a plain SQL expression in a view, computed in
the same single pass as every other step, with no join and no extra scan of the batch.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.func import FunctionNullHandling, PythonUDFType

_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN", pa.int64(): "BIGINT"}


def _dense_codes(array: pa.Array) -> np.ndarray:
    """Codes 0..k-1 of the distinct values of ``array`` (NULL is a value), in order seen."""
    return np.asarray(pc.dictionary_encode(array, null_encoding="encode").indices,
                      dtype=np.int64)


class DistinctFunction:
    """``fn(*args) -> tuple of outputs`` as a DuckDB function returning a STRUCT."""

    def __init__(self, name: str, fn: Callable[..., tuple[Any, ...]],
                 params: list[str], outputs: Mapping[str, pa.DataType],
                 cache_size: int) -> None:
        # Unique per instance: two chains on one connection must not share a function.
        self.name = f"{name}_{id(self):x}"
        self.params: list[str] = params
        self.outputs = dict(outputs)
        self._cached = lru_cache(maxsize=cache_size)(fn)
        self._struct = pa.struct([(n, t) for n, t in self.outputs.items()])
        self._return = duckdb.struct_type({n: _DUCKDB_TYPES[t] for n, t in self.outputs.items()})

    def call(self, con: duckdb.DuckDBPyConnection, *args: str) -> str:
        """SQL calling the function on ``con`` with SQL argument expressions ``args``."""
        # Raises when an earlier batch registered it on this connection already.
        with contextlib.suppress(duckdb.NotImplementedException):
            con.create_function(self.name, self._entry(), list(self.params), self._return,
                                type=PythonUDFType.ARROW,
                                null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
        return f"{self.name}({', '.join(args)})"

    def field(self, con: duckdb.DuckDBPyConnection, output: str, *args: str) -> str:
        """SQL for one output of the function."""
        return f"({self.call(con, *args)}).{output}"

    def _entry(self) -> Callable[..., pa.Array]:
        """``_vectorised`` with a signature of the function's arity (DuckDB checks it)."""

        def entry(*columns: pa.Array | pa.ChunkedArray) -> pa.Array:
            return self._vectorised(*columns)

        entry.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(f"a{i}", inspect.Parameter.POSITIONAL_ONLY)
             for i in range(len(self.params))])
        return entry

    def _vectorised(self, *columns: pa.Array | pa.ChunkedArray) -> pa.Array:
        arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        codes = _dense_codes(arrays[0])
        for array in arrays[1:]:
            # Combine column codes pairwise, re-densifying so the product cannot overflow.
            more = _dense_codes(array)
            codes = _dense_codes(pa.array(codes * (int(more.max()) + 1) + more))
        distinct = int(codes.max()) + 1 if len(codes) else 0
        # First row of each distinct tuple: with repeated indices the last write wins, so
        # writing in reverse row order leaves the first occurrence.
        first = np.empty(distinct, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        rows = pa.array(first)
        values = [a.take(rows).to_pylist() for a in arrays]
        fn = self._cached
        results = [fn(*args) for args in zip(*values, strict=True)]
        fields = [pa.array([r[j] for r in results], type=t)
                  for j, t in enumerate(self.outputs.values())]
        table = pa.StructArray.from_arrays(fields, fields=list(self._struct))
        return table.take(pa.array(codes))

    def cache_info(self) -> Any:
        """Hits and misses of the cache (bench and tests)."""
        return self._cached.cache_info()
