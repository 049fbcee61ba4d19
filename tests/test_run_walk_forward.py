"""The main job's CLI: dry run on synthetic and real data, and clean errors for user mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend.data_download.synthetic_market import SyntheticMarketConfig, write_synthetic_market
from backend.environments import factory
from backend.scripts import run_walk_forward as cli

SMALL_CONFIG = """
walk_forward:
  train_sessions: 20
  test_sessions: 5
"""


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_synthetic_market(
        root, SyntheticMarketConfig(start="2024-01-02", end=None, n_sessions=60, seed=11)
    )
    return root


@pytest.fixture()
def small_config(tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(SMALL_CONFIG)
    return path


def test_dry_run_prints_window_table(small_store, small_config, capsys):
    code = cli.main(
        [
            "--dry-run",
            "--data-dir",
            str(small_store),
            "--symbols",
            "SPY,QQQ",
            "--config",
            str(small_config),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "SPY" in out and "QQQ" in out
    assert "fit_start" in out and "test_end" in out
    assert "dry run: nothing trained" in out
    # 60 sessions, windows of 20 + 5 with ~7-session gaps: at least one, test ranges tiling
    assert "window(s)" in out


def test_default_run_is_the_ground_truth_comparison(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from backend.training import train

    monkeypatch.setattr(train, "DEFAULT_DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(factory, "SYNTHETIC_DIR", tmp_path / "data" / "synthetic")
    assert cli.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    folders = {"null": "synthetic", "momentum": "synthetic_momentum"}
    folders["sequence"] = "synthetic_sequence"
    for market, folder in folders.items():
        assert f"embedded synthetic market, scenario {market}" in out
        assert f"=== ground-truth market: {market}" in out
        # each scenario in its own folder: switching markets never overwrites another
        assert (tmp_path / "data" / folder / "intraday" / "SPY" / "15m").is_dir()
    assert "1 window(s)" in out


def test_real_bars_in_data_do_not_replace_the_default_ground_truth_run(
    tmp_path, monkeypatch, small_store, capsys
):
    from backend.training import train

    monkeypatch.setattr(train, "DEFAULT_DATA_DIR", small_store)  # ./data holds real SPY
    monkeypatch.setattr(factory, "SYNTHETIC_DIR", tmp_path / "synthetic")
    assert cli.main(["--print-config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ground-truth comparison: this experiment runs once per data.market")
    # One scenario explicitly: the synthetic market, not ./data.
    config = cli.resolve_cli_config(cli.build_parser().parse_args(["--market", "momentum"]))
    assert train.resolve_data_dir(config) == (tmp_path / "synthetic_momentum", True)
    # Nothing choosing the data: the trainer still reads ./data when it has the symbols.
    assert train.resolve_data_dir(cli.resolve_cli_config(cli.build_parser().parse_args([]))) == (
        small_store,
        False,
    )


def test_market_picks_one_scenario_and_real_data_never_mention_one(
    tmp_path, monkeypatch, small_store, small_config, capsys
):
    monkeypatch.setattr(factory, "SYNTHETIC_DIR", tmp_path / "synthetic")
    assert cli.main(["--dry-run", "--market", "sequence"]) == 0
    out = capsys.readouterr().out
    assert "scenario sequence" in out and "ground-truth market" not in out
    assert (tmp_path / "synthetic_sequence").is_dir()
    assert not (tmp_path / "synthetic").exists()
    argv = ["--dry-run", "--data-dir", str(small_store), "--config", str(small_config)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "real data" in out and "scenario" not in out


def test_unknown_market_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--market", "noise"])
    assert "invalid choice: 'noise'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbols", "SPY,,QQQ"], "--symbols"),
        (["--data-dir", "/nonexistent/yooprl"], "no such directory"),
        (["--config", "/nonexistent/run.yaml"], "no such file"),
        (["--symbols", "NOPE"], "NOPE"),
    ],
)
def test_user_mistakes_give_one_line_errors(argv, message, small_store, capsys):
    if "--data-dir" not in argv:
        argv = [*argv, "--data-dir", str(small_store)]
    assert cli.main(["--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_too_short_data_is_a_clear_error(small_store, capsys):
    assert cli.main(["--dry-run", "--data-dir", str(small_store), "--mode", "long"]) == 2
    err = capsys.readouterr().err
    assert "sessions but one walk-forward window needs at least" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("walk_forward:\n  train_sesions: 10\n", "walk_forward.train_sesions: unknown key"),
        ("walk_forward:\n  test_sessions: 0\n", "walk_forward.test_sessions: Input should be"),
        ("trainer: {}\n", "trainer: unknown key"),
        ("features:\n  rsi_period: -3\n", "features.rsi_period: Input should be greater"),
        ("features: 3\n", "features: expected a mapping of fields"),
        ("encoder:\n  name: gru\n", "encoder: Input tag 'gru' found using 'name' does not match"),
        ("walk_forward:\n  gap_bars: 104\n", "walk_forward.gap_bars=104 is below the purge rule"),
        ("modes: [manual, gru]\n", "modes[1]: Input should be 'manual', 'cnn'"),
        ("modes: []\n", "modes: unknown or no encoder(s) []"),
        ("data:\n  market: bull\n", "data.market: unknown market scenario 'bull'"),
        ("data:\n  start: 2024-02-30\n", "cannot parse: day is out of range for month"),
        ("data:\n  start: 2024-03-01\n  end: 2024-02-01\n", "data: start 2024-03-01 is after"),
        ("data:\n  start: '2024-02-30'\n", "data.start: '2024-02-30' is not a calendar date"),
    ],
)
def test_bad_config_files_are_reported(tmp_path, small_store, text, message, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code = cli.main(["--dry-run", "--data-dir", str(small_store), "--config", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {path}: ")


def test_unquoted_yaml_dates_are_dates(tmp_path, capsys):
    path = tmp_path / "d.yaml"
    path.write_text("data:\n  start: 2024-01-02\n")
    assert cli.main(["--print-config", "--config", str(path), "--end", "2024-03-01"]) == 0
    assert "start: '2024-01-02'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("walk_forwrd: {}\n", "walk_forwrd"),
        ("data:\n  symbls: [SPY]\n", "data.symbls"),
        ("features:\n  rsi_perod: 9\n", "features.rsi_perod"),
        ("env:\n  cost_bp: 2\n", "env.cost_bp"),
        ("reward:\n  name: cost_penalized\n  penalty: 2\n", "reward.penalty"),
        ("training:\n  batchsize: 8\n", "training.batchsize"),
        ("encoder:\n  name: transformer\n  local_windw: [20, null]\n", "encoder.local_windw"),
    ],
)
def test_a_misspelled_key_anywhere_is_exit_2_naming_its_path(
    tmp_path, small_store, text, key, capsys
):
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    assert cli.main(["--print-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {key}: unknown key")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_print_config_resolves_preset_file_and_flags(tmp_path, capsys):
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(
        "encoder:\n  name: transformer\n  temporal_decay: learnable\n"
        "  local_window: [20, null]\n  positional_encoding: learned\n"
        "walk_forward:\n  test_sessions: 7\n"
    )
    argv = ["--print-config", "--config", str(path), "--mode", "long", "--seed", "9"]
    assert cli.main([*argv, "--sequence-encoder", "transformer,manual", "--no-vix"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["preset"] == "long" and printed["modes"] == ["manual", "transformer"]
    assert printed["encoder"]["temporal_decay"] == "learnable"
    assert printed["encoder"]["local_window"] == [20, None]
    assert printed["encoder"]["positional_encoding"] == "learned"
    assert printed["walk_forward"]["train_sessions"] == 250  # the preset
    assert printed["walk_forward"]["test_sessions"] == 7  # the file over the preset
    assert printed["training"]["seed"] == 9 and printed["features"]["use_vix"] is False
    # The purge gap is derived from the features actually used (no VIX: shorter lookback).
    from backend.config.experiment import required_gap_bars
    from backend.data_download.feature_config import FeatureConfig

    assert printed["walk_forward"]["gap_bars"] == required_gap_bars(FeatureConfig(use_vix=False))
    # The default: the short preset, every registered encoder, the ground-truth markets.
    assert cli.main(["--print-config"]) == 0
    default = yaml.safe_load(capsys.readouterr().out)
    assert default["preset"] == "short" and default["modes"] == list(cli.encoder_names())
    assert default["walk_forward"]["seeds"] == 1
    # --market and --seeds are schema fields (data.market, walk_forward.seeds).
    assert cli.main(["--print-config", "--market", "sequence", "--seeds", "3"]) == 0
    flagged = yaml.safe_load(capsys.readouterr().out)
    assert flagged["data"]["market"] == "sequence" and flagged["walk_forward"]["seeds"] == 3
    assert cli.main(["--print-config", "--seeds", "0"]) == 2
    assert "--seeds 0: must be >= 1" in capsys.readouterr().err


def test_cli_runs_as_a_module(small_store, small_config):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.scripts.run_walk_forward",
            "--dry-run",
            "--data-dir",
            str(small_store),
            "--config",
            str(small_config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "window(s)" in result.stdout


def test_dry_run_on_real_csvs(shared_data, tmp_path, capsys, load_script):
    """Real SPY, QQQ and VIX (bar-end stamps, newest first) converted, checked and windowed."""
    convert = load_script("convert_newdata_intraday")

    store = tmp_path / "store"
    for symbol in ("SPY", "QQQ", "VIX"):
        source = shared_data / "raw" / "eqker" / f"{symbol}_15min.csv"
        assert (
            convert.main(
                [str(source), "--symbol", symbol, "--data-dir", str(store), "--stamp", "end"]
            )
            == 0
        )
    config = tmp_path / "run.yaml"
    config.write_text("walk_forward:\n  train_sessions: 10\n  test_sessions: 2\n")
    capsys.readouterr()
    code = cli.main(
        ["--dry-run", "--data-dir", str(store), "--symbols", "SPY,QQQ", "--config", str(config)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2019-01-04 09:30" in out and "2019-02-15 15:45" in out
    assert "780 bars" in out
    # windows start after the 155-bar feature warm-up (6 sessions of 26 bars)
    assert "2019-01-04" not in out.split("fit_start")[1]


def test_workers_auto_is_one_process_per_core_capped_by_the_pending_jobs(monkeypatch):
    monkeypatch.setattr(cli, "usable_cores", lambda: 2)
    assert cli.resolve_workers(cli.AUTO, pending=12) == 2
    assert cli.resolve_workers(cli.AUTO, pending=1) == 1
    assert cli.resolve_workers(cli.AUTO, pending=0) == 1
    assert cli.resolve_workers(3, pending=12) == 3
    assert cli.parse_workers("auto") == cli.AUTO and cli.parse_workers("4") == 4
    for bad in ("0", "-1", "two"):
        with pytest.raises(cli.UserError, match=f"--workers {bad}"):
            cli.parse_workers(bad)


def test_workers_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(cli.WORKERS_ENV, "3")
    assert cli.build_parser().parse_args([]).workers == "3"
    monkeypatch.delenv(cli.WORKERS_ENV)
    assert cli.build_parser().parse_args([]).workers == cli.AUTO
