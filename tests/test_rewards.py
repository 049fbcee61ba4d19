"""Rewards: the Differential Sharpe Ratio against hand arithmetic, warm-up, floor, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter

from backend.environments.rewards import (
    REWARD_CONFIGS,
    REWARDS,
    CostPenalizedConfig,
    CostPenalizedReturnReward,
    DifferentialSharpeRatio,
    DSRConfig,
    LogReturnReward,
    RewardFunction,
    make_reward,
    reward_config_union,
    reward_names,
)
from backend.utils.config_model import ConfigError

# --------------------------------------------------------------------------- DSR by hand
# Series R = 0.01, -0.005, 0.02 with eta = 0.1, A_0 = B_0 = 0, worked out from
#   D_t = (B_{t-1} dA - 0.5 A_{t-1} dB) / (B_{t-1} - A_{t-1}^2)^(3/2)
#
# t=1: A_0 = B_0 = 0 -> variance 0 (floored), numerator 0*... - 0 = 0 -> D_1 = 0
#      A_1 = 0.1 * 0.01 = 0.001 ; B_1 = 0.1 * 0.0001 = 0.00001
# t=2: dA = -0.005 - 0.001 = -0.006 ; dB = 0.000025 - 0.00001 = 0.000015
#      num = 0.00001 * -0.006 - 0.5 * 0.001 * 0.000015 = -6e-8 - 7.5e-9 = -6.75e-8
#      var = 0.00001 - 0.001^2 = 9e-6 ; var^1.5 = 9e-6 * 3e-3 = 2.7e-8
#      D_2 = -6.75e-8 / 2.7e-8 = -2.5
#      A_2 = 0.001 + 0.1 * -0.006 = 0.0004 ; B_2 = 0.00001 + 0.1 * 0.000015 = 0.0000115
# t=3: dA = 0.02 - 0.0004 = 0.0196 ; dB = 0.0004 - 0.0000115 = 0.0003885
#      num = 0.0000115 * 0.0196 - 0.5 * 0.0004 * 0.0003885 = 2.254e-7 - 7.77e-8 = 1.477e-7
#      var = 0.0000115 - 0.0004^2 = 1.134e-5
#      D_3 = 1.477e-7 / 1.134e-5^1.5 = 3.867757...
#      A_3 = 0.0004 + 0.1 * 0.0196 = 0.00236 ; B_3 = 0.0000115 + 0.1 * 0.0003885 = 0.00005035
SERIES = (0.01, -0.005, 0.02)
EXPECTED_D = (0.0, -2.5, 1.477e-7 / 1.134e-5**1.5)
EXPECTED_A = (0.001, 0.0004, 0.00236)
EXPECTED_B = (0.00001, 0.0000115, 0.00005035)


def test_dsr_matches_hand_computation() -> None:
    dsr = DifferentialSharpeRatio(eta=0.1, warmup_steps=0, eps=1e-12)
    assert EXPECTED_D[2] == pytest.approx(3.8677, abs=1e-4)  # the hand arithmetic itself
    for r, d, a, b in zip(SERIES, EXPECTED_D, EXPECTED_A, EXPECTED_B, strict=True):
        assert dsr.step(r) == pytest.approx(d, rel=1e-9, abs=1e-12)
        assert dsr.A == pytest.approx(a, rel=1e-12)
        assert dsr.B == pytest.approx(b, rel=1e-12)
    assert dsr.state == {"A": dsr.A, "B": dsr.B, "n": 3.0}


def test_dsr_ignores_trade_cost_argument() -> None:
    # Costs are already inside the net return; passing them must not count them twice.
    a = DifferentialSharpeRatio(eta=0.1, warmup_steps=0, eps=1e-12)
    b = DifferentialSharpeRatio(eta=0.1, warmup_steps=0, eps=1e-12)
    for r in SERIES:
        assert a.step(r, trade_cost=0.003) == b.step(r)


def test_dsr_warmup_returns_zero_but_updates_moments() -> None:
    plain = DifferentialSharpeRatio(eta=0.1, warmup_steps=0, eps=1e-12)
    warm = DifferentialSharpeRatio(eta=0.1, warmup_steps=2, eps=1e-12)
    out_plain = [plain.step(r) for r in SERIES]
    out_warm = [warm.step(r) for r in SERIES]
    assert out_warm[:2] == [0.0, 0.0]
    assert out_plain[1] == pytest.approx(-2.5)  # the warm-up really hid a non-zero value
    # Moments advanced during the warm-up, so the first live reward is the same D_3.
    assert out_warm[2] == pytest.approx(EXPECTED_D[2], rel=1e-9)
    assert (warm.A, warm.B, warm.n) == (plain.A, plain.B, plain.n)


def test_dsr_variance_floor_bounds_the_denominator() -> None:
    eps = 1e-4  # far above the true variance 9e-6 at t=2, so the floor is active
    dsr = DifferentialSharpeRatio(eta=0.1, warmup_steps=0, eps=eps)
    assert dsr.step(0.01) == 0.0
    # Same numerator as by hand (-6.75e-8), denominator eps^1.5 = 1e-6 instead of 2.7e-8.
    assert dsr.step(-0.005) == pytest.approx(-6.75e-8 / 1e-6, rel=1e-9)


def test_dsr_finite_after_flat_history() -> None:
    # A flat agent earns exactly 0: variance 0, and the first non-zero return must not blow up.
    dsr = DifferentialSharpeRatio(eta=0.01, warmup_steps=0, eps=1e-8)
    assert all(dsr.step(0.0) == 0.0 for _ in range(50))
    assert (dsr.A, dsr.B) == (0.0, 0.0)
    values = [dsr.step(r) for r in (0.002, -0.001, 0.003, 0.0, 1e-6)]
    assert values[0] == 0.0  # B_{t-1} = A_{t-1} = 0 -> numerator 0
    assert all(math.isfinite(v) and abs(v) < 1e3 for v in values)


def _series(mean: float, std: float, n: int = 400) -> np.ndarray:
    z = np.random.default_rng(7).standard_normal(n)
    z = (z - z.mean()) / z.std()  # exactly the same shape and mean for every std
    return mean + std * z


def test_dsr_prefers_lower_variance_at_equal_mean() -> None:
    total = {}
    for std in (0.0005, 0.005):
        dsr = DifferentialSharpeRatio(eta=0.01, warmup_steps=10, eps=1e-8)
        total[std] = sum(dsr.step(r) for r in _series(0.001, std))
    assert total[0.0005] > total[0.005] > 0.0


def test_dsr_negative_mean_gives_negative_total() -> None:
    dsr = DifferentialSharpeRatio(eta=0.01, warmup_steps=10, eps=1e-8)
    assert sum(dsr.step(r) for r in _series(-0.001, 0.002)) < 0.0


def test_dsr_reset_restores_initial_state() -> None:
    dsr = DifferentialSharpeRatio(eta=0.1, warmup_steps=1, eps=1e-12)
    first = [dsr.step(r) for r in SERIES]
    dsr.reset()
    assert (dsr.A, dsr.B, dsr.n) == (0.0, 0.0, 0)
    assert [dsr.step(r) for r in SERIES] == first


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eta": 0.0}, "eta"),
        ({"eta": 1.0}, "eta"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"eps": 0.0}, "eps"),
    ],
)
def test_dsr_rejects_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DifferentialSharpeRatio(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- other rewards
def test_log_return_reward() -> None:
    reward = LogReturnReward()
    assert reward.step(0.01) == pytest.approx(math.log(1.01))
    assert reward.step(-0.02, trade_cost=0.5) == pytest.approx(math.log(0.98))
    # Wipe-out: a large finite penalty, not -inf / NaN.
    assert reward.step(-1.5) == pytest.approx(math.log(1e-12))
    assert reward.state == {}


def test_cost_penalized_reward() -> None:
    reward = CostPenalizedReturnReward(penalty=2.0)
    assert reward.step(0.01, trade_cost=0.001) == pytest.approx(0.01 - 2.0 * 0.001)
    assert CostPenalizedReturnReward(0.0).step(0.01, trade_cost=0.001) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="penalty"):
        CostPenalizedReturnReward(-1.0)


def test_registry_covers_every_config_name() -> None:
    assert set(REWARDS) == set(REWARD_CONFIGS) == set(reward_names())
    union = TypeAdapter(reward_config_union())
    for name, cls in REWARDS.items():
        assert issubclass(cls, RewardFunction)
        assert cls.name == name and cls.config_class is REWARD_CONFIGS[name]
        config = union.validate_python({"name": name})
        assert isinstance(config, REWARD_CONFIGS[name])
        assert isinstance(make_reward(config), cls)


def test_make_reward_passes_config_fields() -> None:
    dsr = make_reward(DSRConfig(eta=0.2, warmup_steps=3, eps=1e-6))
    assert isinstance(dsr, DifferentialSharpeRatio)
    assert (dsr.eta, dsr.warmup_steps, dsr.eps) == (0.2, 3, 1e-6)
    cp = make_reward(CostPenalizedConfig(cost_penalty=4.0))
    assert isinstance(cp, CostPenalizedReturnReward)
    assert cp.penalty == 4.0
    assert isinstance(make_reward(), DifferentialSharpeRatio)  # the default reward


@pytest.mark.parametrize(
    ("config", "kwargs", "match"),
    [
        (DSRConfig, {"eta": 0.0}, r"DSRConfig\.eta: Input should be greater than 0"),
        (DSRConfig, {"eta": 1.0}, r"DSRConfig\.eta: Input should be less than 1"),
        (DSRConfig, {"warmup_steps": -1}, r"DSRConfig\.warmup_steps: .*greater than or equal"),
        (DSRConfig, {"eps": 0.0}, r"DSRConfig\.eps: Input should be greater than 0"),
        (DSRConfig, {"scale": 0.0}, r"DSRConfig\.scale: Input should be greater than 0"),
        (DSRConfig, {"cost_penalty": 1.0}, r"DSRConfig\.cost_penalty: unknown key"),
        (CostPenalizedConfig, {"cost_penalty": -1.0}, r"cost_penalty: .*greater than or equal"),
    ],
)
def test_reward_configs_validate_their_fields(
    config: type, kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        config(**kwargs)
