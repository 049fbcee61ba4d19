"""IntradayTradingEnv, MarketArrays and EnvConfig: PnL by hand, timing, episodes, leaks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backend.data_download.market_arrays import MarketArrays, synthetic_market_arrays
from backend.data_download.market_calendar import session_bar_layout
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import INFO_KEYS, IntradayTradingEnv
from backend.environments.rewards import REWARD_CONFIGS, CostPenalizedConfig, DSRConfig
from backend.utils.config_model import ConfigError

NS_15M = 15 * 60 * 1_000_000_000


def make_arrays(
    opens: Sequence[float],
    closes: Sequence[float],
    sessions: Sequence[int],
    slots: Sequence[int],
    scheduled: Sequence[int],
    features: np.ndarray | None = None,
) -> MarketArrays:
    n = len(opens)
    if features is None:
        features = np.arange(n, dtype=np.float32)[:, None] / 10.0
    return MarketArrays(
        timestamps=np.arange(n, dtype=np.int64) * NS_15M + 1_700_000_000_000_000_000,
        open=np.asarray(opens, dtype=np.float64),
        close=np.asarray(closes, dtype=np.float64),
        features=features,
        feature_names=tuple(f"f{j}" for j in range(features.shape[1])),
        session_index=np.asarray(sessions, dtype=np.int64),
        bar_in_session=np.asarray(slots, dtype=np.int64),
        bars_in_session=np.asarray(scheduled, dtype=np.int64),
        symbol="TINY",
    )


def tiny_two_sessions() -> MarketArrays:
    """Last three bars of a 14-bar half day, then the first three bars of a full day."""
    return make_arrays(
        opens=[100.0, 101.0, 103.0, 110.0, 107.5, 109.5],
        closes=[100.0, 102.0, 104.0, 108.0, 109.0, 109.0],
        sessions=[0, 0, 0, 1, 1, 1],
        slots=[11, 12, 13, 0, 1, 2],
        scheduled=[14, 14, 14, 26, 26, 26],
    )


def tiny_env(**overrides: Any) -> IntradayTradingEnv:
    kwargs: dict[str, Any] = {
        "cost_bps": 2.0,
        "slippage_bps": 3.0,  # c = 5e-4
        "deadband": 0.1,
        "episode_sessions": 0,
        "random_start": False,
    }
    kwargs.update(overrides)
    reward = REWARD_CONFIGS[kwargs.pop("reward", "log_return")](
        scale=kwargs.pop("reward_scale", 1.0)
    )
    return IntradayTradingEnv(tiny_two_sessions(), EnvConfig(**kwargs), reward=reward)


def act(value: float) -> np.ndarray:
    return np.array([value], dtype=np.float32)


@pytest.fixture(scope="module")
def synth() -> MarketArrays:
    # 12 sessions: session 3 is a 14-bar half day, session 5 misses its slot-10 bar.
    return synthetic_market_arrays(12, 5, half_days=(3,), missing_bars=[(5, 10)], seed=3)


# =========================================================================== PnL by hand
def test_pnl_fills_costs_deadband_and_flatten_on_half_day() -> None:
    env = tiny_env()
    c = 5e-4
    obs, info = env.reset(options={"start_bar": 0})
    assert info["bar"] == 0 and info["equity"] == 1.0
    assert obs["account"].tolist() == [0.0, 0.0, pytest.approx((14 - 1 - 11) / 14)]

    # Step 1: decide at close[0], go long 1 -> fill at open[1]=101, pay c*1*E.
    obs, r, term, trunc, info = env.step(act(1.0))
    e_open = 1.0 - c * 1.0
    e1 = e_open * (102.0 / 101.0)
    assert info["bar"] == 1 and info["position"] == 1.0 and info["target"] == 1.0
    assert info["equity"] == pytest.approx(e1, rel=1e-12)
    assert info["trade_cost"] == pytest.approx(c, rel=1e-12)
    assert info["turnover"] == pytest.approx(1.0)
    assert info["gross_return"] == pytest.approx(102.0 / 101.0 - 1.0, rel=1e-12)
    assert info["net_return"] == pytest.approx(e1 - 1.0, rel=1e-12)
    assert r == pytest.approx(math.log(e1), rel=1e-12)
    assert not term and not trunc
    # account: unrealized PnL measured from the equity right after the opening fill.
    assert obs["account"][1] == pytest.approx((e1 - e_open) / e1, rel=1e-5)
    assert obs["account"][2] == pytest.approx(1.0 / 14.0)

    # Step 2: target 0.95 is within the 0.1 deadband of 1.0 -> no trade. Old position earns
    # the (intraday) gap 102 -> 103 and the bar 103 -> 104; bar 2 is the half day's last
    # bar, so the position is sold market-on-close paying c*1*E.
    obs, r, term, trunc, info = env.step(act(0.95))
    pre_flat = e1 * (103.0 / 102.0) * (104.0 / 103.0)
    e2 = pre_flat * (1.0 - c)
    assert info["target"] == 1.0
    assert info["position"] == 0.0
    assert info["turnover"] == pytest.approx(1.0)  # only the flatten
    assert info["trade_cost"] == pytest.approx(c * pre_flat / e1, rel=1e-12)
    assert info["gross_return"] == pytest.approx(104.0 / 102.0 - 1.0, rel=1e-12)
    assert info["equity"] == pytest.approx(e2, rel=1e-12)
    assert r == pytest.approx(math.log(e2 / e1), rel=1e-12)
    assert obs["account"].tolist() == [0.0, 0.0, 0.0]

    # Step 3: decide at the half day's close, short 0.5 -> fills at next open (110). The
    # overnight gap 104 -> 110 is earned by the old position, which is flat.
    obs, r, term, trunc, info = env.step(act(-0.5))
    e_open3 = e2 * (1.0 - c * 0.5)
    e3 = e_open3 * (1.0 - 0.5 * (108.0 / 110.0 - 1.0))
    assert info["equity"] == pytest.approx(e3, rel=1e-12)
    assert info["gross_return"] == pytest.approx(-0.5 * (108.0 / 110.0 - 1.0), rel=1e-12)
    assert info["position"] == -0.5
    assert obs["account"][2] == pytest.approx(25.0 / 26.0)

    # Step 4: hold the short (same target): gap 108 -> 107.5 and bar 107.5 -> 109, no cost.
    _, _, _, _, info = env.step(act(-0.5))
    e4 = e3 * (1.0 - 0.5 * (107.5 / 108.0 - 1.0)) * (1.0 - 0.5 * (109.0 / 107.5 - 1.0))
    assert info["trade_cost"] == 0.0 and info["turnover"] == 0.0
    assert info["equity"] == pytest.approx(e4, rel=1e-12)

    # Step 5: flip to +0.5 (trade 1.0 at open 109.5), then the data's last bar: flatten 0.5.
    _, r, term, trunc, info = env.step(act(0.5))
    e_open5 = e4 * (1.0 - 0.5 * (109.5 / 109.0 - 1.0))
    e_open5 -= c * 1.0 * e_open5
    pre_flat5 = e_open5 * (1.0 + 0.5 * (109.0 / 109.5 - 1.0))
    e5 = pre_flat5 * (1.0 - c * 0.5)
    assert info["equity"] == pytest.approx(e5, rel=1e-12)
    assert info["turnover"] == pytest.approx(1.5)
    assert info["position"] == 0.0
    assert trunc and not term
    with pytest.raises(RuntimeError, match="reset"):
        env.step(act(0.0))


def test_overnight_gap_is_earned_by_old_position_without_flatten() -> None:
    env = tiny_env(flatten_at_close=False, cost_bps=0.0, slippage_bps=0.0)
    env.reset(options={"start_bar": 1})
    _, _, _, _, info = env.step(act(1.0))  # fill at open[2]=103, earn 103 -> 104
    assert info["position"] == 1.0  # still held after the half day's last bar
    assert info["equity"] == pytest.approx(104.0 / 103.0, rel=1e-12)
    obs, _, _, _, info = env.step(act(1.0))  # hold overnight: gap 104 -> 110, bar 110 -> 108
    assert info["gross_return"] == pytest.approx(108.0 / 104.0 - 1.0, rel=1e-12)
    assert info["equity"] == pytest.approx(108.0 / 103.0, rel=1e-12)
    # unrealized PnL since the position opened at the open of bar 2 (equity 1.0)
    assert obs["account"][1] == pytest.approx((108.0 / 103.0 - 1.0) / (108.0 / 103.0), rel=1e-5)


def test_flatten_on_missing_last_bar_uses_data_last_bar(synth: MarketArrays) -> None:
    # Session 5 lacks slot 10 (mid-session) -> its gap spans two bars; the flatten still
    # happens on the data's last bar of the session.
    env = IntradayTradingEnv(synth, EnvConfig(episode_sessions=1, random_start=False))
    starts = synth.session_starts()
    start = int(starts[5] - 1)
    env.reset(options={"start_bar": start})
    done, last = False, dict[str, Any]()
    bars = []
    while not done:
        _, _, term, trunc, last = env.step(act(1.0))
        bars.append(last["bar"])
        done = term or trunc
    assert bars == list(range(int(starts[5]), int(starts[6])))
    assert synth.bar_in_session[bars].tolist() == [b for b in range(26) if b != 10]
    assert last["position"] == 0.0


@pytest.mark.parametrize(
    ("action", "expected"), [(-1.0, 0.0), (-0.5, 0.2), (0.0, 0.4), (0.5, 0.6), (1.0, 0.8)]
)
def test_long_only_maps_action_affinely(action: float, expected: float) -> None:
    env = tiny_env(long_only=True, max_position=0.8, deadband=0.0)
    env.reset(options={"start_bar": 0})
    obs, _, _, _, info = env.step(act(action))
    assert info["target"] == pytest.approx(expected, abs=1e-7)
    assert obs["account"][0] == pytest.approx(expected, abs=1e-7)


def test_signed_mapping_scales_by_max_position_and_clips() -> None:
    env = tiny_env(max_position=0.5, deadband=0.0)
    env.reset(options={"start_bar": 0})
    assert env.step(act(-0.4))[4]["target"] == pytest.approx(-0.2)
    assert env.step(act(3.0))[4]["target"] == pytest.approx(0.5)  # clipped to 1 first


def test_bad_actions_raise() -> None:
    env = tiny_env()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(act(0.0))
    env.reset(options={"start_bar": 0})
    with pytest.raises(ValueError, match="finite"):
        env.step(act(float("nan")))
    with pytest.raises(ValueError, match="single value"):
        env.step(np.zeros(2, dtype=np.float32))


def test_ruin_terminates() -> None:
    arrays = make_arrays(
        opens=[100.0, 100.0, 40.0, 40.0],
        closes=[100.0, 40.0, 40.0, 41.0],
        sessions=[0, 0, 0, 0],
        slots=[0, 1, 2, 3],
        scheduled=[26, 26, 26, 26],
    )
    env = IntradayTradingEnv(arrays, EnvConfig(ruin_equity=0.5, random_start=False))
    env.reset(options={"start_bar": 0})
    _, _, term, trunc, info = env.step(act(1.0))
    assert info["equity"] < 0.5
    assert term and not trunc


def test_no_ruin_when_threshold_not_crossed() -> None:
    arrays = make_arrays(
        opens=[100.0, 100.0, 40.0, 40.0],
        closes=[100.0, 40.0, 40.0, 41.0],
        sessions=[0, 0, 0, 0],
        slots=[0, 1, 2, 3],
        scheduled=[26, 26, 26, 26],
    )
    env = IntradayTradingEnv(arrays, EnvConfig(ruin_equity=0.3, random_start=False))
    env.reset(options={"start_bar": 0})
    _, _, term, _, info = env.step(act(1.0))
    assert 0.3 < info["equity"] < 0.5 and not term


def test_info_keys_present_at_reset_and_step(synth: MarketArrays) -> None:
    env = IntradayTradingEnv(synth, EnvConfig())
    _, info = env.reset(seed=0)
    assert set(info) == set(INFO_KEYS)
    _, _, _, _, info = env.step(act(0.3))
    assert set(info) == set(INFO_KEYS)
    assert isinstance(info["timestamp"], int) and isinstance(info["bar"], int)
    assert info["timestamp"] == int(synth.timestamps[info["bar"]])


def test_dsr_state_in_info_follows_net_returns(synth: MarketArrays) -> None:
    reward = DSRConfig(eta=0.1, warmup_steps=0, eps=1e-12)
    env = IntradayTradingEnv(synth, EnvConfig(), reward=reward)
    env.reset(seed=1)
    a = b = 0.0
    for _ in range(5):
        _, reward, _, _, info = env.step(act(0.7))
        r = info["net_return"]
        var = max(b - a * a, 1e-12)
        expected = (b * (r - a) - 0.5 * a * (r * r - b)) / var**1.5
        assert reward == pytest.approx(expected, rel=1e-9, abs=1e-12)
        a, b = a + 0.1 * (r - a), b + 0.1 * (r * r - b)
        assert (info["dsr_A"], info["dsr_B"]) == (pytest.approx(a), pytest.approx(b))


def test_reward_scale_multiplies_reward() -> None:
    rewards = []
    for scale in (1.0, 100.0):
        env = tiny_env(reward="log_return", reward_scale=scale)
        env.reset(options={"start_bar": 0})
        rewards.append(env.step(act(1.0))[1])
    assert rewards[1] == pytest.approx(100.0 * rewards[0], rel=1e-12)


# =========================================================================== observations
def test_window_padding_mask_and_newest_last() -> None:
    n, n_feat, seq = 10, 3, 4
    feats = (np.arange(n, dtype=np.float32)[:, None] + np.arange(n_feat) / 10.0).astype(np.float32)
    arrays = make_arrays(
        opens=[100.0] * n,
        closes=[100.0] * n,
        sessions=[0] * n,
        slots=list(range(n)),
        scheduled=[26] * n,
        features=feats,
    )
    cfg = EnvConfig(use_sequence_encoder=True, sequence_length=seq, random_start=False)
    env = IntradayTradingEnv(arrays, cfg)
    obs, _ = env.reset(options={"start_bar": 0})
    assert obs["window"].shape == (seq, n_feat) and obs["window"].dtype == np.float32
    np.testing.assert_array_equal(obs["mask"], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(obs["window"][:3], 0.0)
    np.testing.assert_array_equal(obs["window"][3], feats[0])
    obs, *_ = env.step(act(0.0))
    np.testing.assert_array_equal(obs["mask"], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(obs["window"][2:], feats[0:2])
    for _ in range(4):
        obs, *_ = env.step(act(0.0))
    assert env.current_bar == 5
    np.testing.assert_array_equal(obs["mask"], np.ones(seq))
    np.testing.assert_array_equal(obs["window"], feats[2:6])  # rows t-T+1..t, newest last


def test_window_uses_history_before_bar_range(synth: MarketArrays) -> None:
    starts = synth.session_starts()
    lo, hi = int(starts[4]), int(starts[6])
    cfg = EnvConfig(use_sequence_encoder=True, sequence_length=30, random_start=False)
    env = IntradayTradingEnv(synth, cfg, bar_range=(lo, hi))
    obs, info = env.reset(seed=0)
    assert info["bar"] == lo - 1
    np.testing.assert_array_equal(obs["mask"], 1.0)
    np.testing.assert_array_equal(obs["window"], synth.features[lo - 30 : lo])


def test_flat_observation_is_current_bar_features(synth: MarketArrays) -> None:
    env = IntradayTradingEnv(synth, EnvConfig())
    obs, info = env.reset(seed=5)
    np.testing.assert_array_equal(obs["features"], synth.features[info["bar"]])
    obs, *_, info = env.step(act(0.5))
    np.testing.assert_array_equal(obs["features"], synth.features[info["bar"]])


def test_observations_stay_in_space_and_features_are_clipped() -> None:
    arrays = synthetic_market_arrays(4, 3, seed=1)
    wild = np.array(arrays.features)
    wild[::7, 1] = 50.0
    wild[::5, 2] = -80.0
    arrays = MarketArrays(
        timestamps=arrays.timestamps,
        open=arrays.open,
        close=arrays.close,
        features=wild,
        feature_names=arrays.feature_names,
        session_index=arrays.session_index,
        bar_in_session=arrays.bar_in_session,
        bars_in_session=arrays.bars_in_session,
        symbol="WILD",
    )
    rng = np.random.default_rng(0)
    for seq in (False, True):
        cfg = EnvConfig(use_sequence_encoder=seq, sequence_length=16, feature_clip=5.0)
        env = IntradayTradingEnv(arrays, cfg)
        assert env.clipped_fraction > 0.0
        obs, _ = env.reset(seed=2)
        for _ in range(200):
            assert env.observation_space.contains(obs)
            obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
            if term or trunc:
                obs, _ = env.reset()


# =========================================================================== look-ahead
@pytest.mark.parametrize("use_seq", [False, True])
def test_no_look_ahead(synth: MarketArrays, use_seq: bool) -> None:
    cfg = EnvConfig(use_sequence_encoder=use_seq, sequence_length=20, episode_sessions=3)
    starts = synth.session_starts()
    start = int(starts[2] - 1)
    cut = start + 30  # the decision bar t; bars > t get perturbed
    rng = np.random.default_rng(11)
    feats = np.array(synth.features)
    opens, closes = np.array(synth.open), np.array(synth.close)
    feats[cut + 1 :] = rng.standard_normal(feats[cut + 1 :].shape).astype(np.float32)
    opens[cut + 1 :] *= rng.uniform(0.9, 1.1, opens.size - cut - 1)
    closes[cut + 1 :] *= rng.uniform(0.9, 1.1, closes.size - cut - 1)
    future = MarketArrays(
        timestamps=synth.timestamps,
        open=opens,
        close=closes,
        features=feats,
        feature_names=synth.feature_names,
        session_index=synth.session_index,
        bar_in_session=synth.bar_in_session,
        bars_in_session=synth.bars_in_session,
        symbol=synth.symbol,
    )
    actions = np.random.default_rng(4).uniform(-1, 1, (60, 1)).astype(np.float32)

    def run(arrays: MarketArrays) -> list[tuple[int, dict[str, np.ndarray], float]]:
        env = IntradayTradingEnv(arrays, cfg)
        obs, info = env.reset(options={"start_bar": start})
        out = [(info["bar"], obs, 0.0)]
        for a in actions:
            obs, reward, term, trunc, info = env.step(a)
            out.append((info["bar"], obs, reward))
            if term or trunc:
                break
        return out

    base, pert = run(synth), run(future)
    assert [b for b, _, _ in base] == [b for b, _, _ in pert]
    seen = 0
    for (bar, obs_a, rew_a), (_, obs_b, rew_b) in zip(base, pert, strict=True):
        if bar <= cut:
            seen += 1
            assert rew_a == rew_b
            for key in obs_a:
                np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"{key}@{bar}")
        else:  # the perturbation is real: what comes after t does differ
            assert any(not np.array_equal(obs_a[k], obs_b[k]) for k in obs_a)
    assert seen == cut - start + 1


# =========================================================================== episodes
def _run_episode(
    env: IntradayTradingEnv, action: float = 0.5, **reset_kwargs: Any
) -> tuple[int, list[int], bool, bool]:
    _, info = env.reset(**reset_kwargs)
    bars = []
    while True:
        _, _, term, trunc, step_info = env.step(act(action))
        bars.append(step_info["bar"])
        if term or trunc:
            return info["bar"], bars, term, trunc


def test_one_session_episode_ends_at_session_end(synth: MarketArrays) -> None:
    env = IntradayTradingEnv(synth, EnvConfig(episode_sessions=1))
    is_last = synth.is_last_bar_of_session
    starts = set(synth.session_starts().tolist())
    for seed in range(8):
        start, bars, term, trunc = _run_episode(env, seed=seed)
        assert trunc and not term
        assert bars[0] in starts and bars[0] == start + 1  # the session's opening bar
        assert synth.session_index[bars].tolist() == [synth.session_index[bars[0]]] * len(bars)
        assert is_last[bars[-1]] and not is_last[bars[:-1]].any()


def test_half_day_episode_has_14_steps(synth: MarketArrays) -> None:
    env = IntradayTradingEnv(synth, EnvConfig(episode_sessions=1))
    start = int(synth.session_starts()[3] - 1)
    _, bars, _, trunc = _run_episode(env, options={"start_bar": start})
    assert len(bars) == 14 and trunc
    assert synth.bars_in_session[bars[0]] == 14


def test_multi_session_episode(synth: MarketArrays) -> None:
    env = IntradayTradingEnv(synth, EnvConfig(episode_sessions=2, flatten_at_close=False))
    starts = synth.session_starts()
    _, bars, _, trunc = _run_episode(env, options={"start_bar": int(starts[1] - 1)})
    assert trunc and bars == list(range(int(starts[1]), int(starts[3])))


def test_first_session_at_bar_zero_starts_on_its_first_bar() -> None:
    arrays = synthetic_market_arrays(2, 2, seed=0)
    env = IntradayTradingEnv(arrays, EnvConfig(random_start=False))
    start, bars, _, _ = _run_episode(env, seed=0)
    assert start == 0 and bars == list(range(1, 26))  # no earlier close to decide at


def test_same_seed_same_trajectory_different_seed_different_starts(synth: MarketArrays) -> None:
    def trajectory(seed: int) -> list[Any]:
        env = IntradayTradingEnv(synth, EnvConfig(use_sequence_encoder=True, sequence_length=8))
        actions = np.random.default_rng(0).uniform(-1, 1, (200, 1)).astype(np.float32)
        out: list[Any] = []
        obs, info = env.reset(seed=seed)
        for a in actions:
            out.append((info["bar"], {k: v.tolist() for k, v in obs.items()}))
            obs, reward, term, trunc, info = env.step(a)
            out.append((reward, term, trunc, info))
            if term or trunc:
                obs, info = env.reset()
        return out

    assert trajectory(3) == trajectory(3)

    def starts(seed: int) -> list[int]:
        env = IntradayTradingEnv(synth, EnvConfig())
        first = env.reset(seed=seed)[1]["bar"]
        return [first] + [env.reset()[1]["bar"] for _ in range(7)]

    assert starts(1) == starts(1)
    assert starts(1) != starts(2)
    assert len(set(starts(1) + starts(2))) > 3  # starts actually vary across sessions


def test_sequential_starts_walk_sessions_and_wrap(synth: MarketArrays) -> None:
    starts = synth.session_starts()
    lo, hi = int(starts[2]), int(starts[6])  # sessions 2..5
    env = IntradayTradingEnv(
        synth, EnvConfig(random_start=False, episode_sessions=1), bar_range=(lo, hi)
    )
    seen = [env.reset()[1]["bar"] + 1 for _ in range(6)]
    assert seen == [starts[2], starts[3], starts[4], starts[5], starts[2], starts[3]]
    assert env.reset(seed=9)[1]["bar"] + 1 == starts[2]  # a seeded reset restarts the walk
    env2 = IntradayTradingEnv(
        synth, EnvConfig(random_start=False, episode_sessions=2), bar_range=(lo, hi)
    )
    assert [env2.reset()[1]["bar"] + 1 for _ in range(3)] == [starts[2], starts[4], starts[2]]


@pytest.mark.parametrize("episode_sessions", [0, 1, 3])
@pytest.mark.parametrize("random_start", [True, False])
def test_bar_range_respected(
    synth: MarketArrays, episode_sessions: int, random_start: bool
) -> None:
    starts = synth.session_starts()
    lo, hi = int(starts[4]) + 3, int(starts[9]) + 5  # both mid-session
    cfg = EnvConfig(episode_sessions=episode_sessions, random_start=random_start)
    env = IntradayTradingEnv(synth, cfg, bar_range=(lo, hi))
    # The partial session at `lo` is not a start; the first eligible is session 5.
    assert env.episode_start_bars[0] == starts[5] - 1
    for seed in range(6):
        start, bars, _, _ = _run_episode(env, seed=seed)
        assert lo <= start + 1 and min(bars) >= lo and max(bars) <= hi - 1
    # The range end truncates an episode that would run past it (session 9 is cut at hi).
    _, bars, _, trunc = _run_episode(env, options={"start_bar": int(starts[9] - 1)})
    assert trunc and bars[-1] == hi - 1


def test_start_bar_option_validated(synth: MarketArrays) -> None:
    starts = synth.session_starts()
    lo, hi = int(starts[2]), int(starts[4])
    env = IntradayTradingEnv(synth, EnvConfig(), bar_range=(lo, hi))
    env.reset(options={"start_bar": lo - 1})
    env.reset(options={"start_bar": hi - 2})
    for bad in (lo - 2, hi - 1):
        with pytest.raises(ValueError, match="start_bar"):
            env.reset(options={"start_bar": bad})
    with pytest.raises(TypeError, match="start_bar"):
        env.reset(options={"start_bar": 3.0})


def test_bad_bar_range_rejected(synth: MarketArrays) -> None:
    with pytest.raises(ValueError, match="bar_range"):
        IntradayTradingEnv(synth, EnvConfig(), bar_range=(5, synth.n_bars + 1))
    with pytest.raises(ValueError, match="bar_range"):
        IntradayTradingEnv(synth, EnvConfig(), bar_range=(5, 6))
    starts = synth.session_starts()
    with pytest.raises(ValueError, match="no session start"):
        IntradayTradingEnv(synth, EnvConfig(), bar_range=(int(starts[1]) + 1, int(starts[2])))


# =========================================================================== MarketArrays
def _fields(arrays: MarketArrays) -> dict[str, Any]:
    return {
        "timestamps": np.array(arrays.timestamps),
        "open": np.array(arrays.open),
        "close": np.array(arrays.close),
        "features": np.array(arrays.features),
        "feature_names": arrays.feature_names,
        "session_index": np.array(arrays.session_index),
        "bar_in_session": np.array(arrays.bar_in_session),
        "bars_in_session": np.array(arrays.bars_in_session),
        "symbol": arrays.symbol,
    }


def test_market_arrays_basic_views(synth: MarketArrays) -> None:
    assert synth.n_features == 5 and synth.features.dtype == np.float32
    assert synth.n_bars == 11 * 26 + 14 - 1
    starts = synth.session_starts()
    assert starts.dtype == np.int64 and starts.size == 12
    assert (synth.session_index[starts] == np.arange(12)).all()
    last = synth.is_last_bar_of_session
    assert last.sum() == 12 and last[-1]
    np.testing.assert_array_equal(np.flatnonzero(last), np.r_[starts[1:] - 1, synth.n_bars - 1])
    assert not last.flags.writeable and not synth.open.flags.writeable


def test_market_arrays_slice_is_a_view(synth: MarketArrays) -> None:
    part = synth.slice(30, 80)
    assert part.n_bars == 50
    assert np.shares_memory(part.features, synth.features)
    np.testing.assert_array_equal(part.session_index, synth.session_index[30:80])
    assert part.session_starts()[0] == 0 and part.is_last_bar_of_session[-1]
    with pytest.raises(ValueError, match="slice"):
        synth.slice(10, 10)


def test_market_arrays_does_not_alias_caller_buffers(synth: MarketArrays) -> None:
    fields = _fields(synth)
    arrays = MarketArrays(**fields)
    fields["open"][0] = -1.0
    assert arrays.open[0] > 0.0


BAD_VALUES: list[tuple[str, Any, Any, str]] = [
    # (field, index, new value or "previous", expected message)
    ("timestamps", 7, "previous", "timestamps: not strictly increasing at bar 7"),
    ("open", 4, np.nan, "open: non-finite value nan at bar 4"),
    ("close", 9, 0.0, "close: non-positive price 0.0 at bar 9"),
    ("features", (12, 2), np.inf, r"features: non-finite .* bar 12, column 2 \('f2'\)"),
    ("session_index", 30, 0, "session_index: decreases at bar 30"),
    ("bars_in_session", 3, 0, "bars_in_session: 0 at bar 3"),
    ("bar_in_session", 5, 26, "bar_in_session: 26 at bar 5"),
    ("bar_in_session", 5, 3, "bar_in_session: not increasing .* at bar 5"),
]


@pytest.mark.parametrize(("field", "index", "value", "match"), BAD_VALUES)
def test_market_arrays_validation_names_field_and_index(
    synth: MarketArrays, field: str, index: Any, value: Any, match: str
) -> None:
    fields = _fields(synth)
    fields[field][index] = fields[field][index - 1] if value == "previous" else value
    with pytest.raises(ValueError, match=match):
        MarketArrays(**fields)


def test_market_arrays_shape_and_name_checks(synth: MarketArrays) -> None:
    fields = _fields(synth)
    fields["close"] = fields["close"][:-1]
    with pytest.raises(ValueError, match="close: expected shape"):
        MarketArrays(**fields)
    fields = _fields(synth)
    fields["feature_names"] = ("a", "b")
    with pytest.raises(ValueError, match="feature_names: 2 names for 5"):
        MarketArrays(**fields)
    fields = _fields(synth)
    fields["feature_names"] = ("a", "a", "b", "c", "d")
    with pytest.raises(ValueError, match="duplicated"):
        MarketArrays(**fields)
    fields = _fields(synth)
    fields["session_index"] = fields["session_index"].astype(np.float64)
    with pytest.raises(TypeError, match="session_index: expected an integer"):
        MarketArrays(**fields)


def test_from_frame_with_calendar_layout_half_day_and_missing_bar() -> None:
    days = ["2024-11-27", "2024-11-29", "2024-12-02"]  # 11-29: 13:00 close after Thanksgiving
    stamps = []
    for day, n in zip(days, (26, 14, 26), strict=True):
        stamps.append(pd.date_range(f"{day} 09:30", periods=n, freq="15min", tz="America/New_York"))
    index = stamps[0].append(stamps[1:]).delete(26 + 14 + 5).rename("timestamp")  # drop 10:45
    rng = np.random.default_rng(0)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, len(index))))
    frame = pd.DataFrame(
        {
            "open": closes * 0.999,
            "high": closes * 1.001,
            "low": closes * 0.998,
            "close": closes,
            "volume": 1e6,
            "z_ret": rng.standard_normal(len(index)),
            "z_vol": rng.standard_normal(len(index)),
        },
        index=index,
    )
    layout = session_bar_layout(frame.index)
    arrays = MarketArrays.from_frame(frame, ["z_vol", "z_ret"], layout, "SPY")
    assert arrays.feature_names == ("z_vol", "z_ret")
    np.testing.assert_array_equal(arrays.features[:, 1], frame["z_ret"].to_numpy(np.float32))
    assert arrays.timestamps[0] == pd.Timestamp("2024-11-27 14:30", tz="UTC").value
    np.testing.assert_array_equal(arrays.session_starts(), [0, 26, 40])
    assert arrays.bars_in_session[26] == 14 and arrays.bars_in_session[0] == 26
    assert arrays.bar_in_session[45] == 6  # 10:45 is missing: a hole on the grid
    env = IntradayTradingEnv(arrays, EnvConfig(episode_sessions=1))
    _, bars, _, _ = _run_episode(env, options={"start_bar": 25})
    assert bars == list(range(26, 40))  # the half day: 14 bars, flattened at 12:45's close


def test_from_frame_rejects_bad_inputs() -> None:
    index = pd.date_range("2024-11-27 09:30", periods=4, freq="15min", tz="America/New_York")
    frame = pd.DataFrame({"open": 1.0, "close": 1.0, "x": [0.0, np.nan, 0.0, 0.0]}, index=index)
    layout = session_bar_layout(frame.index)
    with pytest.raises(ValueError, match="features: non-finite value nan at bar 1"):
        MarketArrays.from_frame(frame, ["x"], layout, "SPY")
    with pytest.raises(ValueError, match="missing columns \\['y'\\]"):
        MarketArrays.from_frame(frame, ["y"], layout, "SPY")
    with pytest.raises(ValueError, match="tz-aware"):
        MarketArrays.from_frame(frame.tz_localize(None), ["x"], layout, "SPY")
    with pytest.raises(ValueError, match="layout: index differs"):
        MarketArrays.from_frame(frame, ["x"], layout.iloc[1:], "SPY")


# =========================================================================== EnvConfig
def test_env_config_round_trip_and_none_sessions() -> None:
    cfg = EnvConfig(episode_sessions=None)
    assert cfg.episode_sessions == 0
    assert EnvConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.cost_rate == pytest.approx(2e-4)
    reward = CostPenalizedConfig(cost_penalty=3.0)
    assert CostPenalizedConfig.from_dict(reward.to_dict()) == reward


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sequence_length": 0}, r"sequence_length: Input should be greater than or equal to 1"),
        ({"episode_sessions": -1}, r"episode_sessions: .*greater than or equal to 0"),
        ({"episode_sessions": True}, r"episode_sessions: Input should be a valid integer"),
        ({"max_position": 1.5}, r"max_position: Input should be less than or equal to 1"),
        ({"max_position": 0.0}, r"max_position: Input should be greater than 0"),
        ({"deadband": -0.1}, r"deadband: Input should be greater than or equal to 0"),
        ({"cost_bps": float("nan")}, r"cost_bps: "),
        ({"ruin_equity": 1.0}, r"ruin_equity: Input should be less than 1"),
        ({"reward": "sharpe"}, r"reward: unknown key"),  # the reward is its own section
        ({"dsr_eta": 0.1}, r"dsr_eta: unknown key"),
        ({"long_only": 1}, r"long_only: Input should be a valid boolean"),
        ({"feature_clip": 0.0}, r"feature_clip: Input should be greater than 0"),
    ],
)
def test_env_config_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=r"^EnvConfig\." + match):
        EnvConfig(**kwargs)


def test_env_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(
        ValueError, match=r"EnvConfig\.cost_bp: unknown key \(did you mean 'cost_bps'"
    ):
        EnvConfig.from_dict({"cost_bp": 1.0})
