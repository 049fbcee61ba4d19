import json

import pytest
import yaml
from pydantic import ValidationError

from backend.data_download.feature_config import FEATURE_GROUPS, FEATURE_PRESETS, FeatureConfig
from backend.utils.config_model import ConfigError


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
    fields = set(FeatureConfig.model_fields)
    assert fields - documented == set()
    # ...and the docstrings reach the JSON Schema (the web form's labels).
    schema = FeatureConfig.model_json_schema()["properties"]
    assert all(schema[name].get("description") for name in fields)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rsi_period": 0}, r"rsi_period: Input should be greater than or equal to 1, got int 0"),
        ({"atr_period": -3}, r"atr_period: Input should be greater than or equal to 1"),
        ({"bollinger_window": 2.5}, r"bollinger_window: Input should be a valid integer"),
        ({"volume_zscore_window": True}, r"volume_zscore_window: Input should be a valid int"),
        ({"bollinger_window": 1}, r"bollinger_window: Input should be greater than or equal to 2"),
        ({"vix_volatility_window": 1}, r"vix_volatility_window: .*greater than or equal to 2"),
        ({"macd_fast": 26, "macd_slow": 26}, r"macd_fast \(26\) must be smaller"),
        ({"return_horizons": (1, 0)}, r"return_horizons\[1\]: .*greater than or equal to 1"),
        ({"return_horizons": (4, 4)}, r"return_horizons: return_horizons has duplicates"),
        ({"return_horizons": ()}, r"return_horizons is empty but use_returns"),
        ({"bollinger_k": 0.0}, r"bollinger_k: Input should be greater than 0"),
        ({"ewm_residual": 0.0}, r"ewm_residual: Input should be greater than 0"),
        ({"ewm_residual": 1.5}, r"ewm_residual: Input should be less than or equal to 1"),
        ({"interval": "7m"}, r"interval must be one of"),
        ({"use_vix": "yes"}, r"use_vix: Input should be a valid boolean"),
        (
            {f"use_{g}": False for g in FEATURE_GROUPS},
            r"at least one feature group must be enabled",
        ),
    ],
)
def test_validation_errors(kwargs, match):
    with pytest.raises(ConfigError, match=r"^FeatureConfig[.:].*" + match):
        FeatureConfig(**kwargs)


def test_returns_may_be_empty_when_the_group_is_off_and_lists_become_tuples():
    cfg = FeatureConfig(use_returns=False, return_horizons=())
    assert "returns" not in cfg.enabled_groups
    listed = FeatureConfig(return_horizons=[2, 8])  # type: ignore[arg-type]
    assert listed.return_horizons == (2, 8)
    hash(listed)  # still hashable (it keys the feature-registry cache)


def test_config_is_frozen():
    with pytest.raises(ValidationError, match="frozen"):
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


def test_dict_is_the_pydantic_json_dump():
    cfg = _custom()
    assert cfg.to_dict() == cfg.model_dump(mode="json")
    assert FeatureConfig.model_validate(cfg.to_dict()) == cfg


def test_unknown_key_is_named():
    data = FeatureConfig().to_dict()
    data["rsi_perod"] = 10
    with pytest.raises(
        ValueError, match=r"FeatureConfig\.rsi_perod: unknown key \(did you mean 'rsi_period'\?\)"
    ):
        FeatureConfig.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("rsi_period", "14", r"FeatureConfig\.rsi_period: .*valid integer, got str"),
        ("rsi_period", True, r"FeatureConfig\.rsi_period: .*valid integer, got bool"),
        ("use_vix", 1, r"FeatureConfig\.use_vix: .*valid boolean, got int"),
        ("return_horizons", 5, r"FeatureConfig\.return_horizons: .*valid tuple, got int"),
        ("return_horizons", [1, "4"], r"FeatureConfig\.return_horizons\[1\]: .*valid integer"),
        ("interval", 15, r"FeatureConfig\.interval: .*valid string, got int"),
    ],
)
def test_from_dict_type_errors_name_the_key(key, value, match):
    data = FeatureConfig().to_dict()
    data[key] = value
    with pytest.raises(ConfigError, match=match):
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
    with pytest.raises(
        ConfigError, match=r"evil\.yaml: cannot parse: could not determine a constructor"
    ):
        FeatureConfig.load(evil)


def test_empty_yaml_gives_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert FeatureConfig.load(empty) == FeatureConfig()
