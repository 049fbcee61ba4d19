"""The env is built from its Gymnasium id alone, and RL Zoo trains on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import backend.environments  # noqa: F401  (registers the id, as RL Zoo's --gym-packages does)
from backend.data_download.csv_store import list_csv_files
from backend.data_download.synthetic_market import (
    MARKET_SCENARIOS,
    SyntheticMarketConfig,
    write_synthetic_market,
)
from backend.environments import ENV_ID
from backend.environments.factory import (
    make_intraday_env,
    synthetic_market_dir,
    validate_env_kwargs,
)
from backend.utils.config_model import ConfigError

REPO = Path(__file__).resolve().parents[1]
RL_ZOO_CONFIG = REPO / "backend" / "config" / "rl_zoo" / "sac.yml"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("env_factory") / "store"
    write_synthetic_market(root, SyntheticMarketConfig(n_sessions=40, end=None))
    return root


def test_make_from_the_id_alone_builds_the_embedded_market(tmp_path, monkeypatch):
    # A user's first call: no arguments, offline; the market is generated under ./data.
    monkeypatch.chdir(tmp_path)
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    assert env.unwrapped.arrays.symbol == "SPY"
    assert env.observation_space.contains(obs)
    assert (tmp_path / "data" / "synthetic" / "intraday" / "SPY").is_dir()
    env.close()


def test_module_prefixed_id_imports_and_registers(store):
    env = gym.make(f"backend.environments:{ENV_ID}", data_dir=str(store), symbol="QQQ")
    assert env.unwrapped.arrays.symbol == "QQQ"
    env.close()


def test_keyword_arguments_reach_features_and_env(store):
    env = gym.make(
        ENV_ID,
        data_dir=str(store),
        start="2023-01-20",
        features={"use_vix": False},
        env={"use_sequence_encoder": True, "sequence_length": 16},
        reward={"name": "log_return", "scale": 100.0},
    )
    core = env.unwrapped
    assert core.observation_space["window"].shape == (16, core.arrays.n_features)
    assert "vix_level" not in core.arrays.feature_names
    assert core.reward_config.name == "log_return" and core.reward_config.scale == 100.0
    first_bar = np.datetime64(int(core.arrays.timestamps[0]), "ns")
    assert first_bar >= np.datetime64("2023-01-20")
    env.close()


@pytest.mark.parametrize("sequence", [False, True])
def test_checkers_pass_on_the_env_gym_make_builds(store, sequence):
    env_kwargs = {"use_sequence_encoder": sequence, "sequence_length": 16}
    env = gym.make(ENV_ID, data_dir=str(store), env=env_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped, warn=True)
    messages = [str(w.message) for w in caught]
    # The (T, F) window is 2-D on purpose (tests/test_env_checkers.py explains the warning).
    assert all(
        m.startswith("Your observation window has an unconventional shape") for m in messages
    )
    assert len(messages) == int(sequence)
    env.close()


def test_fit_end_normalizes_on_the_fit_range_only(store):
    fit_end = "2023-02-10"
    train = make_intraday_env(data_dir=store, fit_end=fit_end)
    test = make_intraday_env(data_dir=store, fit_end=fit_end, segment="after_fit")
    full = make_intraday_env(data_dir=store)
    ts_train = train.arrays.timestamps[slice(*train.bar_range)]
    ts_test = test.arrays.timestamps[slice(*test.bar_range)]
    boundary = np.datetime64("2023-02-11").astype("datetime64[ns]").astype(np.int64)
    assert ts_train.max() < boundary <= ts_test.min()
    # Same statistics in both segments (fitted before fit_end), different from the
    # statistics of the whole range, which would have seen the test bars.
    np.testing.assert_array_equal(train.arrays.features, test.arrays.features)
    assert not np.allclose(train.arrays.features, full.arrays.features)


def test_future_bars_do_not_change_the_fit_segment(store, tmp_path):
    # Perturb every bar after fit_end: the fit segment's observations must not move.
    fit_end = "2023-02-10"
    changed = tmp_path / "changed"
    shutil.copytree(store, changed)
    for path in list_csv_files(changed, "SPY", "15m"):
        if path.stem > fit_end:
            frame = pd.read_csv(path)
            for column in ("open", "high", "low", "close"):
                frame[column] = frame[column] * 1.37
            frame["volume"] = frame["volume"] * 3
            frame.to_csv(path, index=False, float_format="%.10g")
    base = make_intraday_env(data_dir=store, fit_end=fit_end)
    moved = make_intraday_env(data_dir=changed, fit_end=fit_end)
    lo, hi = base.bar_range
    assert (lo, hi) == moved.bar_range
    np.testing.assert_array_equal(base.arrays.features[:hi], moved.arrays.features[:hi])
    assert not np.array_equal(base.arrays.features[hi:], moved.arrays.features[hi:])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env": {"sequence_lenght": 16}}, "sequence_lenght: unknown key"),
        ({"segment": "after_fit"}, "segment='after_fit' needs fit_end"),
        ({"segment": "test"}, "segment: expected 'fit' or 'after_fit'"),
        ({"fit_end": "2020-01-01"}, "fit_end: 2020-01-01 is before the first usable session"),
        ({"fit_end": "2030-01-01", "segment": "after_fit"}, "fit_end: no session after"),
        ({"data_dir": "/nonexistent/store"}, "data_dir: /nonexistent/store is not a directory"),
    ],
)
def test_bad_arguments_name_the_argument(store, kwargs, match):
    kwargs = {"data_dir": store, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_intraday_env(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"windw": 16}, r"^windw: unknown key; valid keys: \['data_dir', 'database', 'end'"),
        ({"start": "2024-02-30"}, r"^start: '2024-02-30' is not a calendar date"),
        ({"end": "2024/01/05"}, r"^end: String should match pattern"),
        ({"start": "2023-03-01", "end": "2023-01-01"}, r"start 2023-03-01 is after end"),
        ({"symbol": "SP Y"}, r"^symbol: String should match pattern"),
        ({"interval": "7m"}, r"^interval: interval must be one of"),
        ({"env": {"cost_bps": -1}}, r"^env\.cost_bps: Input should be greater than or equal"),
        ({"env": {"sequence_length": "x"}}, r"^env\.sequence_length: Input should be a valid"),
        ({"reward": {"eta": 2}}, r"^reward\.eta: Input should be less than 1"),
        ({"reward": {"name": "nope"}}, r"^reward: Input tag 'nope'"),
        ({"features": {"use_vixx": True}}, r"^features\.use_vixx: unknown key \(did you mean"),
        ({"market": "x"}, r"^market: unknown market scenario 'x'; expected one of \['null'"),
        ({"data_dir": 3}, r"^data_dir: Input should be a valid string"),
        ({"normalization": "minmax"}, r"^normalization: expected 'zscore' or 'robust'"),
    ],
)
def test_gym_make_keywords_are_checked_by_the_schema_one_line_naming_the_path(kwargs, match):
    # Nothing is loaded or generated before the arguments are valid (no data_dir needed).
    with pytest.raises(ConfigError, match=match) as info:
        gym.make(ENV_ID, **kwargs)
    assert "\n" not in str(info.value)


def test_market_is_for_the_embedded_market_only(store, monkeypatch):
    # Any scenario but null; registered for the test if the registry has only null.
    if "momentum" not in MARKET_SCENARIOS:
        monkeypatch.setitem(MARKET_SCENARIOS, "momentum", MARKET_SCENARIOS["null"])
    with pytest.raises(ConfigError, match=r"market 'momentum' is a scenario .* without data_dir"):
        validate_env_kwargs({"data_dir": str(store), "market": "momentum"})
    assert validate_env_kwargs({"market": "momentum"}).market == "momentum"


def test_market_kwarg_builds_that_scenario_in_its_own_folder(tmp_path, monkeypatch):
    import backend.data_download.synthetic_market as synthetic_market

    built = []

    def fake_ensure(data_dir, config):
        built.append((Path(data_dir), config))
        raise RuntimeError("stop after choosing the market")

    monkeypatch.setattr(synthetic_market, "ensure_synthetic_dataset", fake_ensure)
    for name in MARKET_SCENARIOS:
        with pytest.raises(RuntimeError, match="stop after choosing"):
            gym.make(ENV_ID, market=name)
        folder, config = built[-1]
        assert folder == synthetic_market_dir(name)
        assert config == synthetic_market.market_scenario(name)
    assert synthetic_market_dir("null") == Path("data") / "synthetic"
    assert synthetic_market_dir("momentum") == Path("data") / "synthetic_momentum"


def test_database_kwarg_builds_the_same_env_as_the_csv_store(store, tmp_path):
    # Years of history live in the bar database; the env read from it is the env the CSV
    # store gives: same bars, VIX join, features and normalization.
    from backend.database.bar_database import BarDatabase
    from backend.database.ingest import ingest_store

    db = BarDatabase(tmp_path / "db")
    for symbol in ("SPY", "VIX"):
        ingest_store(db, store, symbol)
    kwargs = {"start": "2023-01-10", "fit_end": "2023-02-10", "segment": "after_fit"}
    from_db = make_intraday_env(database=str(db.root), **kwargs)
    from_csv = make_intraday_env(data_dir=store, **kwargs)
    assert from_db.bar_range == from_csv.bar_range
    np.testing.assert_array_equal(from_db.arrays.timestamps, from_csv.arrays.timestamps)
    np.testing.assert_array_equal(from_db.arrays.features, from_csv.arrays.features)
    np.testing.assert_array_equal(from_db.arrays.close, from_csv.arrays.close)
    with pytest.raises(ConfigError, match=r"database: reads bars from the database"):
        make_intraday_env(database=str(db.root), data_dir=store)


def test_rl_zoo_trains_and_saves_a_model(store, tmp_path):
    # The README's command, on a small store so that it fits the default suite.
    logs = tmp_path / "logs"
    command = [
        sys.executable,
        "-m",
        "rl_zoo3.train",
        "--algo",
        "sac",
        "--env",
        ENV_ID,
        "--gym-packages",
        "backend.environments",
        "-conf",
        str(RL_ZOO_CONFIG),
        "-n",
        "500",
        "-f",
        str(logs),
        "--seed",
        "3",
        "--eval-freq",
        "-1",
        "--env-kwargs",
        f"data_dir:{str(store)!r}",
        "env:dict(episode_sessions=5)",
        "reward:dict(name='dsr', eta=0.05, warmup_steps=20)",
        "--hyperparams",
        "learning_starts:100",
        "batch_size:64",
    ]
    # One intra-op thread: on a shared 2-core runner torch's default threads spin-wait
    # against each other (measured: 85 s with 1 thread vs > 10 min with the default).
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = list(logs.glob(f"sac/{ENV_ID.replace('/', '-')}_*/*.zip"))
    assert saved, f"no model under {logs}: {sorted(p.name for p in logs.rglob('*'))}"
    assert not (tmp_path / "data").exists()  # a given data_dir is read, nothing generated


@pytest.mark.slow
def test_gym_make_with_a_market_generates_and_trades_that_scenario(tmp_path, monkeypatch):
    # End to end (~30 s): the market kwarg's scenario is what lands on disk and in the env.
    import json

    from backend.data_download.synthetic_market import market_scenario

    name = next(m for m in MARKET_SCENARIOS if m != "null")
    monkeypatch.chdir(tmp_path)
    env = gym.make(ENV_ID, market=name)
    marker = json.loads((synthetic_market_dir(name) / "SYNTHETIC.json").read_text())
    wanted = market_scenario(name)
    assert marker["config"]["signal_strength"] == wanted.signal_strength
    assert marker["config"]["pattern_strength"] == wanted.pattern_strength
    assert not (tmp_path / "data" / "synthetic").exists()  # the null market is untouched
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()
