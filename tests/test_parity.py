"""Backtest/paper parity: the paper trader reproduces the env's test rollout bar for bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.config.env_config import EnvConfig
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import SyntheticMarketConfig, generate_synthetic_market
from backend.environments.actions import action_to_target, apply_deadband
from backend.execution.live_trader import policy_from_bundle
from backend.execution.parity import compare, main
from backend.models.model_manager import load_bundle


@pytest.fixture(scope="module")
def market():
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-09-02", end=None, n_sessions=9, seed=3)
    )
    return join_vix_asof(frames["SPY"], frames["VIX"])


def run(bundle_dir: Path, market, accounting: str = "backtest"):
    bundle = load_bundle(bundle_dir)
    days = sorted({t.date() for t in market.index})
    return compare(
        market,
        symbol="SPY",
        feature_config=bundle.feature_config,
        normalizer=bundle.normalizer,
        env_config=bundle.env_config,
        policy=policy_from_bundle(bundle),
        start=str(days[-3]),
        end=str(days[-1]),
        accounting=accounting,
    )


def test_paper_trader_matches_the_env_rollout_bar_for_bar(tiny_live_bundle: Path, market) -> None:
    report = run(tiny_live_bundle, market)
    assert report.n_bars >= 3 * 26
    assert report.ok, report.summary()
    for col in ("target", "position", "trade_cost", "net_return"):
        assert report.max_abs_diff[col] <= 1e-9
    # The first decision of each day (at the previous close) is traded at the open.
    opens = [r for r in report.rows if r["bar"].endswith("13:30:00+00:00")]
    assert opens and all(abs(r["env_target"] - r["trader_target"]) <= 1e-12 for r in opens)
    assert any(r["env_trade_cost"] > 0 for r in report.rows)  # it did trade
    assert report.trader_total_return == pytest.approx(report.env_total_return, abs=1e-9)


def test_share_accounting_is_the_documented_difference(tiny_live_bundle: Path, market) -> None:
    """``accounting: shares`` holds shares whose weight drifts: close to, not equal to, the env."""
    report = run(tiny_live_bundle, market, accounting="shares")
    assert not report.ok
    assert report.max_abs_diff["net_return"] < 5e-3  # drift and sizing, not a different policy


def test_one_action_mapping_for_env_and_trader() -> None:
    cfg = EnvConfig(long_only=True, max_position=0.8)
    assert action_to_target(np.array([0.0]), cfg) == pytest.approx(0.4)
    assert action_to_target(5.0, cfg) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="finite"):
        action_to_target(float("nan"), cfg)
    assert apply_deadband(0.01, 0.0, 0.05) == 0.0
    assert apply_deadband(0.0, 0.02, 0.05) == 0.02  # a flat target inside the band is not traded
    assert apply_deadband(0.3, 0.0, 0.05) == 0.3


def test_parity_command_writes_the_diff(
    tiny_live_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "--bundle",
                str(tiny_live_bundle),
                "--data-dir",
                str(tmp_path),
                "--start",
                "2024-01-02",
                "--end",
                "2024-01-05",
            ]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err
