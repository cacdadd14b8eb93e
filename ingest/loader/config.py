"""Loader settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LoaderSettings(BaseModel):
    """How the loader batches, writes and commits."""

    model_config = ConfigDict(extra="forbid")

    lake: str = Field("lake", description="Lake root: a directory, or an object-store URL "
                      "(s3://bucket/prefix, gs://..., az://...).")
    flush_interval_s: float = Field(1.0, gt=0, le=60, description="Flush a partition's batch "
                                    "at the latest this long after its first record arrived "
                                    "(the shortest interval; see max_flush_interval_s).")
    max_flush_interval_s: float = Field(30.0, gt=0, le=600, description="Longest flush "
                                        "interval: with many tenants the loader flushes less "
                                        "often, so that the files it adds (one per table and "
                                        "tenant-day a flush writes) stay near "
                                        "target_files_per_s.")
    target_files_per_s: float = Field(20.0, gt=0, description="New data files per second and "
                                      "table the flush interval aims at (see "
                                      "max_flush_interval_s).")
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
    write_threads: int = Field(2, ge=1, le=32, description="Threads writing a flush's data "
                               "files (one file per table and tenant-day).")
    poll_timeout_s: float = Field(0.1, gt=0, description="Longest wait of one transport poll.")
    forget_poll_s: float = Field(30.0, gt=0, description="Seconds between looks at the lake's "
                                 "forget receipts (the dedupe keys of forgotten events leave "
                                 "the loader's window).")
    lag_poll_s: float = Field(5.0, gt=0, description="Seconds between the loader's "
                              "measurements of its transport lag per partition (/metrics).")
    stats_interval_s: float = Field(60.0, gt=0, description="Seconds between the loader's "
                                    "INFO lines of counters and consumer lag.")

    @field_validator("lake", mode="before")
    @classmethod
    def _lake_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value
