"""Fixtures shared by the test modules: temporary stores, synthetic bars, real data path."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from backend.data_download.csv_store import write_sessions
from backend.data_download.market_calendar import expected_bar_starts, session_schedule

# The main job's --workers defaults to one process per core; tests run its jobs in this
# process so that their monkeypatches reach the jobs (a test that wants a pool says so).
os.environ.setdefault("YOOPRL_WORKERS", "1")

SHARED_DATA = Path(
    os.environ.get("YOOPRL_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
"""Real market files for tests (see its README.md); absent on users' machines.

``../shared/data`` beside the checkout, or ``YOOPRL_SHARED_DATA`` for a checkout elsewhere
(a git worktree)."""


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


LIVE_FEATURES_KWARGS: dict[str, object] = {
    "use_technical": False,
    "use_volume": False,
    "return_horizons": (1, 4),
}
"""Features of the tiny live-trading bundle: short lookback (3 sessions) so replays are quick."""


@pytest.fixture(scope="session")
def tiny_live_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manual-encoder SPY bundle trained for 120 steps on 12 synthetic sessions (seconds).

    Shared by the live-trader end-to-end tests; built once per test session.
    """
    from backend.config.experiment import resolve_experiment
    from backend.data_download.dataset import SymbolDataset
    from backend.data_download.loader import join_vix_asof
    from backend.data_download.synthetic_market import (
        SyntheticMarketConfig,
        generate_synthetic_market,
    )
    from backend.models.model_manager import save_bundle
    from backend.training.train import split_sessions, train_on_range

    config = resolve_experiment(
        overrides={
            "features": LIVE_FEATURES_KWARGS,
            "encoder": {"name": "manual", "embedding_dim": 8, "hidden_dims": [16]},
            "training": {
                "net_arch": [16],
                "total_timesteps": 120,
                "batch_size": 16,
                "buffer_size": 1_000,
                "learning_starts": 50,
                "eval_every_steps": 120,
                "device": "cpu",
                "seed": 5,
                "tensorboard_log": None,
            },
            "env": {"episode_sessions": 2, "long_only": True},
        }
    )
    features = config.features
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-09-02", end=None, n_sessions=12, seed=11)
    )
    dataset = SymbolDataset.from_market(
        "SPY", join_vix_asof(frames["SPY"], frames["VIX"]), features
    )
    fit, val = split_sessions(dataset.sessions, val_fraction=0.2, gap_sessions=1)
    result = train_on_range(dataset, fit, val, config)
    path = tmp_path_factory.mktemp("bundle") / "spy"
    save_bundle(
        path,
        result.model,
        result.normalizer,
        config=result.config,
        metadata={"symbols": ["SPY"], "seed": config.training.seed},
    )
    return path


WALK_FORWARD_TINY_CONFIG = """
walk_forward:
  train_sessions: 12
  test_sessions: 3
  max_windows: 2
training:
  total_timesteps: 150
  learning_starts: 50
  batch_size: 16
  buffer_size: 1000
  eval_every_steps: 75
"""
"""A walk-forward run file small enough for end-to-end runner tests (seconds per job)."""


@pytest.fixture(scope="module")
def walk_forward_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 40-session synthetic store, ``tiny.yaml``, and the CLI's output roots moved to tmp."""
    from backend.data_download.synthetic_market import (
        SyntheticMarketConfig,
        write_synthetic_market,
    )
    from backend.scripts import run_walk_forward as cli

    root = tmp_path_factory.mktemp("wf")
    write_synthetic_market(
        root / "store", SyntheticMarketConfig(start="2024-01-02", end=None, n_sessions=40, seed=11)
    )
    (root / "tiny.yaml").write_text(WALK_FORWARD_TINY_CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "EXPERIMENTS_DIR", root / "experiments")
        mp.setattr(cli, "BASELINE_RUNS_DIR", root / "baseline_runs")
        mp.setattr(cli, "CROSS_MODE_REPORT", root / "Docs" / "Transformer_Experiment_Report.md")
        yield root
