"""Exchange rates an operator provides, for revenue in one reporting currency.

The lake keeps every amount with the currency it was sent in; nothing is converted unless
asked. Asked (``--rates FILE --reporting-currency EUR``, or ``connect(..., rates=...)``),
the ``sessions``, ``orders`` and ``users`` views gain ``revenue_converted``: each amount
times the rate of its currency on its day, the latest rate on or before that day. An amount
whose currency has no rate by then makes the converted total NULL, never a partial sum.

A rates file is CSV or Parquet with columns ``date`` (ISO date), ``currency`` (ISO 4217
code) and ``rate``: how many units of the reporting currency one unit of ``currency`` is
worth that day. The reporting currency itself needs no row (its rate is 1).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analytics.errors import AnalyticsError

_CODE = re.compile(r"[A-Z]{3}")
RATES_SCHEMA = pa.schema([("date", pa.date32()), ("currency", pa.string()),
                          ("rate", pa.float64())])
"""Arrow schema of the ``fx_rates`` table of a connection."""


class RatesError(AnalyticsError):
    """A rates file is unreadable or holds a bad row (retrying will not help)."""


class Rate(BaseModel):
    """One day's rate of one currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date
    currency: str
    rate: float = Field(gt=0)

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.fullmatch(value):
            raise ValueError(f"not an ISO 4217 code: {value!r}")
        return value


class FxRates(BaseModel):
    """A reporting currency and the daily rates into it (stored whole in export manifests,
    so an export reproduces with the rates it used)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reporting_currency: str
    rates: tuple[Rate, ...] = ()

    @field_validator("reporting_currency")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.fullmatch(value):
            raise ValueError(f"not an ISO 4217 code: {value!r}")
        return value

    def table(self) -> pa.Table:
        """The ``fx_rates`` rows, the reporting currency's own rate of 1 included."""
        rows: list[dict[str, Any]] = [r.model_dump() for r in self.rates
                                      if r.currency != self.reporting_currency]
        rows.append({"date": dt.date.min, "currency": self.reporting_currency, "rate": 1.0})
        return pa.Table.from_pylist(rows, schema=RATES_SCHEMA)


def load_rates(path: Path, reporting_currency: str) -> FxRates:
    """Read a rates file (CSV, or Parquet by its ``.parquet`` suffix); RatesError names the
    first bad row."""
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
                column_types={"date": pa.string(), "currency": pa.string(),
                              "rate": pa.string()}))
    except (OSError, pa.ArrowInvalid) as exc:
        raise RatesError("cannot read the rates file", path=str(path), error=str(exc)) from None
    missing = [c for c in RATES_SCHEMA.names if c not in table.column_names]
    if missing:
        raise RatesError("the rates file lacks columns (date, currency, rate are needed)",
                         path=str(path), missing=", ".join(missing))
    rates = []
    for number, row in enumerate(table.select(RATES_SCHEMA.names).to_pylist(), start=1):
        try:
            rate = float(row["rate"])
            if not math.isfinite(rate):
                raise ValueError("rate is not a finite number")
            rates.append(Rate(date=row["date"], currency=str(row["currency"]).strip().upper(),
                              rate=rate))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RatesError("bad row in the rates file", path=str(path), row=number,
                             column=".".join(map(str, first["loc"])),
                             error=first["msg"]) from None
        except (TypeError, ValueError) as exc:
            raise RatesError("bad row in the rates file", path=str(path), row=number,
                             error=str(exc)) from None
    try:
        return FxRates(reporting_currency=reporting_currency.strip().upper(),
                       rates=tuple(rates))
    except ValidationError as exc:
        raise RatesError("bad reporting currency", currency=reporting_currency,
                         error=exc.errors()[0]["msg"]) from None
