"""Behaviour of the pluggable SAC encoders (backend/models/feature_extractors)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from pydantic import ValidationError
from stable_baselines3 import SAC

from backend.models.feature_extractors import (
    ENCODER_CONFIGS,
    ENCODER_REGISTRY,
    ENCODER_SIZES,
    CNNConfig,
    CNNEncoder,
    EncoderBase,
    EncoderConfigBase,
    LSTMConfig,
    LSTMEncoder,
    ManualEncoder,
    ManualEncoderConfig,
    TransformerConfig,
    TransformerEncoder,
    encoder_names,
    encoder_policy_kwargs,
    register_encoder,
    uses_sequence_observation,
)
from backend.models.feature_extractors.transformer_encoder import EncoderLayer, alibi_slopes
from backend.utils.config_model import ConfigError

N_FEATURES = 5
WINDOW = 12
N_ACCOUNT = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # The machine's cores are shared; tiny models gain nothing from intra-op threads.
    previous = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(previous)


def flat_space(n_features: int = N_FEATURES) -> spaces.Dict:
    return spaces.Dict(
        {
            "features": spaces.Box(-np.inf, np.inf, (n_features,), np.float32),
            "account": spaces.Box(-np.inf, np.inf, (N_ACCOUNT,), np.float32),
        }
    )


def seq_space(window: int = WINDOW, n_features: int = N_FEATURES) -> spaces.Dict:
    return spaces.Dict(
        {
            "window": spaces.Box(-np.inf, np.inf, (window, n_features), np.float32),
            "mask": spaces.Box(0.0, 1.0, (window,), np.float32),
            "account": spaces.Box(-np.inf, np.inf, (N_ACCOUNT,), np.float32),
        }
    )


def make_obs(
    sequence: bool, n_pad: list[int], seed: int = 0, window: int = WINDOW
) -> dict[str, th.Tensor]:
    """One row per entry of ``n_pad``; padded bars hold garbage, as a careless env might."""
    gen = th.Generator().manual_seed(seed)
    batch = len(n_pad)
    account = th.randn(batch, N_ACCOUNT, generator=gen)
    if not sequence:
        return {"features": th.randn(batch, N_FEATURES, generator=gen), "account": account}
    mask = th.ones(batch, window)
    for row, pads in enumerate(n_pad):
        mask[row, :pads] = 0.0
    return {
        "window": th.randn(batch, window, N_FEATURES, generator=gen),
        "mask": mask,
        "account": account,
    }


SMALL: dict[str, Any] = {"embedding_dim": 16, "account_dim": 4}
CASES: list[Any] = [
    pytest.param("manual", ManualEncoderConfig(hidden_dims=(32,), **SMALL), id="manual-mlp"),
    pytest.param(
        "manual", ManualEncoderConfig(hidden_dims=(), activation="tanh", **SMALL), id="manual-lin"
    ),
    pytest.param("cnn", CNNConfig(channels=16, dilations=(1, 2), **SMALL), id="cnn-mean"),
    pytest.param(
        "cnn",
        CNNConfig(channels=8, kernel_size=2, dilations=(1, 2, 4), pooling="max", **SMALL),
        id="cnn-max",
    ),
    pytest.param("lstm", LSTMConfig(hidden_size=16, **SMALL), id="lstm-last"),
    pytest.param(
        "lstm",
        LSTMConfig(hidden_size=8, num_layers=2, dropout=0.1, pooling="mean", **SMALL),
        id="lstm-mean-2l",
    ),
    pytest.param("transformer", TransformerConfig(d_model=16, ff_dim=32, **SMALL), id="tf-default"),
    pytest.param(
        "transformer",
        TransformerConfig(
            d_model=16,
            ff_dim=32,
            temporal_decay="learnable",
            local_window=(3, None),
            positional_encoding="learned",
            pooling="mean",
            **SMALL,
        ),
        id="tf-alibi-local-learnedpos-mean",
    ),
    pytest.param(
        "transformer",
        TransformerConfig(
            d_model=16,
            n_heads=2,
            n_layers=3,
            ff_dim=32,
            norm_first=False,
            temporal_decay="fixed",
            positional_encoding="none",
            causal=True,
            dropout=0.1,
            **SMALL,
        ),
        id="tf-postln-causal-fixeddecay",
    ),
    pytest.param(
        "cnn",
        CNNConfig(channels=8, kernel_sizes=(2, 3, 5), dilations=(1, 2), **SMALL),
        id="cnn-multiscale",
    ),
]
SEQ_CASES = [case for case in CASES if case.values[0] != "manual"]
TF_CASES = [case for case in CASES if case.values[0] == "transformer"]


def build(
    mode: str, config: EncoderConfigBase, seed: int = 0, trained: bool = False, **space_kwargs: int
) -> EncoderBase:
    """Build an encoder; ``trained`` jitters every parameter so that init-time zeros
    (LayerNorm shifts, zero biases) cannot hide a masking bug."""
    th.manual_seed(seed)
    space = seq_space(**space_kwargs) if uses_sequence_observation(mode) else flat_space()
    encoder = ENCODER_REGISTRY[mode](space, config)
    if trained:
        with th.no_grad():
            for param in encoder.parameters():
                param.add_(0.2 * th.randn_like(param))
    return encoder


@pytest.mark.parametrize(("mode", "config"), CASES)
@pytest.mark.parametrize("batch", [1, 4])
def test_output_shape_finite_and_deterministic_in_eval(
    mode: str, config: EncoderConfigBase, batch: int
) -> None:
    encoder = build(mode, config).eval()
    obs = make_obs(uses_sequence_observation(mode), [0, 3, WINDOW - 1, 1][:batch])
    with th.no_grad():
        out = encoder(obs)
        again = encoder(obs)
    assert encoder.features_dim == config.embedding_dim + config.account_dim
    assert out.shape == (batch, encoder.features_dim)
    assert th.isfinite(out).all()
    assert th.equal(out, again)


@pytest.mark.parametrize(
    "config",
    [
        LSTMConfig(hidden_size=8, num_layers=2, dropout=0.5, **SMALL),
        TransformerConfig(d_model=16, ff_dim=32, dropout=0.5, **SMALL),
        CNNConfig(channels=8, dilations=(1,), dropout=0.5, **SMALL),
    ],
    ids=lambda c: type(c).__name__,
)
def test_dropout_is_wired_in_train_mode_only(config: EncoderConfigBase) -> None:
    mode = {LSTMConfig: "lstm", TransformerConfig: "transformer", CNNConfig: "cnn"}[type(config)]
    encoder = build(mode, config)
    obs = make_obs(True, [0, 2])
    with th.no_grad():
        assert not th.equal(encoder.train()(obs), encoder(obs))
        assert th.equal(encoder.eval()(obs), encoder(obs))


@pytest.mark.parametrize(("mode", "config"), SEQ_CASES)
def test_values_in_padded_positions_are_ignored(mode: str, config: EncoderConfigBase) -> None:
    encoder = build(mode, config, trained=True).eval()
    obs = make_obs(True, [0, 3, WINDOW - 1])
    noisy = {key: value.clone() for key, value in obs.items()}
    padded = noisy["mask"] == 0.0
    noisy["window"][padded] = 1e3 * th.randn(int(padded.sum()), N_FEATURES)
    with th.no_grad():
        assert th.allclose(encoder(obs), encoder(noisy), atol=1e-6)


@pytest.mark.parametrize(("mode", "config"), SEQ_CASES)
@pytest.mark.parametrize("n_pad", [0, 4])
def test_oldest_real_bar_changes_output(mode: str, config: EncoderConfigBase, n_pad: int) -> None:
    encoder = build(mode, config).eval()
    obs = make_obs(True, [n_pad])
    changed = {key: value.clone() for key, value in obs.items()}
    changed["window"][0, n_pad] += 3.0
    with th.no_grad():
        assert (encoder(obs) - encoder(changed)).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("mode", "config"),
    [
        case
        for case in SEQ_CASES
        if case.values[1].to_dict().get("positional_encoding") != "learned"
    ],
)
def test_padding_length_does_not_change_the_encoding(mode: str, config: EncoderConfigBase) -> None:
    """Five real bars padded to T=8 or T=12 encode identically: padding is truly absent."""
    short = build(mode, config, trained=True, window=8).eval()
    long = build(mode, config, seed=1, window=12).eval()
    long.load_state_dict(short.state_dict())
    obs_long = make_obs(True, [7], window=12)
    obs_short = {
        "window": obs_long["window"][:, 4:],
        "mask": obs_long["mask"][:, 4:],
        "account": obs_long["account"],
    }
    with th.no_grad():
        assert th.allclose(short(obs_short), long(obs_long), atol=1e-5)


@pytest.mark.parametrize(("mode", "config"), [c for c in SEQ_CASES if c.values[0] != "lstm"])
def test_a_mask_without_real_bars_gives_finite_output(mode: str, config: EncoderConfigBase) -> None:
    """Outside the contract (the newest bar is always real), but must not poison SAC with NaN."""
    encoder = build(mode, config, trained=True).eval()
    if isinstance(encoder, TransformerEncoder):
        encoder.store_attention = True
    obs = make_obs(True, [WINDOW, 0])
    with th.no_grad():
        assert th.isfinite(encoder(obs)).all()
    if isinstance(encoder, TransformerEncoder):
        assert all(th.isfinite(w).all() for w in encoder.last_attention)


def test_cnn_warns_when_last_pooling_cannot_see_the_whole_window() -> None:
    config = CNNConfig(channels=8, dilations=(1, 2), pooling="last", **SMALL)
    with pytest.warns(UserWarning, match="receptive field of 7 bars"):
        CNNEncoder(seq_space(), config)


def test_lstm_rejects_a_mask_with_holes() -> None:
    encoder = build("lstm", LSTMConfig(hidden_size=8, **SMALL))
    obs = make_obs(True, [0])
    obs["mask"][0, 5] = 0.0
    with pytest.raises(ValueError, match="oldest end"):
        encoder(obs)


@pytest.mark.parametrize(("mode", "config"), TF_CASES)
def test_stored_attention_maps_match_the_fused_path(mode: str, config: EncoderConfigBase) -> None:
    encoder = build(mode, config).eval()
    assert isinstance(encoder, TransformerEncoder)
    obs = make_obs(True, [0, 3, WINDOW - 1])
    with th.no_grad():
        fused = encoder(obs)
        assert encoder.last_attention == []
        encoder.store_attention = True
        explicit = encoder(obs)
    assert th.allclose(fused, explicit, atol=1e-5)
    assert isinstance(config, TransformerConfig)
    assert len(encoder.last_attention) == config.n_layers
    valid = obs["mask"].bool()  # (B, T)
    for weights in encoder.last_attention:
        assert weights.shape == (3, config.n_heads, WINDOW, WINDOW)
        assert th.isfinite(weights).all()
        row_sums = weights.sum(-1)  # (B, H, T)
        expected = valid.unsqueeze(1).float().expand_as(row_sums)
        assert th.allclose(row_sums, expected, atol=1e-5)  # real rows sum to 1, padded rows 0
        padded_key = ~valid.unsqueeze(1).unsqueeze(2).expand_as(weights)
        assert (weights[padded_key] == 0).all()  # padded bars get zero attention


def _transformer(seed: int = 0, **overrides: Any) -> TransformerEncoder:
    config = TransformerConfig(d_model=16, ff_dim=32, store_attention=True, **SMALL, **overrides)
    encoder = build("transformer", config, seed=seed).eval()
    assert isinstance(encoder, TransformerEncoder)
    return encoder


def test_local_window_zeroes_attention_outside_the_band() -> None:
    obs = make_obs(True, [0, 2])
    distance = (th.arange(WINDOW)[:, None] - th.arange(WINDOW)[None, :]).abs()  # (T, T)
    encoder = _transformer(local_window=(3, None))
    with th.no_grad():
        encoder(obs)
    local, global_ = encoder.last_attention
    assert (local[..., distance >= 3] == 0).all()
    assert local[1, :, 5, 5:8].sum() > 0  # inside the band of a real query: attended
    assert global_[..., distance >= 3].sum() > 0  # layer 2 is global again

    causal = _transformer(local_window=(3, 3), causal=True)
    offset = th.arange(WINDOW)[:, None] - th.arange(WINDOW)[None, :]  # query minus key
    with th.no_grad():
        causal(obs)
    for weights in causal.last_attention:
        outside = (offset < 0) | (offset >= 3)  # newer bars, or older than the last 3
        assert (weights[..., outside] == 0).all()


def test_temporal_decay_reweights_attention_by_distance() -> None:
    """Layer 1: ALiBi maps equal plain maps times exp(-m_h |i - j|), renormalised per row."""
    obs = make_obs(True, [0, 4])
    plain = _transformer(seed=3)
    fixed = _transformer(seed=3, temporal_decay="fixed")
    learnable = _transformer(seed=3, temporal_decay="learnable")
    learnable_params = learnable.state_dict()
    learnable_params.pop("body.decay_raw")
    assert all(th.equal(v, learnable_params[k]) for k, v in plain.state_dict().items())
    assert plain.state_dict().keys() == fixed.state_dict().keys()
    with th.no_grad():
        plain(obs)
        fixed(obs)
        learnable(obs)
    slopes = th.tensor(alibi_slopes(4)).view(1, 4, 1, 1)
    distance = (th.arange(WINDOW)[:, None] - th.arange(WINDOW)[None, :]).abs().float()
    expected = plain.last_attention[0] * th.exp(-slopes * distance)
    expected = expected / expected.sum(-1, keepdim=True).clamp_min(1e-12)
    assert th.allclose(fixed.last_attention[0], expected, atol=1e-5)
    assert th.allclose(learnable.last_attention[0], expected, atol=1e-5)

    # The newest bar's query looks, on average, at nearer bars under decay.
    def mean_age(weights: th.Tensor) -> float:
        return float((weights[0, :, -1] * distance[-1]).sum(-1).mean())

    assert mean_age(fixed.last_attention[0]) < mean_age(plain.last_attention[0])


def test_alibi_slopes_follow_the_paper() -> None:
    assert alibi_slopes(8) == pytest.approx([2.0 ** -(i + 1) for i in range(8)])
    assert alibi_slopes(4) == pytest.approx([0.25, 0.0625, 0.015625, 0.00390625])
    assert alibi_slopes(6) == pytest.approx(alibi_slopes(4) + alibi_slopes(8)[0::2][:2])


@pytest.mark.parametrize(("mode", "config"), TF_CASES)
def test_attention_entropy_is_between_zero_and_log_t(mode: str, config: EncoderConfigBase) -> None:
    encoder = build(mode, config).eval()
    assert isinstance(encoder, TransformerEncoder) and isinstance(config, TransformerConfig)
    encoder.store_attention = True
    with th.no_grad():
        encoder(make_obs(True, [0, 5, WINDOW - 1]))
    values = [encoder.attention_entropy(layer) for layer in range(config.n_layers)]
    assert all(0.0 <= value <= math.log(WINDOW) + 1e-6 for value in values)
    assert encoder.attention_entropy() == pytest.approx(float(np.mean(values)), rel=1e-5)


def test_attention_entropy_of_uniform_attention_is_log_of_real_bars() -> None:
    encoder = _transformer()
    with th.no_grad():
        for layer in encoder.transformer.layers:
            assert isinstance(layer, EncoderLayer)
            layer.attn.qkv.weight[:32].zero_()  # q = k = 0 -> equal scores -> uniform rows
            layer.attn.qkv.bias[:32].zero_()
        encoder(make_obs(True, [0, 4, WINDOW - 1]))
    real = th.tensor([WINDOW, WINDOW - 4, 1], dtype=th.float64)
    expected = float((real * real.log()).sum() / real.sum())  # mean over real query rows
    assert encoder.attention_entropy(0) == pytest.approx(expected, abs=1e-5)


def test_attention_entropy_needs_stored_maps() -> None:
    encoder = _transformer()
    encoder.store_attention = False
    with th.no_grad():
        encoder(make_obs(True, [0]))
    with pytest.raises(RuntimeError, match="store_attention"):
        encoder.attention_entropy()


@pytest.mark.parametrize(("mode", "config"), CASES)
def test_state_dict_round_trip_gives_identical_outputs(
    mode: str, config: EncoderConfigBase, tmp_path: Any
) -> None:
    source = build(mode, config, seed=0).eval()
    target = build(mode, config, seed=1).eval()
    obs = make_obs(uses_sequence_observation(mode), [0, 2])
    with th.no_grad():
        assert not th.equal(source(obs), target(obs))
        th.save(source.state_dict(), tmp_path / "encoder.pt")
        target.load_state_dict(th.load(tmp_path / "encoder.pt"))
        assert th.equal(source(obs), target(obs))


@pytest.mark.parametrize(("mode", "config"), CASES)
def test_gradient_reaches_every_parameter(mode: str, config: EncoderConfigBase) -> None:
    encoder = build(mode, config).train()
    obs = make_obs(uses_sequence_observation(mode), [0, 2, 5])
    out = encoder(obs)
    (out * th.randn_like(out)).sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_parameter_counts_at_defaults() -> None:
    """The numbers quoted in the encoder docstrings (F=30, T=64)."""
    counts = {}
    for mode, cls in ENCODER_REGISTRY.items():
        space = seq_space(64, 30) if uses_sequence_observation(mode) else flat_space(30)
        encoder = cls(space)
        assert encoder.features_dim == 80
        counts[mode] = sum(p.numel() for p in encoder.parameters())
    assert counts == {"manual": 28_928, "cnn": 60_480, "lstm": 28_928, "transformer": 73_408}
    rich = TransformerEncoder(
        seq_space(64, 30),
        TransformerConfig(positional_encoding="learned", temporal_decay="learnable"),
    )
    assert sum(p.numel() for p in rich.parameters()) == 73_408 + 64 * 64 + 4


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: TransformerConfig(d_model=64, n_heads=5), "divisible by n_heads 5"),
        (lambda: TransformerConfig(local_window=(20,)), "one window"),
        (
            lambda: TransformerConfig(local_window=(0, None)),
            r"local_window\[0\]: Input should be greater than or equal to 1",
        ),
        (lambda: TransformerConfig(positional_encoding="none"), "blind to bar order"),
        (lambda: TransformerConfig(pooling="first"), r"pooling: Input should be 'last' or 'mean'"),  # type: ignore[arg-type]
        (lambda: TransformerConfig(dropout=1.0), r"dropout: Input should be less than 1"),
        (lambda: LSTMConfig(dropout=0.2), "num_layers > 1"),
        (lambda: LSTMConfig(hidden_size=0), r"hidden_size: .*greater than or equal to 1"),
        (lambda: CNNConfig(dilations=()), "at least one"),
        (lambda: CNNConfig(kernel_size=True), r"kernel_size: Input should be a valid integer"),
        (
            lambda: ManualEncoderConfig(hidden_dims=(32, -1)),
            r"hidden_dims\[1\]: .*greater than or equal to 1",
        ),
        (lambda: ManualEncoderConfig(embedding_dim=2.5), "embedding_dim"),  # type: ignore[arg-type]
        (lambda: ManualEncoderConfig(activation="swish"), r"activation: Input should be 'relu'"),  # type: ignore[arg-type]
        (
            lambda: CNNConfig.from_dict({"chanels": 8}),
            r"CNNConfig\.chanels: unknown key \(did you mean 'channels'\?\)",
        ),
        (lambda: CNNConfig(size="huge"), r"size: Input should be 'tiny', 'small', 'base'"),  # type: ignore[arg-type]
    ],
)
def test_config_validation(factory: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        factory()


@pytest.mark.parametrize(
    "config",
    [
        ManualEncoderConfig(hidden_dims=(64, 32), activation="silu", account_dim=8),
        CNNConfig(dilations=(1, 3), pooling="max", dropout=0.2),
        LSTMConfig(num_layers=2, dropout=0.1, pooling="mean"),
        TransformerConfig(local_window=(20, None), temporal_decay="learnable", causal=True),
    ],
    ids=lambda c: type(c).__name__,
)
def test_config_dict_round_trip(config: EncoderConfigBase) -> None:
    plain = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    restored = type(config).from_dict(plain)
    assert restored == config
    assert hash(restored) == hash(config)  # lists from YAML came back as tuples
    with pytest.raises(ValidationError, match="frozen"):
        config.embedding_dim = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "space", "error", "match"),
    [
        (ManualEncoder, seq_space(), TypeError, "use_sequence_encoder=False"),
        (CNNEncoder, flat_space(), TypeError, "use_sequence_encoder=True"),
        (LSTMEncoder, flat_space(), TypeError, "encoder name 'manual'"),
        (TransformerEncoder, spaces.Box(-1, 1, (WINDOW, N_FEATURES)), TypeError, "spaces.Dict"),
        (
            TransformerEncoder,
            spaces.Dict({**seq_space().spaces, "mask": spaces.Box(0, 1, (WINDOW - 1,))}),
            ValueError,
            "'mask' must have shape",
        ),
    ],
)
def test_wrong_observation_space_is_rejected(
    cls: type[EncoderBase], space: spaces.Space[Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        cls(space)  # type: ignore[arg-type]


def test_registry_and_policy_kwargs() -> None:
    assert set(ENCODER_REGISTRY) == set(ENCODER_CONFIGS) == set(encoder_names())
    assert {"manual", "cnn", "lstm", "transformer"} <= set(encoder_names())
    assert encoder_names()[0] == "manual"  # the reference comes first in every report
    assert [uses_sequence_observation(m) for m in ("manual", "cnn", "lstm", "transformer")] == [
        False,
        True,
        True,
        True,
    ]
    kwargs = encoder_policy_kwargs("transformer", {"n_heads": 2, "local_window": [8, None]})
    assert kwargs["features_extractor_class"] is TransformerEncoder
    assert kwargs["features_extractor_kwargs"] == {
        "config": TransformerConfig(n_heads=2, local_window=(8, None))
    }
    assert encoder_policy_kwargs("cnn")["features_extractor_kwargs"]["config"] == CNNConfig()
    with pytest.raises(TypeError, match="takes a LSTMConfig"):
        encoder_policy_kwargs("lstm", CNNConfig())
    with pytest.raises(TypeError, match="takes a CNNConfig"):
        CNNEncoder(seq_space(), LSTMConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown encoder 'no_such_encoder'"):
        encoder_policy_kwargs("no_such_encoder")
    config = TransformerConfig(n_heads=2)
    assert encoder_policy_kwargs(config) == encoder_policy_kwargs("transformer", config)


@pytest.mark.parametrize("mode", encoder_names())
@pytest.mark.parametrize("size", ENCODER_SIZES)
def test_every_registered_encoder_builds_at_every_size(mode: str, size: str) -> None:
    config = ENCODER_CONFIGS[mode](size=size)  # type: ignore[call-arg]
    assert config.name == mode and config.size == size
    assert ENCODER_CONFIGS[mode].from_dict(config.to_dict()) == config
    encoder = build(mode, config)
    out = encoder(make_obs(uses_sequence_observation(mode), [0, 2]))
    assert out.shape == (2, config.features_dim) and th.isfinite(out).all()


def test_size_presets_set_defaults_that_explicit_fields_override() -> None:
    tiny = TransformerConfig(size="tiny")
    assert (tiny.d_model, tiny.n_heads, tiny.n_layers, tiny.embedding_dim) == (16, 2, 1, 16)
    assert TransformerConfig(size="tiny", n_layers=3).n_layers == 3
    assert TransformerConfig(size="base") == TransformerConfig()
    sizes = [ManualEncoderConfig(size=s).hidden_dims[0] for s in ENCODER_SIZES]  # type: ignore[arg-type]
    assert sizes == sorted(sizes)  # tiny < small < base < large


def test_registering_needs_a_name_and_every_size() -> None:
    from typing import ClassVar, Literal

    class NoSizes(EncoderConfigBase):
        name: Literal["nosizes"] = "nosizes"

    with pytest.raises(ValueError, match=r"NoSizes\.size_presets lacks size\(s\)"):
        register_encoder(NoSizes)

    class Duplicate(EncoderConfigBase):
        size_presets: ClassVar[dict[str, dict[str, Any]]] = {s: {} for s in ENCODER_SIZES}
        name: Literal["manual"] = "manual"

    with pytest.raises(ValueError, match="'manual' is registered twice"):
        register_encoder(Duplicate)(ManualEncoder)


class DummyMarketEnv(gym.Env[dict[str, Any], np.ndarray]):
    """Emits the env contract's Dict observations; reward for matching the newest bar's sign."""

    def __init__(self, sequence: bool, episode_length: int = 16) -> None:
        self.sequence = sequence
        self.episode_length = episode_length
        self.observation_space = seq_space() if sequence else flat_space()
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._step = 0
        self._target = 0.0

    def _observation(self) -> dict[str, np.ndarray]:
        rng = self.np_random
        account = np.array(
            [
                rng.uniform(-1, 1),
                0.01 * rng.standard_normal(),
                1 - self._step / self.episode_length,
            ],
            dtype=np.float32,
        )
        if not self.sequence:
            features = rng.standard_normal(N_FEATURES).astype(np.float32)
            self._target = float(np.sign(features[0]))
            return {"features": features, "account": account}
        window = rng.standard_normal((WINDOW, N_FEATURES)).astype(np.float32)
        mask = np.ones(WINDOW, dtype=np.float32)
        n_pad = int(rng.integers(0, WINDOW))
        mask[:n_pad] = 0.0
        window[:n_pad] = 0.0
        self._target = float(np.sign(window[-1, 0]))
        return {"window": window, "mask": mask, "account": account}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._step = 0
        return self._observation(), {}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        reward = -float((float(action[0]) - self._target) ** 2)
        self._step += 1
        return self._observation(), reward, False, self._step >= self.episode_length, {}


@pytest.mark.parametrize(("mode", "config"), [CASES[0], CASES[2], CASES[4], CASES[7]])
def test_sac_learns_predicts_and_reloads_with_each_encoder(
    mode: str, config: EncoderConfigBase, tmp_path: Any
) -> None:
    env = DummyMarketEnv(sequence=uses_sequence_observation(mode))
    policy_kwargs = {**encoder_policy_kwargs(mode, config), "net_arch": [16]}
    model = SAC(
        "MultiInputPolicy",
        env,
        policy_kwargs=policy_kwargs,
        learning_starts=16,
        batch_size=8,
        buffer_size=128,
        seed=0,
        device="cpu",
    )
    # SB3 SAC default (share_features_extractor=False): actor, critic and target each own one.
    policy = model.policy
    extractors = [policy.actor.features_extractor, policy.critic.features_extractor]
    extractors.append(policy.critic_target.features_extractor)
    assert all(type(e) is ENCODER_REGISTRY[mode] for e in extractors)
    assert len({id(e) for e in extractors}) == 3
    model.learn(64)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,) and np.isfinite(action).all()

    model.save(tmp_path / "sac")
    loaded = SAC.load(tmp_path / "sac", device="cpu")
    reloaded_action, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_allclose(reloaded_action, action, atol=1e-6)


# --------------------------------------------------------------- multi-scale CNN


def test_multiscale_cnn_is_causal_and_its_receptive_field_is_the_largest_kernel() -> None:
    config = CNNConfig(channels=8, kernel_sizes=(2, 5), dilations=(1, 2), pooling="last", **SMALL)
    assert config.receptive_field == 1 + 4 * 3  # largest kernel over the dilations
    encoder = build("cnn", config, trained=True, window=13).eval()
    body = encoder.body
    obs = make_obs(True, [0], window=13)
    valid = obs["mask"] > 0.5
    changed = obs["window"].clone()
    changed[0, 7] += 5.0  # a bar at position 7 cannot reach earlier outputs
    with th.no_grad():
        keep = valid.float().unsqueeze(-1)
        h1, h2 = body.input_proj(obs["window"]) * keep, body.input_proj(changed) * keep
        for block in body.blocks:
            h1, h2 = block(h1, keep), block(h2, keep)
    assert th.allclose(h1[0, :7], h2[0, :7], atol=1e-6)
    assert (h1[0, 7:] - h2[0, 7:]).abs().max() > 1e-4
    # The oldest bar inside the receptive field of the newest still moves the output.
    edge = make_obs(True, [0], window=13)
    moved = {k: v.clone() for k, v in edge.items()}
    moved["window"][0, 13 - config.receptive_field] += 5.0
    with th.no_grad():
        assert (encoder(edge) - encoder(moved)).abs().max() > 1e-4


def test_multiscale_cnn_fusions_and_the_default_single_kernel_layout() -> None:
    plain = build("cnn", CNNConfig(channels=8, dilations=(1, 2), **SMALL))
    concat = build("cnn", CNNConfig(channels=8, kernel_sizes=(3, 5), dilations=(1, 2), **SMALL))
    summed = build(
        "cnn",
        CNNConfig(
            channels=8, kernel_sizes=(3, 5), dilations=(1, 2), multiscale_fusion="sum", **SMALL
        ),
    )
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # Two branches of 8x8xk convs per block; concat adds a 16 -> 8 1x1 fusion per block.
    assert count(summed) - count(plain) == 2 * (8 * 8 * 5 + 8)
    assert count(concat) - count(summed) == 2 * (16 * 8 + 8)
    # The default keeps the single-kernel blocks (old state dicts load unchanged).
    assert all("branches" not in key for key in plain.state_dict())
    with pytest.raises(ConfigError, match="kernel_sizes must not repeat"):
        CNNConfig(kernel_sizes=(3, 3))


# ------------------------------------------------------- feature projection / instruments


@pytest.mark.parametrize("n_features", [3, 9, 23])
def test_every_sequence_encoder_projects_any_feature_count(n_features: int) -> None:
    """Adding or removing features changes only the observation space, not the code."""
    for mode, config in [c.values for c in SEQ_CASES]:
        encoder = build(mode, config, n_features=n_features).eval()
        obs = make_obs(True, [0, 2])
        obs["window"] = th.randn(2, WINDOW, n_features)
        with th.no_grad():
            assert encoder(obs).shape == (2, config.features_dim)


def _instrument_space(n_instruments: int) -> spaces.Dict:
    space = seq_space()
    return spaces.Dict(
        {**space.spaces, "instrument": spaces.Box(0.0, n_instruments - 1.0, (1,), np.float32)}
    )


@pytest.mark.parametrize("mode", ["cnn", "lstm", "transformer"])
def test_instrument_embedding_tells_symbols_apart(mode: str) -> None:
    config = ENCODER_CONFIGS[mode].model_validate(
        {"size": "tiny", "instruments": ("SPY", "QQQ"), "instrument_dim": 3}
    )
    th.manual_seed(0)
    encoder = ENCODER_REGISTRY[mode](_instrument_space(2), config).eval()
    obs = make_obs(True, [0, 0])
    obs["window"][1] = obs["window"][0]
    obs["account"][1] = obs["account"][0]
    obs["instrument"] = th.tensor([[0.0], [1.0]])
    with th.no_grad():
        out = encoder(obs)
    assert (out[0] - out[1]).abs().max() > 1e-4  # same bars, different symbol
    # A fixed instrument equals passing its id; the weights are the same.
    fixed_cfg = config.replace(instrument="QQQ")
    fixed = ENCODER_REGISTRY[mode](seq_space(), fixed_cfg).eval()
    fixed.load_state_dict(encoder.state_dict())
    plain_obs = {k: v[1:] for k, v in obs.items() if k != "instrument"}
    with th.no_grad():
        assert th.allclose(fixed(plain_obs), out[1:], atol=1e-6)
    bad = {**obs, "instrument": th.tensor([[0.0], [2.0]])}
    with pytest.raises(ValueError, match=r"instrument ids must lie in \[0, 1\]"):
        encoder(bad)


def test_instrument_config_is_checked() -> None:
    with pytest.raises(ValueError, match="need an 'instrument' entry"):
        TransformerEncoder(seq_space(), TransformerConfig(size="tiny", instruments=("SPY",)))
    with pytest.raises(ConfigError, match="'IWM' is not one of instruments"):
        TransformerConfig(instruments=("SPY", "QQQ"), instrument="IWM")
    with pytest.raises(ConfigError, match="symbols must not repeat"):
        LSTMConfig(instruments=("SPY", "SPY"))
    # No instruments (the default): no embedding, parameters as before.
    assert build("transformer", TransformerConfig(size="tiny")).instrument_embedding is None
