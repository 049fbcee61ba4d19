"""The experiment schema's ``data`` section: which bars a run reads, beside the loader.

Like ``FeatureConfig`` (features) and ``EnvConfig`` (environments), the section lives with
the code that reads it, so the env factory (``gym.make`` keyword arguments) validates its
data arguments with the same types and rules as the experiment schema
(``backend.config.experiment`` assembles the sections).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from backend.data_download.synthetic_market import MARKET_SCENARIOS
from backend.utils.config_model import ConfigModel, StrictStr


def _date_text(value: Any) -> Any:
    # YAML reads an unquoted 2024-01-02 as a date; it means the same as the string.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _calendar_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date (YYYY-MM-DD)") from None
    return value


def _known_market(value: str) -> str:
    if value not in MARKET_SCENARIOS:
        raise ValueError(
            f"unknown market scenario {value!r}; expected one of {list(MARKET_SCENARIOS)}"
        )
    return value


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


Ticker = Annotated[str, Field(strict=True, pattern=r"^[A-Z][A-Z0-9.\-^]{0,14}$")]
"""A symbol as the store spells it: upper case."""
DateText = Annotated[
    str,
    BeforeValidator(_date_text),
    Field(strict=True, pattern=r"^\d{4}-\d{2}-\d{2}$"),
    AfterValidator(_calendar_date),
]
"""A calendar date written YYYY-MM-DD (a YAML date is accepted and written back as text)."""
MarketName = Annotated[
    str,
    Field(strict=True, json_schema_extra={"enum": list(MARKET_SCENARIOS)}),
    AfterValidator(_known_market),
]
"""A scenario of the embedded synthetic market (a key of ``MARKET_SCENARIOS``)."""
DataDir = Annotated[StrictStr | None, BeforeValidator(_path_text)]
"""A bar store root (a path object is accepted and kept as text); ``None``: none given."""


class DataConfig(ConfigModel):
    """Which bars a run reads.

    The bar interval and VIX use are ``features`` fields (``features.interval``,
    ``features.use_vix``), where the feature pipeline reads them.
    """

    data_dir: DataDir = None
    """Bar store root (``intraday/<SYMBOL>/<interval>/*.csv``). ``null``: ``./data`` when
    it holds every symbol, else the embedded synthetic market (offline)."""
    database: DataDir = None
    """Bar database folder (``backend/database``, years of validated bars; ``python -m
    backend.database.db_manager``) read instead of a CSV store; excludes ``data_dir``."""
    symbols: tuple[Ticker, ...] = ("SPY",)
    """Tickers, upper case; each gets its own model. The trainer trains exactly one."""
    start: DateText | None = None
    """First date to load (YYYY-MM-DD); ``null``: the first the store has."""
    end: DateText | None = None
    """Last date to load, inclusive (YYYY-MM-DD); ``null``: the last the store has."""
    market: MarketName = "null"
    """Ground-truth scenario of the embedded synthetic market used when no store is given
    (a key of ``backend.data_download.synthetic_market.MARKET_SCENARIOS``): ``null`` plants
    no edge, ``momentum`` an AR(1) edge every encoder can see, ``sequence`` an edge only a
    window of single past bars shows. Each records its theoretical edge per bar. The main
    job with nothing choosing the data runs all of them (the ground-truth comparison)."""

    @field_validator("symbols")
    @classmethod
    def _distinct_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one symbol")
        if len(set(value)) != len(value):
            raise ValueError(f"symbols has duplicates: {list(value)}")
        return value

    @model_validator(mode="after")
    def _ordered_dates(self) -> DataConfig:
        check_date_order(self.start, self.end)
        if self.database is not None and self.data_dir is not None:
            raise ValueError("give data_dir (a CSV store) or database, not both")
        return self


def check_date_order(start: str | None, end: str | None) -> None:
    """Raise ``ValueError`` when both dates are given and ``start`` is after ``end``."""
    if start is not None and end is not None and start > end:
        raise ValueError(f"start {start} is after end {end}")
