import dataclasses
import json

import pytest
import yaml

from backend.config.training_config import (
    FEATURE_GROUPS,
    FEATURE_PRESETS,
    FeatureConfig,
    config_from_dict,
    load_config,
    save_config,
)


def test_preset_for_sac_intraday_dsr_enables_every_group_including_vix():
    cfg = FeatureConfig.for_agent("SAC_INTRADAY_DSR")
    assert cfg.enabled_groups == FEATURE_GROUPS
    assert cfg.use_vix is True
    assert cfg == FEATURE_PRESETS["SAC_INTRADAY_DSR"]
    # Lookup tolerates case and surrounding whitespace in CLI/YAML input.
    assert FeatureConfig.for_agent(" sac_intraday_dsr ") == cfg


def test_unknown_agent_lists_known_agents():
    with pytest.raises(
        ValueError, match=r"no feature preset for agent 'PPO_DAILY'.*SAC_INTRADAY_DSR"
    ):
        FeatureConfig.for_agent("PPO_DAILY")


def test_defaults_are_the_documented_ones():
    cfg = FeatureConfig()
    assert cfg.use_vix
    assert cfg.return_horizons == (1, 4, 13, 26, 78)
    assert cfg.session_bars == 26
    assert FeatureConfig(interval="5m").session_bars == 78


def test_every_field_has_a_docstring():
    # The convention is "a docstring per field"; keep it enforced as fields get added.
    import ast
    import inspect

    source = inspect.getsource(FeatureConfig)
    body = ast.parse(source).body[0].body
    documented = set()
    for node, following in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            if isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                documented.add(node.target.id)
    fields = {f.name for f in dataclasses.fields(FeatureConfig)}
    assert fields - documented == set()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rsi_period": 0}, ValueError, r"rsi_period must be a positive integer, got 0"),
        ({"atr_period": -3}, ValueError, r"atr_period must be a positive integer"),
        ({"bollinger_window": 2.5}, ValueError, r"bollinger_window must be a positive integer"),
        ({"volume_zscore_window": True}, ValueError, r"volume_zscore_window must be a positive"),
        ({"bollinger_window": 1}, ValueError, r"bollinger_window must be >= 2"),
        ({"vix_volatility_window": 1}, ValueError, r"vix_volatility_window must be >= 2"),
        ({"macd_fast": 26, "macd_slow": 26}, ValueError, r"macd_fast \(26\) must be smaller"),
        ({"return_horizons": (1, 0)}, ValueError, r"return_horizons must hold positive"),
        ({"return_horizons": (4, 4)}, ValueError, r"return_horizons has duplicates"),
        ({"return_horizons": ()}, ValueError, r"return_horizons is empty but use_returns"),
        ({"bollinger_k": 0.0}, ValueError, r"bollinger_k must be > 0"),
        ({"ewm_residual": 0.0}, ValueError, r"ewm_residual must be in \(0, 1\]"),
        ({"ewm_residual": 1.5}, ValueError, r"ewm_residual must be in \(0, 1\]"),
        ({"interval": "7m"}, ValueError, r"interval must be one of"),
        ({"use_vix": "yes"}, TypeError, r"use_vix must be a bool"),
        (
            {f"use_{g}": False for g in FEATURE_GROUPS},
            ValueError,
            r"at least one feature group must be enabled",
        ),
    ],
)
def test_validation_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        FeatureConfig(**kwargs)


def test_returns_may_be_empty_when_the_group_is_off_and_lists_become_tuples():
    cfg = FeatureConfig(use_returns=False, return_horizons=())
    assert "returns" not in cfg.enabled_groups
    listed = FeatureConfig(return_horizons=[2, 8])  # type: ignore[arg-type]
    assert listed.return_horizons == (2, 8)
    hash(listed)  # still hashable (it keys the feature-registry cache)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeatureConfig().rsi_period = 5  # type: ignore[misc]


def _custom() -> FeatureConfig:
    return FeatureConfig(
        use_volume=False,
        use_vix=False,
        return_horizons=(1, 2, 3),
        rsi_period=9,
        bollinger_k=2.5,
        ewm_residual=0.01,
        interval="5m",
    )


def test_dict_round_trip():
    cfg = _custom()
    data = cfg.to_dict()
    assert data["return_horizons"] == [1, 2, 3]  # plain list: YAML without python tags
    assert FeatureConfig.from_dict(data) == cfg


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    cfg = _custom()
    path = cfg.save(tmp_path / "sub" / f"features{suffix}")
    assert path.exists()
    assert FeatureConfig.load(path) == cfg
    text = path.read_text()
    parsed = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert parsed == cfg.to_dict()
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left nothing behind


def test_generic_helpers_match_the_methods(tmp_path):
    cfg = _custom()
    save_config(cfg, tmp_path / "a.json")
    assert load_config(FeatureConfig, tmp_path / "a.json") == cfg
    assert config_from_dict(FeatureConfig, cfg.to_dict()) == cfg


def test_unknown_key_is_named():
    data = FeatureConfig().to_dict()
    data["rsi_perod"] = 10
    with pytest.raises(ValueError, match=r"FeatureConfig: unknown key\(s\) \['rsi_perod'\]"):
        FeatureConfig.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("rsi_period", "14", r"FeatureConfig\.rsi_period: expected an int, got str"),
        ("rsi_period", True, r"FeatureConfig\.rsi_period: expected an int, got bool"),
        ("use_vix", 1, r"FeatureConfig\.use_vix: expected a bool, got int"),
        ("return_horizons", 5, r"FeatureConfig\.return_horizons: expected a list"),
        ("return_horizons", [1, "4"], r"FeatureConfig\.return_horizons\[1\]: expected an int"),
        ("interval", 15, r"FeatureConfig\.interval: expected a string"),
    ],
)
def test_from_dict_type_errors_name_the_key(key, value, match):
    data = FeatureConfig().to_dict()
    data[key] = value
    with pytest.raises(TypeError, match=match):
        FeatureConfig.from_dict(data)


def test_from_dict_accepts_ints_for_floats_and_partial_dicts():
    cfg = FeatureConfig.from_dict({"bollinger_k": 3, "use_vix": False})
    assert cfg.bollinger_k == 3.0 and isinstance(cfg.bollinger_k, float)
    assert cfg.use_vix is False and cfg.rsi_period == FeatureConfig().rsi_period


def test_from_dict_runs_post_init_validation():
    with pytest.raises(ValueError, match=r"macd_fast \(30\) must be smaller than macd_slow"):
        FeatureConfig.from_dict({"macd_fast": 30})


def test_load_rejects_unknown_extension_and_non_mapping(tmp_path):
    with pytest.raises(ValueError, match=r"cannot tell the format.*\.toml"):
        FeatureConfig().save(tmp_path / "features.toml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"expected a mapping at the top level, got list"):
        FeatureConfig.load(bad)


def test_yaml_is_safe_loaded(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("rsi_period: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(yaml.YAMLError):
        FeatureConfig.load(evil)


def test_empty_yaml_gives_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert FeatureConfig.load(empty) == FeatureConfig()
