"""Supervised lab: the multi-task model, training, calibration, confidence and statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from backend.config.supervised import SIZE_PRESETS, SupervisedConfig, TrainingSection
from backend.evaluation.session_stats import holm_adjust
from backend.models.feature_extractors.registry import get_encoder_class
from backend.supervised.calibration import (
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    probabilities,
)
from backend.supervised.confidence import MahalanobisScorer, attention_confidence
from backend.supervised.ensembles import ensemble_probabilities
from backend.supervised.evaluation import holm_adjust_finite
from backend.supervised.model import MultiTaskModel, sequence_observation_space
from backend.supervised.samples import PartData
from backend.supervised.trainer import predict, task_loss, train_model

T, F = 16, 6
TASKS = ("direction", "volatility", "regime")


def _part(n: int, seed: int, signal: bool = True) -> PartData:
    rng = np.random.default_rng(seed)
    window = rng.normal(size=(n, T, F)).astype(np.float32)
    mask = np.ones((n, T), dtype=np.float32)
    mask[: n // 4, : T // 2] = 0.0  # some padded windows
    window[mask == 0] = 0.0
    score = window[:, -1, 0] + window[:, -2, 1] if signal else rng.normal(size=n)
    direction = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    labels = {
        "direction": direction,
        "volatility": (direction + 1) % 3,
        "regime": direction[::-1].copy(),
    }
    return PartData(
        window=window,
        mask=mask,
        flat=window[:, -1],
        labels={k: v.astype(np.int64) for k, v in labels.items()},
        intensity=score.astype(np.float64),
        persistence={k: np.full(n, -1, dtype=np.int64) for k in labels},
        symbol=np.full(n, "SPY"),
        session=np.repeat(np.arange(n // 26 + 1), 26)[:n].astype("datetime64[D]"),
        bar_in_session=np.arange(n) % 26,
        timestamp=np.arange(n, dtype=np.int64),
    )


@pytest.mark.parametrize("mode", ["lstm", "cnn", "transformer"])
def test_trunk_is_the_rl_encoder_and_loads_into_it(mode: str) -> None:
    fields = SupervisedConfig().encoder_fields(mode)
    model = MultiTaskModel(mode, T, F, fields, TASKS, 0.1)
    cls = get_encoder_class(mode)
    assert type(model.trunk) is cls
    rl = cls(sequence_observation_space(T, F, 10.0), model.trunk.config)
    rl.load_state_dict(model.trunk_state_dict())  # strict: same keys and shapes
    part = _part(8, 0)
    obs = {
        "window": th.from_numpy(part.window),
        "mask": th.from_numpy(part.mask),
        "account": th.zeros(8, 3),
    }
    model.eval()
    rl.eval()
    with th.no_grad():
        np.testing.assert_allclose(
            rl(obs).numpy(), model.embed(obs["window"], obs["mask"]).numpy(), rtol=1e-6
        )
        out = model(obs["window"], obs["mask"])
    assert out["direction"].shape == (8, 3) and out["intensity"].shape == (8,)


def test_training_learns_a_planted_signal_and_is_seeded() -> None:
    settings = TrainingSection(epochs=6, batch_size=64, learning_rate=5e-3, patience=6)
    fields = SupervisedConfig().encoder_fields("cnn")
    fit, val, test = _part(640, 1), _part(160, 2), _part(320, 3)

    def run() -> tuple[float, np.ndarray]:
        th.manual_seed(4)  # weight init; train_model seeds the batch order and dropout
        model = MultiTaskModel("cnn", T, F, fields, TASKS, 0.1)
        result = train_model(model, fit, val, settings, seed=4)
        pred = predict(model, test)
        assert result.best_val_loss <= result.history[0]["val_loss"]
        return float(
            (pred.logits["direction"].argmax(1) == test.labels["direction"]).mean()
        ), pred.logits["direction"]

    acc, logits = run()
    assert acc > 0.6  # chance is 1/3
    acc2, logits2 = run()
    np.testing.assert_array_equal(logits, logits2)


def test_focal_loss_and_label_smoothing_differ_from_plain_cross_entropy() -> None:
    logits = th.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [0.5, 0.5, 0.5]])
    target = th.tensor([0, 1, -1])
    ce = task_loss(logits, target, None, TrainingSection())
    expected = th.nn.functional.cross_entropy(logits[:2], target[:2])
    assert float(ce) == pytest.approx(float(expected))
    focal = task_loss(logits, target, None, TrainingSection(loss="focal"))
    assert float(focal) < float(ce)  # easy examples are down-weighted
    smooth = task_loss(logits, target, None, TrainingSection(label_smoothing=0.2))
    assert float(smooth) > float(ce)


def test_temperature_scaling_repairs_overconfidence_without_changing_predictions() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    true_logits = rng.normal(size=(n, 3))
    labels = np.array([rng.choice(3, p=p) for p in probabilities(true_logits)])
    overconfident = 4.0 * true_logits
    before = expected_calibration_error(probabilities(overconfident), labels)
    temp = fit_temperature(overconfident, labels)
    after = expected_calibration_error(probabilities(overconfident, temp), labels)
    assert temp == pytest.approx(4.0, rel=0.15)
    assert after < 0.03 < before
    np.testing.assert_array_equal(
        probabilities(overconfident, temp).argmax(1), overconfident.argmax(1)
    )


def test_coverage_curve_and_similarity_rank_confident_and_typical_first() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 0, 1, 0], dtype=bool)
    cov, acc = coverage_curve(conf, correct, np.array([0.4, 1.0]))
    np.testing.assert_allclose(acc, [1.0, 0.6])
    rng = np.random.default_rng(1)
    scorer = MahalanobisScorer.fit(rng.normal(size=(2000, 4)))
    sim = scorer.similarity(np.array([[0.0] * 4, [8.0] * 4]))
    assert sim[0] > 0.9 and sim[1] == 0.0


def test_holm_adjustment_is_the_session_stats_one_over_the_finite_p_values() -> None:
    got = holm_adjust_finite([0.01, 0.04, 0.03, float("nan"), 0.5])
    np.testing.assert_allclose(got[:3], [0.04, 0.09, 0.09])
    assert np.isnan(got[3]) and got[4] == pytest.approx(0.5)
    finite = [0.01, 0.04, 0.03, 0.5]
    np.testing.assert_allclose([got[i] for i in (0, 1, 2, 4)], holm_adjust(finite))


def test_stacking_is_fitted_on_validation_and_beats_a_useless_member() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    y = rng.integers(0, 3, n)
    good = np.full((n, 3), 0.1)
    good[np.arange(n), y] = 0.8
    noise = rng.dirichlet(np.ones(3), n)
    val = {"lstm": good[:1500], "cnn": noise[:1500]}
    test = {"lstm": good[1500:], "cnn": noise[1500:]}
    _, out, weights = ensemble_probabilities(val, test, y[:1500], ["lstm", "cnn"])
    assert weights["lstm"] > weights["cnn"]
    acc = (out["ens_stack"].argmax(1) == y[1500:]).mean()
    assert acc > 0.95
    assert (out["ens_mean"].argmax(1) == y[1500:]).mean() < acc + 1e-9


def test_attention_by_age_is_monotone_under_a_strong_fixed_decay() -> None:
    fields = {
        **SIZE_PRESETS["tiny"]["transformer"],
        "temporal_decay": "fixed",
        "local_window": None,
    }
    model = MultiTaskModel("transformer", T, F, fields, TASKS, 0.0)
    model.trunk.transformer.decay_fixed.mul_(0.0).add_(1.5)  # slope 1.5 per bar: strong
    part = _part(64, 5)
    pred = predict(model, part, attention=True)
    assert pred.attention is not None and pred.attention.shape == (64, 2, 2, T)
    full = part.mask.all(axis=1)
    by_age = pred.attention[full].mean(axis=(0, 2))[:, ::-1]  # (L, T), age 0 first
    assert (np.diff(by_age, axis=1) < 0).all()
    conf = attention_confidence(pred.attention)
    assert ((conf > 0) & (conf <= 1)).all()
    # Without the bias the profile is not monotone (the test can fail).
    plain = MultiTaskModel("transformer", T, F, {**fields, "temporal_decay": "none"}, TASKS, 0.0)
    flat = predict(plain, part, attention=True).attention
    assert not (np.diff(flat[full].mean(axis=(0, 2))[:, ::-1], axis=1) < 0).all()


def test_config_rejects_unknown_fields_with_their_name() -> None:
    with pytest.raises(ValueError, match="bogus"):
        SupervisedConfig.model_validate({"training": {"bogus": 1}})
    with pytest.raises(ValueError, match="direction"):
        SupervisedConfig(tasks=("volatility",))
