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
    DDRConfig,
    DifferentialSharpeRatio,
    DownsideDeviationRatio,
    DSRConfig,
    LogReturnReward,
    RewardFunction,
    fit_reward_floor,
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
        (DSRConfig, {"floor_vol": -1.0}, r"DSRConfig\.floor_vol: .*greater than or equal"),
        (DSRConfig, {"bias_correction": 1}, r"DSRConfig\.bias_correction: .*valid boolean"),
        (DDRConfig, {"eta": 1.0}, r"DDRConfig\.eta: Input should be less than 1"),
        (CostPenalizedConfig, {"cost_penalty": -1.0}, r"cost_penalty: .*greater than or equal"),
    ],
)
def test_reward_configs_validate_their_fields(
    config: type, kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        config(**kwargs)


# --------------------------------------------------------------------------- issue 9 options
# Bias-corrected DSR on the same series, eta = 0.1 (weights 1 - 0.9**n):
# t=1: n=0, no correction, A = B = 0 -> D_1 = 0 ; A_1 = 0.001, B_1 = 1e-5
# t=2: w = 0.1 -> Ahat = 0.01, Bhat = 1e-4 ; dA = -0.015, dB = 2.5e-5 - 1e-4 = -7.5e-5
#      num = 1e-4 * -0.015 - 0.5 * 0.01 * -7.5e-5 = -1.125e-6 ; var = 1e-4 - 1e-4 = 0
#      floored at eps = 1e-6 -> D_2 = -1.125e-6 / 1e-9 = -1125
# t=3: w = 0.19 -> Ahat = 0.0004 / 0.19, Bhat = 1.15e-5 / 0.19 ; var = Bhat - Ahat^2
#      D_3 = (Bhat (0.02 - Ahat) - 0.5 Ahat (0.0004 - Bhat)) / var^1.5 = 1.727497...
_AH, _BH = 0.0004 / 0.19, 1.15e-5 / 0.19
BIAS_CORRECTED_D = (
    0.0,
    -1125.0,
    (_BH * (0.02 - _AH) - 0.5 * _AH * (0.0004 - _BH)) / (_BH - _AH**2) ** 1.5,
)


def test_bias_corrected_dsr_matches_hand_computation() -> None:
    dsr = DifferentialSharpeRatio(eta=0.1, warmup_steps=0, eps=1e-6, bias_correction=True)
    assert BIAS_CORRECTED_D[2] == pytest.approx(1.72750, abs=1e-4)
    for r, d, a, b in zip(SERIES, BIAS_CORRECTED_D, EXPECTED_A, EXPECTED_B, strict=True):
        assert dsr.step(r) == pytest.approx(d, rel=1e-9)
        # The stored moments are the plain exponential averages; only their use is corrected.
        assert (dsr.A, dsr.B) == (pytest.approx(a, rel=1e-12), pytest.approx(b, rel=1e-12))


def test_bias_correction_removes_the_scale_drift_of_a_short_episode() -> None:
    # iid returns: the corrected DSR's typical size is the same early and late in an episode;
    # the exact one's early rewards are ~1/sqrt(w) too large (its variance is ~w too small).
    # Median |reward|: a 3-sample variance estimate makes the mean and std outlier-driven.
    rng = np.random.default_rng(0)
    early = {False: [], True: []}
    late = {False: [], True: []}
    for _ in range(300):
        returns = 0.002 * rng.standard_normal(130)
        for corrected in (False, True):
            dsr = DifferentialSharpeRatio(
                eta=0.05, warmup_steps=0, eps=1e-12, bias_correction=corrected
            )
            rewards = [dsr.step(r) for r in returns]
            early[corrected].extend(rewards[3:20])
            late[corrected].extend(rewards[100:])
    ratio = {c: np.median(np.abs(early[c])) / np.median(np.abs(late[c])) for c in (False, True)}
    assert ratio[True] == pytest.approx(1.0, abs=0.25)
    assert ratio[False] > 1.4


def test_exact_dsr_is_scale_blind_and_the_vol_floor_is_not() -> None:
    rng = np.random.default_rng(1)
    asset = 0.0018 * rng.standard_normal(130)  # per-bar returns of an asset at ~18 bp
    signal = np.sign(asset + 0.002 * rng.standard_normal(130))
    strategy = signal * asset

    def episode_sum(scale: float, eps: float) -> float:
        dsr = DifferentialSharpeRatio(eta=0.05, warmup_steps=2, eps=eps, bias_correction=True)
        return sum(dsr.step(scale * r) for r in strategy)

    tiny = 1e-12
    assert episode_sum(0.5, tiny) == pytest.approx(episode_sum(1.0, tiny), rel=1e-9)
    floor = (1.0 * 0.0018) ** 2  # DSRConfig.floor_vol = 1: the asset's own variance
    full, half, tenth = (episode_sum(s, floor) for s in (1.0, 0.5, 0.1))
    assert full > 0
    # Below the floor the numerator scales as k**3 over a fixed denominator: a tenth of
    # the position earns a thousandth of the reward, so the agent has every reason to size.
    assert half == pytest.approx(full / 8, rel=0.05)
    assert tenth == pytest.approx(half / 125, rel=0.05)


# DDR by hand, eta = 0.1, eps = 1e-6 (DD = 1e-3 when floored), same series:
# t=1: R = 0.01 > 0, A_0 = 0, DD_0^2 = 0 -> floored: D_1 = (0.01 - 0) / 1e-3 = 10
#      A_1 = 0.001 ; DD_1^2 = 0 (no downside yet)
# t=2: R = -0.005 <= 0, DD^2 floored 1e-6, DD = 1e-3:
#      D_2 = (1e-6 (-0.005 - 0.0005) - 0.5 * 0.001 * 2.5e-5) / 1e-9 = (-5.5e-9 - 1.25e-8) / 1e-9
#          = -18 ; A_2 = 0.0004 ; DD_2^2 = 0.1 * 2.5e-5 = 2.5e-6
# t=3: R = 0.02 > 0: D_3 = (0.02 - 0.0002) / sqrt(2.5e-6) = 0.0198 / 0.00158114 = 12.5226...
DDR_EXPECTED = (10.0, -18.0, 0.0198 / math.sqrt(2.5e-6))


def test_ddr_matches_hand_computation() -> None:
    ddr = DownsideDeviationRatio(eta=0.1, warmup_steps=0, eps=1e-6)
    assert DDR_EXPECTED[2] == pytest.approx(12.5226, abs=1e-4)
    for r, d in zip(SERIES, DDR_EXPECTED, strict=True):
        assert ddr.step(r) == pytest.approx(d, rel=1e-9)
    assert ddr.A == pytest.approx(0.00236, rel=1e-12)
    assert ddr.B == pytest.approx(0.9 * 2.5e-6, rel=1e-12)  # no downside at t=3


def test_ddr_charges_losses_more_than_it_pays_equal_gains() -> None:
    ddr = DownsideDeviationRatio(eta=0.05, warmup_steps=0, eps=1e-12)
    for r in (0.002, -0.001, 0.003, -0.0005):  # a profitable history: A > 0
        ddr.step(r)
    state = (ddr.A, ddr.B, ddr.n)
    gain = ddr.step(0.002)
    ddr.A, ddr.B, ddr.n = state
    loss = ddr.step(-0.002)
    assert gain > 0 > loss and abs(loss) > abs(gain)


def test_ddr_is_registered_and_built_from_its_config() -> None:
    cfg = DDRConfig(eta=0.2, warmup_steps=3, bias_correction=True)
    reward = make_reward(cfg)
    assert isinstance(reward, DownsideDeviationRatio)
    assert (reward.eta, reward.warmup_steps, reward.bias_correction) == (0.2, 3, True)
    assert reward_names().index("ddr") > reward_names().index("dsr")


def test_default_dsr_is_the_exact_moody_saffell_recursion() -> None:
    # The schema's defaults select the exact DSR: no bias correction, no fitted floor.
    config = DSRConfig()
    assert (config.bias_correction, config.floor_vol) == (False, 0.0)
    exact = make_reward(DSRConfig(eta=0.1, warmup_steps=0, eps=1e-12))
    assert [exact.step(r) for r in SERIES] == pytest.approx(list(EXPECTED_D), rel=1e-9)


def test_fit_reward_floor_uses_the_given_fit_bars_only() -> None:
    rng = np.random.default_rng(3)
    open_ = 100.0 * np.exp(np.cumsum(0.001 * rng.standard_normal(200)))
    close = open_ * (1.0 + 0.0018 * rng.standard_normal(200))
    sigma = float(np.std(close[:120] / open_[:120] - 1.0))
    fitted = fit_reward_floor(DSRConfig(floor_vol=1.5), open_[:120], close[:120])
    assert fitted.eps == pytest.approx((1.5 * sigma) ** 2, rel=1e-12)
    assert fitted.floor_vol == 1.5  # recorded, so the saved config says how eps was set
    # Bars after the fit range never enter it: perturbing them changes nothing.
    close2 = close.copy()
    close2[120:] *= 1.5
    assert fit_reward_floor(DSRConfig(floor_vol=1.5), open_[:120], close2[:120]) == fitted
    # floor_vol 0 and rewards without a floor come back unchanged.
    assert fit_reward_floor(DSRConfig(eps=3e-8), open_, close) == DSRConfig(eps=3e-8)
    assert fit_reward_floor(CostPenalizedConfig(), open_, close) == CostPenalizedConfig()
