"""What an export is: tenant, recipe, time splits, output format and recipe parameters.

A spec is everything needed, with the manifest's list of input files, to produce the same
bytes again; it is stored in the manifest as ``parameters``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analytics.export.errors import ExportSpecError
from analytics.money import FxRates
from schemas.tenants import is_tenant_id

Recipe = Literal["sessions", "intent", "sql"]
RECIPES: tuple[Recipe, ...] = ("sessions", "intent", "sql")
ExportFormat = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[ExportFormat, ...] = ("parquet", "csv", "jsonl")
EXTENSIONS: dict[ExportFormat, str] = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
SPLIT_PARAMS = ("split_start", "split_end")
"""Named parameters a ``sql`` recipe query uses to select one split's rows."""


def parse_time(value: str | dt.datetime | None) -> dt.datetime | None:
    """An ISO date or date-time; naive values are UTC."""
    if value is None or isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ExportSpecError("not an ISO date or date-time", value=value) from None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


@dataclass(frozen=True)
class Split:
    """Sessions starting in [start, end); events at or after ``end`` are not read."""

    name: str
    start: dt.datetime | None
    end: dt.datetime | None


class ExportSpec(BaseModel):
    """Parameters of one export (the manifest's ``parameters``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    recipe: Recipe
    format: ExportFormat = "parquet"
    train_end: dt.datetime | None = Field(None, description="Sessions starting before go to "
                                          "train; events at or after are never read for it.")
    valid_end: dt.datetime | None = Field(None, description="Sessions starting in "
                                          "[train_end, valid_end) go to valid; later to test.")
    query: str | None = Field(None, description="SQL over the views (recipe sql only).")
    params: dict[str, str] = Field(default_factory=dict, description="Named query parameters "
                                   "(recipe sql).")
    max_prefix: int = Field(20, ge=1, le=1000, description="Longest prefix (events) per "
                            "session (recipe intent).")
    rates: FxRates | None = Field(None, description="Reporting currency and exchange rates "
                                  "(kept whole, so the export reproduces with them).")

    @field_validator("tenant")
    @classmethod
    def _tenant_id(cls, value: str) -> str:
        # Checked here, not only by connect(): the input files are listed (and hashed) first.
        if not is_tenant_id(value):
            raise ExportSpecError("not a valid tenant id", tenant=value)
        return value

    @field_validator("train_end", "valid_end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_time(value) if isinstance(value, str | dt.datetime) else value

    @model_validator(mode="after")
    def _consistent(self) -> ExportSpec:
        if self.valid_end is not None and self.train_end is None:
            raise ExportSpecError("--valid-end needs --train-end")
        if self.train_end and self.valid_end and self.valid_end <= self.train_end:
            raise ExportSpecError("--valid-end must be after --train-end",
                                  train_end=self.train_end.isoformat(),
                                  valid_end=self.valid_end.isoformat())
        if (self.recipe == "sql") != (self.query is not None):
            raise ExportSpecError("--query is required by, and only allowed with, recipe sql",
                                  recipe=self.recipe)
        if self.recipe == "sql" and self.train_end is not None:
            assert self.query is not None
            missing = [p for p in SPLIT_PARAMS if not re.search(rf"\${p}\b", self.query)]
            if missing:
                raise ExportSpecError(
                    "a split sql export must select each split's rows with $split_start and "
                    "$split_end (NULL when unbounded), e.g. WHERE ($split_start IS NULL OR "
                    "start >= $split_start) AND ($split_end IS NULL OR start < $split_end)",
                    missing=", ".join(missing))
        clash = set(self.params) & set(SPLIT_PARAMS)
        if clash:
            raise ExportSpecError("parameter names reserved for splits", names=sorted(clash))
        return self

    def splits(self) -> list[Split]:
        """The time splits: all; train/test; or train/valid/test."""
        if self.train_end is None:
            return [Split("all", None, None)]
        if self.valid_end is None:
            return [Split("train", None, self.train_end), Split("test", self.train_end, None)]
        return [Split("train", None, self.train_end),
                Split("valid", self.train_end, self.valid_end),
                Split("test", self.valid_end, None)]
