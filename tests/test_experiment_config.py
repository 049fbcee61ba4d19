"""The experiment schema: resolution order, derived fields, the purge rule, registries, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from backend.config.experiment import (
    REWARD_HORIZON_BARS,
    TRAINING_REWARD_DEFAULTS,
    DataConfig,
    ExperimentConfig,
    merge_layers,
    required_gap_bars,
    resolve_experiment,
)
from backend.config.presets import (
    PRESETS,
    RunPreset,
    get_preset,
    get_sac_intraday_dsr_preset,
    register_preset,
)
from backend.data_download.feature_config import FeatureConfig
from backend.data_download.intraday_features import max_lookback
from backend.environments.rewards import REWARD_CONFIGS, CostPenalizedConfig, DSRConfig
from backend.models.feature_extractors import (
    ENCODER_CONFIGS,
    ENCODER_SIZES,
    CNNConfig,
    TransformerConfig,
    encoder_names,
)
from backend.training.walk_forward import generate_windows
from backend.utils.config_model import ConfigError


def test_defaults_are_the_training_defaults() -> None:
    config = ExperimentConfig()
    assert config.env.episode_sessions == 5 and config.env.use_sequence_encoder
    assert config.reward == DSRConfig(eta=0.05, warmup_steps=20)
    assert config.encoder == TransformerConfig()
    assert config.modes == encoder_names()
    assert config.walk_forward.gap_bars == required_gap_bars(config.features)
    assert resolve_experiment() == config == ExperimentConfig.model_validate({})


def test_partial_sections_merge_over_the_training_defaults() -> None:
    config = ExperimentConfig.model_validate({"env": {"cost_bps": 2.0}, "reward": {"eta": 0.2}})
    assert config.env.episode_sessions == 5 and config.env.cost_bps == 2.0
    assert config.reward.eta == 0.2 and config.reward.warmup_steps == 20  # type: ignore[union-attr]
    other = ExperimentConfig.model_validate({"reward": {"name": "cost_penalized"}})
    assert other.reward == CostPenalizedConfig()


def test_precedence_is_defaults_preset_file_flags(tmp_path: Any) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("training:\n  batch_size: 32\n  seed: 4\nenv:\n  sequence_length: 20\n")
    config = resolve_experiment("short", path, {"training": {"seed": 9}})
    assert config.preset == "short"
    assert config.walk_forward.train_sessions == 150  # preset
    assert config.training.total_timesteps == 10_000  # preset
    assert config.training.batch_size == 32  # file over preset (64)
    assert config.env.sequence_length == 20  # file over preset (16)
    assert config.training.seed == 9  # flag over file
    assert config.training.gamma == 0.99  # schema default


def test_an_explicit_test_length_drops_the_presets_window_count(tmp_path: Any) -> None:
    assert resolve_experiment("short").walk_forward.windows == 1  # the preset tiles
    path = tmp_path / "f.yaml"
    path.write_text("walk_forward:\n  test_sessions: 10\n")
    config = resolve_experiment("short", path)
    assert (config.walk_forward.windows, config.walk_forward.test_sessions) == (None, 10)
    assert config.walk_forward.train_sessions == 150  # the rest of the preset stays
    path.write_text("walk_forward:\n  test_sessions: 10\n  windows: 3\n")
    assert resolve_experiment("short", path).walk_forward.windows == 3


def test_file_names_its_preset_and_an_explicit_one_wins(tmp_path: Any) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("preset: long\n")
    assert resolve_experiment(file=path).walk_forward.train_sessions == 250
    assert resolve_experiment("short", path).walk_forward.train_sessions == 150
    assert resolve_experiment(default_preset="short").preset == "short"
    path.write_text("preset: medium\n")
    with pytest.raises(ConfigError, match=r"f\.yaml: preset: unknown preset 'medium'.*'short'"):
        resolve_experiment(file=path)


def test_an_encoder_of_another_name_replaces_the_section_but_keeps_its_size() -> None:
    merged = merge_layers(
        {"encoder": {"name": "transformer", "size": "tiny", "n_layers": 3}},
        {"encoder": {"name": "cnn", "kernel_size": 5}},
    )
    assert merged["encoder"] == {"size": "tiny", "name": "cnn", "kernel_size": 5}
    config = resolve_experiment("short", {"encoder": {"name": "cnn", "kernel_size": 5}})
    assert config.encoder == CNNConfig(size="tiny", kernel_size=5)
    same = merge_layers({"encoder": {"name": "cnn", "channels": 8}}, {"encoder": {"name": "cnn"}})
    assert same["encoder"] == {"name": "cnn", "channels": 8}


def test_main_job_modes_share_the_size_and_the_named_mode_gets_the_section() -> None:
    config = resolve_experiment(
        "short", {"encoder": {"name": "transformer", "temporal_decay": "fixed"}}
    )
    tf = config.for_mode("transformer")
    assert tf.encoder.temporal_decay == "fixed" and tf.encoder.size == "tiny"  # type: ignore[union-attr]
    cnn = config.for_mode("cnn")
    assert cnn.encoder == CNNConfig(size="tiny") and cnn.env.use_sequence_encoder
    manual = config.for_mode("manual")
    assert manual.encoder.name == "manual" and not manual.env.use_sequence_encoder
    # A per-mode experiment is a valid experiment (what its bundle records).
    assert ExperimentConfig.model_validate(manual.model_dump(mode="json")) == manual


def test_purge_rule_is_derived_and_enforced_for_library_callers() -> None:
    features = FeatureConfig()
    needed = max_lookback(features) + REWARD_HORIZON_BARS
    assert required_gap_bars(features) == needed > 104  # the old default was below it
    assert ExperimentConfig().walk_forward.gap_bars == needed
    lighter = FeatureConfig(
        use_vix=False, use_volume=False, use_technical=False, return_horizons=(1, 4)
    )
    config = ExperimentConfig(features=lighter)
    assert config.walk_forward.gap_bars == required_gap_bars(lighter) < needed
    assert ExperimentConfig(walk_forward={"gap_bars": needed + 5}).walk_forward.gap_bars == (
        needed + 5
    )
    with pytest.raises(ConfigError, match=rf"walk_forward\.gap_bars=104 is below .* = {needed}"):
        ExperimentConfig(walk_forward={"gap_bars": 104})
    # Windows cut from a resolved experiment purge at least the rule's bars.
    windows = generate_windows([26] * 300, config.walk_forward)
    for w in windows:
        assert 26 * (w.test.start - w.val.stop) >= required_gap_bars(lighter)


def test_sequence_layout_is_derived_from_the_encoder() -> None:
    assert not ExperimentConfig(encoder={"name": "manual"}).env.use_sequence_encoder
    assert ExperimentConfig(encoder={"name": "lstm"}).env.use_sequence_encoder
    agreeing = {"name": "lstm"}, {"use_sequence_encoder": True}
    assert ExperimentConfig(encoder=agreeing[0], env=agreeing[1]).env.use_sequence_encoder
    with pytest.raises(ConfigError, match=r"use_sequence_encoder=True disagrees with encoder"):
        ExperimentConfig(encoder={"name": "manual"}, env={"use_sequence_encoder": True})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"encoder": {"name": "transformer", "local_window": [20, "x"]}},
            r"^encoder\.local_window\[1\]: Input should be a valid integer, got str 'x'$",
        ),
        (
            {"encoder": {"name": "cnn", "dilations": [1, 0]}},
            r"^encoder\.dilations\[1\]: Input should be greater than or equal to 1",
        ),
        (
            {"encoder": {"name": "lstm", "hiden_size": 3}},
            r"^encoder\.hiden_size: unknown key \(did you mean 'hidden_size'\?\)",
        ),
        (
            {"reward": {"name": "cost_penalized", "eta": 0.1}},
            r"^reward\.eta: unknown key; valid keys: \['cost_penalty', 'name', 'scale'\]",
        ),
        (
            {"training": {"gamma": 1.5}},
            r"^training\.gamma: Input should be less than or equal to 1",
        ),
        ({"data": {"symbols": ["spy"]}}, r"^data\.symbols\[0\]: String should match pattern"),
        ({"data": {"symbols": ["SPY", "SPY"]}}, r"^data\.symbols: symbols has duplicates"),
        ({"stochastic_eval": "yes"}, r"^stochastic_eval: Input should be a valid boolean"),
        (
            {"features": {"rsi_period": 0}, "env": {"deadband": 2}},
            r"^features\.rsi_period: .*; env\.deadband: ",
        ),
    ],
)
def test_errors_are_one_line_naming_the_path(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        resolve_experiment(file=data)
    assert "\n" not in str(info.value)


def test_round_trip_through_yaml_is_exact() -> None:
    config = resolve_experiment(
        "short",
        {
            "encoder": {"name": "transformer", "n_layers": 2, "local_window": [20, None]},
            "reward": {"name": "cost_penalized", "cost_penalty": 2.0, "scale": 10.0},
            "data": {"symbols": ["SPY", "QQQ"], "start": "2024-01-02"},
        },
    )
    text = config.to_yaml()
    assert ExperimentConfig.model_validate(yaml.safe_load(text)) == config
    assert resolve_experiment(file=yaml.safe_load(text)) == config
    assert hash(config) == hash(ExperimentConfig.model_validate(yaml.safe_load(text)))


def test_data_section_validates_dates_and_scenarios() -> None:
    assert DataConfig(start="2024-01-02", end="2024-01-02").start == "2024-01-02"
    with pytest.raises(ConfigError, match=r"DataConfig: start 2024-02-01 is after end"):
        DataConfig(start="2024-02-01", end="2024-01-01")
    with pytest.raises(ConfigError, match=r"DataConfig\.market: unknown market scenario 'x'"):
        DataConfig(market="x")


def test_every_registered_name_is_a_valid_choice() -> None:
    for name in encoder_names():
        for size in ENCODER_SIZES:
            config = ExperimentConfig(encoder={"name": name, "size": size}, modes=[name])
            assert isinstance(config.encoder, ENCODER_CONFIGS[name])
    for name in REWARD_CONFIGS:
        assert isinstance(ExperimentConfig(reward={"name": name}).reward, REWARD_CONFIGS[name])


def test_presets_are_registered_objects() -> None:
    assert {"short", "long", "production"} <= set(PRESETS)
    production = get_sac_intraday_dsr_preset()
    assert production is get_preset("production")
    config = resolve_experiment(production.name)
    assert config.modes == ("manual",) and config.encoder.name == "manual"
    assert config.walk_forward.train_sessions == 250
    with pytest.raises(ValueError, match="'short' is registered twice"):
        register_preset(RunPreset(name="short", description="again"))
    with pytest.raises(ValueError, match=r"unknown preset 'x'; expected one of \['short'"):
        get_preset("x")


def test_reward_defaults_differ_from_the_bare_reward_on_purpose() -> None:
    # The env's own default is the textbook DSR; training defaults to faster moments.
    assert DSRConfig().eta == 0.01 and TRAINING_REWARD_DEFAULTS.eta == 0.05


def test_json_schema_is_exported_with_descriptions_defaults_and_enums() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "backend.config", "--schema"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    schema = json.loads(out)
    props = schema["properties"]
    assert set(props) == set(ExperimentConfig.model_fields)
    assert props["modes"]["items"]["enum"] == list(encoder_names())
    encoder = props["encoder"]
    assert set(encoder["discriminator"]["mapping"]) == set(encoder_names())
    assert set(props["reward"]["discriminator"]["mapping"]) == set(REWARD_CONFIGS)
    transformer = schema["$defs"]["TransformerConfig"]["properties"]
    assert transformer["temporal_decay"]["enum"] == ["none", "fixed", "learnable"]
    assert transformer["size"]["enum"] == list(ENCODER_SIZES)
    assert "sliding-window" in transformer["local_window"]["description"]
    for name, model in schema["$defs"].items():
        for field, spec in model["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
    assert schema["$defs"]["DataConfig"]["properties"]["market"]["enum"][0] == "null"


def test_defaults_of_a_preset_print_as_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "backend.config", "--defaults", "short"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert ExperimentConfig.model_validate(yaml.safe_load(out)) == resolve_experiment("short")
