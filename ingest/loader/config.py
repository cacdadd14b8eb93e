"""Loader settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class LoaderSettings(BaseModel):
    """How the loader batches, writes and commits."""

    model_config = ConfigDict(extra="forbid")

    lake: Path = Field(Path("lake"), description="Lake root directory.")
    flush_interval_s: float = Field(1.0, gt=0, le=60, description="Flush a partition's batch "
                                    "at the latest this long after its first record arrived.")
    max_batch_records: int = Field(2_000, ge=1, description="Flush once a partition's batch "
                                   "holds this many transport records (bundles).")
    max_batch_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Flush once a partition's "
                                 "batch holds this many bytes.")
    max_event_bytes: int = Field(32 * 1024, ge=1, description="Largest event of a batch; "
                                 "bigger ones are quarantined with reason 'size'.")
    max_batch_items: int = Field(2_500, ge=1, description="Most events one hit may carry.")
    dedupe_window_hours: float = Field(48.0, ge=0, description="Events whose tenant and event id "
                                       "were written this recently are flagged is_duplicate "
                                       "(0 turns dedupe off).")
    duckdb_threads: int = Field(1, ge=1, description="Threads DuckDB may use for a batch.")
    zstd_level: int = Field(3, ge=1, le=22, description="zstd level of the Parquet files.")
    poll_timeout_s: float = Field(0.1, gt=0, description="Longest wait of one transport poll.")
    stats_interval_s: float = Field(60.0, gt=0, description="Seconds between the loader's "
                                    "INFO lines of counters and consumer lag.")
