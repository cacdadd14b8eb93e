"""Settings of the lake's maintenance task (``[maintain]``, ``DRIFTNET_MAINTAIN__*``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MaintainSettings(BaseModel):
    """How the maintenance task keeps file counts bounded and the lake tidy."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run the maintenance task inside `driftnet up` "
                          "(with Kafka, run one `driftnet maintain` per lake instead).")
    interval_s: float = Field(10.0, gt=0, description="Seconds between maintenance passes.")
    fanout: int = Field(8, ge=2, le=64, description="Files of one size tier of an open "
                        "partition that are merged into one (size-tiered compaction): a "
                        "tenant-day holds at most about fanout-1 files per tier.")
    small_file_bytes: int = Field(256 * 1024, ge=1024, description="Upper size of the "
                                  "smallest tier; each next tier is `fanout` times larger.")
    target_file_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, description="Size at "
                                   "which files stop being merged, and the size of the files "
                                   "of a closed day's sorted rewrite.")
    closed_after_hours: float = Field(2.0, ge=0, description="A UTC day is closed (rewritten "
                                      "into large files sorted by visitor and time) this long "
                                      "after it ended; late batches after that only add files.")
    max_merge_bytes_per_pass: int = Field(2 * 1024 ** 3, ge=1024 * 1024, description="Bytes "
                                          "one pass may read to merge open partitions (the "
                                          "rest waits for the next pass).")
    max_closed_days_per_pass: int = Field(4, ge=1, description="Closed table-days one pass "
                                          "may rewrite.")
    sort_memory_limit: str = Field("2GB", description="DuckDB memory limit of a closed day's "
                                   "sort (it spills to disk beyond).")
    vacuum_interval_s: float = Field(3600.0, gt=0, description="Seconds between vacuums.")
    vacuum_retention_hours: int = Field(168, ge=0, description="Files superseded (compacted, "
                                        "expired) longer ago than this are deleted by vacuum; "
                                        "until then readers of older versions and pinned "
                                        "exports can still read them. 0 also deletes the "
                                        "files a running loader wrote and has not committed "
                                        "yet: only with no loader running.")
    log_retention_days: int = Field(7, ge=1, description="Delta log entries older than this "
                                    "are removed after a checkpoint.")
    checkpoint_interval: int = Field(100, ge=1, description="Commits between two checkpoints "
                                     "of a table's Delta log.")
