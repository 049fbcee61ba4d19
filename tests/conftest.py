"""Fixtures shared by the test modules: temporary stores, synthetic bars, real data path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from backend.data_download.csv_store import write_sessions
from backend.data_download.market_calendar import expected_bar_starts, session_schedule

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""Real market files for tests (see its README.md); absent on users' machines."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data; skips the tests using it when it is not there."""
    if not (SHARED_DATA / "raw").is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    """An empty ``data`` folder (store root) inside the test's temporary directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path


def _make_bars(
    first_day: str,
    last_day: str | None = None,
    interval: str = "15m",
    *,
    extended_hours: bool = False,
    seed: int = 0,
    start_price: float = 100.0,
) -> pd.DataFrame:
    schedule = session_schedule(first_day, last_day or first_day)
    index = expected_bar_starts(schedule, interval, extended_hours=extended_hours).as_unit("ns")
    rng = np.random.default_rng(seed)
    n = len(index)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.r_[start_price, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 1e-3, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 1e-3, n))
    volume = rng.integers(1_000, 100_000, n).astype("float64")
    # Round like real quotes so CSV round trips are exact.
    data = {
        "open": np.round(open_, 4),
        "high": np.round(high, 4) + 0.0001,
        "low": np.round(low, 4) - 0.0001,
        "close": np.round(close, 4),
        "volume": volume,
    }
    return pd.DataFrame(data, index=index)


@pytest.fixture
def make_bars() -> Callable[..., pd.DataFrame]:
    """Factory of valid synthetic bar frames on the exchange calendar's grid.

    ``make_bars("2024-03-26", "2024-03-28", interval="15m", extended_hours=False, seed=0)``
    gives every scheduled bar of those sessions (26 on a full regular day, 14 on a half
    day), with consistent OHLC rounded to 4 decimals.
    """
    return _make_bars


@pytest.fixture
def write_store() -> Callable[..., list[Path]]:
    """Write a bar frame into a CSV store, one file per session (``csv_store``).

    ``write_store(frame, data_dir, symbol="SPY", interval="15m") -> list of paths``.
    """

    def write(
        frame: pd.DataFrame, data_dir: Path, symbol: str = "SPY", interval: str = "15m"
    ) -> list[Path]:
        return write_sessions(frame, data_dir, symbol, interval)

    return write


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Import a file of the top-level ``scripts/`` folder (not a package) by name."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_yooprl_script_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
        return module

    return load
