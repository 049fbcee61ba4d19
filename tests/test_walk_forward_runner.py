"""End-to-end walk-forward runs on a tiny synthetic market: artifacts, reports, resume, workers.

The metric values themselves are tested in the evaluation tests; here the orchestration is:
every artifact is written, the report and metrics.json agree, a run killed after its first
job resumes to the same numbers without redoing that job, and a process pool gives the
serial numbers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from walk_forward_support import main_job_argv, window_job

from backend.evaluation import report as reports
from backend.scripts import run_walk_forward as cli
from backend.training import walk_forward_runner as runner

MODES = ("manual", "cnn")
RESOURCE_KEYS = ("train_time_s", "peak_rss_mib", "inference_latency_ms_median", "cuda_peak_mib")


@pytest.fixture(scope="module")
def workspace(walk_forward_workspace):
    return walk_forward_workspace


def _argv(ws: Path, out: Path, *extra: str, modes: str = "manual,cnn") -> list[str]:
    return main_job_argv(ws, out, "--seed", "3", *extra, modes=modes)


@pytest.fixture(scope="module")
def serial_run(workspace) -> Path:
    out = workspace / "serial"
    assert cli.main(_argv(workspace, out)) == 0
    return out


def _numbers(run_dir: Path) -> list[dict]:
    """Per-window rows of metrics.json without the machine-dependent resource fields."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return [{k: v for k, v in r.items() if k not in RESOURCE_KEYS} for r in metrics["per_window"]]


def test_every_artifact_is_written(serial_run, workspace):
    run = json.loads((serial_run / "run.json").read_text())
    assert run["seed"] == 3 and run["spec"]["modes"] == list(MODES)
    assert len(run["data"]["SPY"]["sha256"]) == 64
    assert run["provenance"]["git_commit"] and run["provenance"]["packages"]["torch"]
    spec = runner.RunSpec.from_dict(run["spec"])
    for w in run["windows"]:
        for mode in MODES:
            job = window_job(w, mode)
            folder = runner.job_dir(serial_run, job)
            assert (folder / "model_SPY" / "model.zip").is_file()
            result = runner.load_complete_result(folder / runner.RESULT_FILE, job, spec)
            assert result is not None
            entry = result["symbols"]["SPY"]
            assert entry["train_time_s"] > 0 and entry["peak_rss_mib"] > 0
            assert entry["inference_latency_ms_median"] > 0
            assert set(entry["baselines"]) >= {"flat", "buy_and_hold", "random"}
    for name in ("report.md", "metrics.json", "equity_SPY.png", "drawdown_SPY.png"):
        assert (serial_run / name).stat().st_size > 0
    for name in ("window_sharpe_SPY.png", "sessions_SPY.png", "tests_sharpe.png"):
        assert (serial_run / name).stat().st_size > 0
    # --output outside the default root: the index is the run directory's parent's.
    index = (workspace / "README.md").read_text()
    line = next(x for x in index.splitlines() if "serial/report.md" in x)
    assert "modes: manual, cnn" in line and "windows: 2" in line and "Sharpe: manual" in line


def test_report_and_metrics_json_agree(serial_run):
    metrics = json.loads((serial_run / "metrics.json").read_text())
    text = (serial_run / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for r in metrics["per_window"]:
        cells = [str(r["window"]), r["symbol"], r["mode"]]
        cells += [reports.fmt(r[k]) for k, _ in reports.TABLE_COLUMNS]
        cells += [reports.fmt(r[k]) for k, _ in reports.RESOURCE_COLUMNS]
        assert "| " + " | ".join(cells) + " |" in rows
    for r in metrics["baselines_per_window"]:
        cells = [str(r["window"]), r["symbol"], r["baseline"]]
        cells += [reports.fmt(r[k]) for k, _ in reports.TABLE_COLUMNS]
        assert "| " + " | ".join(cells) + " |" in rows
    for mode in metrics["modes"]:
        sharpe = metrics["aggregates"][mode]["sharpe"]
        expected = f"{reports.fmt(sharpe['estimate'])} [{reports.fmt(sharpe['low'])}, "
        assert any(row.startswith(f"| {mode} | {expected}") for row in rows)
    # Row by row, the test table is metrics.json["tests"] in the report's number format.
    assert metrics["tests"]
    for t in metrics["tests"]:
        assert "| " + " | ".join(reports._test_row(t)) + " |" in rows
        assert t["strategy"] not in metrics["modes"] or t["verdict"] in text
    pairs = {(t["strategy"], t["against"]) for t in metrics["tests"]}
    assert {("manual", "flat"), ("cnn", "flat"), ("manual", "buy_and_hold")} <= pairs
    assert ("cnn", "manual") in pairs and ("flat", "buy_and_hold") not in pairs
    for t in metrics["tests"]:
        n = t["n_sessions"]
        assert n == metrics["power"]["n_sessions"] == 2 * 3  # 2 windows x 3 test sessions
        # Six sessions are far too few to call the interval a 95% CI.
        assert "95% CI" not in t["ci_method"] and "not a CI" in t["ci_method"]
    assert f"{reports.fmt(metrics['power']['min_detectable_sharpe'], 3)}" in text
    assert metrics["deflated_sharpe"]["SPY"]["n_trials"] == 2
    assert metrics["run"]["seed"] == 3 and metrics["run"]["data"]["SPY"]["sha256"]
    for png in metrics["plots"]:
        assert f"]({png})" in text


def test_resume_after_a_crash_redoes_only_unfinished_jobs(
    serial_run, workspace, monkeypatch, capsys
):
    out = workspace / "crashed"
    real = runner._train_and_test_symbol
    calls: list[str] = []

    def crash_on_second(spec, job, symbol, settings, out_dir):
        calls.append(job.name)
        if len(calls) == 2:
            raise RuntimeError("simulated kill")
        return real(spec, job, symbol, settings, out_dir)

    monkeypatch.setattr(runner, "_train_and_test_symbol", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated kill"):
        cli.main(_argv(workspace, out))
    assert f"--resume {out}" in capsys.readouterr().err
    finished = sorted(out.glob("windows/*/*/result.json"))
    assert [p.parent.name for p in finished] == ["manual"]
    assert not (out / "report.md").exists()
    stamp = finished[0].stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(
        runner, "_train_and_test_symbol", lambda *a: calls.append(a[1].name) or real(*a)
    )
    # Other run options are ignored on resume: the recorded config wins.
    assert cli.main(["--resume", str(out), "--seed", "99"]) == 0
    assert calls == ["w00/cnn", "w01/manual", "w01/cnn"]
    assert finished[0].stat().st_mtime_ns == stamp
    assert _numbers(out) == _numbers(serial_run)

    # A truncated result.json is not trusted: that job alone runs again.
    broken = out / "windows" / "w01" / "cnn" / "result.json"
    broken.write_text(broken.read_text()[:100])
    calls.clear()
    assert cli.main(["--resume", str(out)]) == 0
    assert calls == ["w01/cnn"]
    assert _numbers(out) == _numbers(serial_run)


RUN_RECORD_KEYS = ("output_dir", "created_utc")
"""``metrics["run"]`` fields that name where and when a run was made, not what it found."""


def _reproducible(value: object) -> object:
    """metrics.json without the run's folder and time and the measured resources.

    What remains is every number a run finds: per-window metrics, aggregates, the tests
    with their p-values, power, windows, config and provenance.
    """
    if isinstance(value, dict):
        return {
            k: _reproducible(v)
            for k, v in value.items()
            if k not in RESOURCE_KEYS and k != "resources" and k not in RUN_RECORD_KEYS
        }
    if isinstance(value, list):
        return [_reproducible(v) for v in value]
    return value


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_same_command_twice_gives_the_same_metrics_json(serial_run, workspace):
    out = workspace / "again"
    assert cli.main(_argv(workspace, out)) == 0
    first, second = _metrics(serial_run), _metrics(out)
    assert first["tests"] and first["power"]  # the comparison covers the inference too
    assert _reproducible(second) == _reproducible(first)
    # Only the run's folder and time and the resources measured on this machine differ.
    assert second["run"]["output_dir"] != first["run"]["output_dir"]


def test_process_pool_gives_the_serial_results(serial_run, workspace):
    out = workspace / "pool"
    assert cli.main(_argv(workspace, out, "--workers", "2")) == 0
    assert _numbers(out) == _numbers(serial_run)
    assert _reproducible(_metrics(out)) == _reproducible(_metrics(serial_run))


def test_manual_only_run_is_archived_and_cross_mode_report_renders(serial_run, workspace):
    out = workspace / "manual_only"
    assert cli.main(_argv(workspace, out, "--publish", modes="manual")) == 0
    (archived,) = (workspace / "baseline_runs").glob("*/report.md")
    archived = archived.parent
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{6}", archived.name)
    assert (archived / "metrics.json").is_file() and (archived / "equity_SPY.png").is_file()
    assert "manual encoder" in (archived / "README.md").read_text()
    assert f"({archived.name}/report.md)" in (workspace / "baseline_runs" / "README.md").read_text()
    # Newest first in the experiments index.
    index = (workspace / "experiments" / "README.md").read_text().splitlines()
    entries = [x for x in index if x.startswith("- ")]
    assert "manual_only/report.md" in entries[0]
    assert (workspace / "README.md").read_text().count("manual_only/report.md") == 1
    assert not cli.CROSS_MODE_REPORT.exists()  # not all four modes ran

    metrics = json.loads((serial_run / "metrics.json").read_text())
    path = reports.write_cross_mode_report(workspace / "cross.md", metrics, serial_run)
    text = path.read_text()
    assert "Sharpe per window" in text
    assert next(t["verdict"] for t in metrics["tests"] if t["strategy"] == "cnn") in text


def test_existing_run_directory_is_not_overwritten(serial_run, workspace, capsys):
    assert cli.main(_argv(workspace, serial_run)) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--workers", "0"], "--workers"),
        (["--sequence-encoder", "gru"], "unknown mode"),
        (["--resume", "/nonexistent/run"], "not a run directory"),
    ],
)
def test_bad_run_options_give_one_line_errors(workspace, extra, message, capsys):
    argv = ["--data-dir", str(workspace / "store"), "--config", str(workspace / "tiny.yaml")]
    assert cli.main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_config_training_section_cannot_pick_the_encoder(workspace, tmp_path, capsys):
    # The old flat field is gone: the encoder is its own section, the modes a run field.
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  encoder_mode: cnn\n")
    argv = ["--dry-run", "--data-dir", str(workspace / "store"), "--config", str(bad)]
    assert cli.main(argv) == 2
    assert "training.encoder_mode: unknown key" in capsys.readouterr().err


def test_job_seeds_are_fixed_and_distinct():
    modes = cli.encoder_names()
    seeds = {runner.derive_seed(0, w, m) for w in range(5) for m in modes}
    assert len(seeds) == 5 * len(modes)
    assert runner.derive_seed(7, 1, "cnn") == runner.derive_seed(7, 1, "cnn")
    assert all(0 <= s < 2**31 for s in seeds)


def test_job_seed_depends_on_dates_mode_and_replicate_not_on_the_window_position():
    a = runner.Job(
        0,
        "cnn",
        ("2024-01-02", "2024-02-01"),
        ("2024-02-08", "2024-02-12"),
        ("2024-02-20", "2024-02-23"),
    )
    moved = dataclasses.replace(a, window=7)
    assert moved.window == 7 and moved.test == a.test
    assert runner.job_seed(3, a) == runner.job_seed(3, moved)
    other = {
        runner.job_seed(3, runner.Job(0, "lstm", a.fit, a.val, a.test)),
        runner.job_seed(3, runner.Job(0, "cnn", a.fit, a.val, a.test, replicate=1)),
        runner.job_seed(3, runner.Job(0, "cnn", a.fit, a.val, ("2024-02-21", "2024-02-23"))),
        runner.job_seed(4, a),
    }
    assert runner.job_seed(3, a) not in other and len(other) == 4


def test_a_windows_model_is_identical_in_runs_with_different_window_counts(
    workspace, serial_run, tmp_path
):
    """The same dates train the same model whether the run keeps 1 window or 2 (issue 9)."""
    config = (workspace / "tiny.yaml").read_text().replace("max_windows: 2", "max_windows: 1")
    one = tmp_path / "one.yaml"
    one.write_text(config)
    out = tmp_path / "one_window"
    argv = _argv(workspace, out, modes="manual")
    argv[argv.index(str(workspace / "tiny.yaml"))] = str(one)
    assert cli.main(argv) == 0
    single = json.loads((out / "windows" / "w00" / "manual" / "result.json").read_text())
    both = [
        json.loads(p.read_text())
        for p in sorted((serial_run / "windows").glob("w*/manual/result.json"))
    ]
    same = [r for r in both if r["test_sessions"] == single["test_sessions"]]
    assert len(same) == 1, "the one-window run must test one of the two-window run's windows"
    twin = same[0]
    assert twin["window"] != single["window"] or len(both) == 1
    assert twin["seed"] == single["seed"]
    assert (
        twin["symbols"]["SPY"]["series"]["net_returns"]
        == (single["symbols"]["SPY"]["series"]["net_returns"])
    )
    # The model itself: every saved weight of the two bundles is equal.
    from backend.models.model_manager import load_bundle

    bundle = "model_SPY"
    twin_dir = serial_run / "windows" / f"w{twin['window']:02d}" / "manual" / bundle
    a = load_bundle(twin_dir).model.policy.state_dict()
    b = load_bundle(out / "windows" / "w00" / "manual" / bundle).model.policy.state_dict()
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seeds_train_replicates_in_their_own_folders(workspace, tmp_path):
    out = tmp_path / "replicates"
    assert cli.main(_argv(workspace, out, "--seeds", "2", modes="manual")) == 0
    first = json.loads((out / "windows" / "w00" / "manual" / "result.json").read_text())
    second = json.loads((out / "windows" / "w00" / "manual-r1" / "result.json").read_text())
    assert (first["replicate"], second["replicate"]) == (0, 1)
    assert first["seed"] != second["seed"]
    assert first["test_sessions"] == second["test_sessions"]
    assert json.loads((out / "run.json").read_text())["spec"]["seeds"] == 2


def test_default_output_is_stamped_under_the_ignored_output_root():
    path = cli.default_output("all")
    assert path.parent == cli.OUTPUT_ROOT / "all"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{6}", path.name)


def test_short_preset_uses_small_shared_encoders():
    from backend.config.experiment import resolve_experiment

    short = resolve_experiment("short")
    for mode in cli.encoder_names():
        config = short.for_mode(mode)
        assert config.encoder.name == mode and config.encoder.size == "tiny"
        assert config.encoder.embedding_dim == 16 and config.env.sequence_length == 16
        assert config.env.use_sequence_encoder == (mode != "manual")
        training = config.training
        assert training.share_features_extractor and training.shared_encoder_loss == "critic"
        assert training.total_timesteps <= 12_000
        assert training.early_stop_smoothing > 1
    assert short.walk_forward.windows == 1  # speed from fewer, longer windows
    long = resolve_experiment("long").for_mode("cnn")
    assert long.encoder == type(long.encoder)() and long.training == type(long.training)()


def test_stochastic_evaluation_is_seeded(workspace):
    outs = [workspace / f"stochastic_{i}" for i in range(2)]
    for out in outs:
        assert cli.main(_argv(workspace, out, "--stochastic-eval", modes="cnn")) == 0
    assert _numbers(outs[0]) == _numbers(outs[1])
    result = json.loads((outs[0] / "windows" / "w00" / "cnn" / "result.json").read_text())
    assert result["stochastic_eval"] is True


def test_a_job_bundle_config_reruns_through_the_main_job_and_the_trainer(
    serial_run, workspace, tmp_path
):
    from backend.config.experiment import load_experiment
    from backend.training import train

    bundle_config = serial_run / "windows" / "w00" / "manual" / "model_SPY" / "config.yaml"
    recorded = load_experiment(bundle_config)
    assert recorded.modes == ("manual",) and recorded.encoder.name == "manual"
    assert recorded.data.data_dir == str(workspace / "store")
    out = tmp_path / "again"
    assert cli.main(["--config", str(bundle_config), "--output", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert runner.RunSpec.from_dict(run["spec"]).config == recorded
    argv = ["--config", str(bundle_config), "--output", str(tmp_path / "t"), "--no-progress"]
    assert train.main(argv) == 0
    (trained,) = (tmp_path / "t").iterdir()
    assert load_experiment(trained / "config.yaml") == recorded


def _git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def test_default_run_leaves_the_tree_clean_and_publish_updates_tracked_records(
    workspace, tmp_path, monkeypatch
):
    """A run without --output/--publish writes only under the git-ignored runs/ root."""
    repo = tmp_path / "repo"
    repo.mkdir()
    ignore = Path(__file__).resolve().parents[1] / ".gitignore"
    (repo / ".gitignore").write_text(ignore.read_text())
    tracked = {
        "experiments": Path("backend/evaluation/experiments"),
        "baseline_runs": Path("backend/evaluation/baseline_runs"),
        "cross": Path("Docs/Transformer_Experiment_Report.md"),
    }
    for folder in (tracked["experiments"], tracked["baseline_runs"]):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "README.md").write_text("# tracked index\n")
    (repo / "Docs").mkdir()
    (repo / tracked["cross"]).write_text("# tracked report\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(cli, "OUTPUT_ROOT", Path("runs/walk_forward"))
    monkeypatch.setattr(cli, "EXPERIMENTS_DIR", tracked["experiments"])
    monkeypatch.setattr(cli, "BASELINE_RUNS_DIR", tracked["baseline_runs"])
    monkeypatch.setattr(cli, "CROSS_MODE_REPORT", tracked["cross"])
    argv = [
        "--data-dir",
        str(workspace / "store"),
        "--config",
        str(workspace / "tiny.yaml"),
        "--sequence-encoder",
        "manual",
    ]
    assert cli.main(argv) == 0
    assert _git(repo, "status", "--porcelain") == ""
    (run_dir,) = (repo / "runs" / "walk_forward" / "manual").iterdir()
    assert (run_dir / "metrics.json").is_file()
    assert f"manual/{run_dir.name}/report.md" in (repo / "runs/walk_forward/README.md").read_text()

    assert cli.main([*argv, "--publish"]) == 0
    changed = _git(repo, "status", "--porcelain")
    assert "backend/evaluation/experiments/README.md" in changed
    assert "backend/evaluation/baseline_runs/" in changed
    assert "Docs/" not in changed  # cross-mode report: only when all four modes ran


def test_the_ground_truth_job_runs_every_market_and_writes_the_table(
    workspace, tmp_path, monkeypatch
):
    """The default job's path end to end at a tiny budget: three sub-runs, one table."""
    from backend.environments import factory

    monkeypatch.setattr(factory, "SYNTHETIC_DIR", tmp_path / "data" / "synthetic")
    out = tmp_path / "gt"
    argv = ["--config", str(workspace / "tiny.yaml"), "--sequence-encoder", "manual"]
    assert cli.main([*argv, "--output", str(out)]) == 0
    table = json.loads((out / "ground_truth.json").read_text())
    assert [(r["scenario"], r["mode"]) for r in table["rows"]] == [
        ("null", "manual"),
        ("momentum", "manual"),
        ("sequence", "manual"),
    ]
    assert set(table["claims"]) == {
        "no_edge_claimed_in_null",
        "momentum_found_by_every_mode",
        "sequence_found_by_a_sequence_encoder_not_by_manual",
    }
    assert table["test_source"] == "report"  # verdicts from each run's Holm-adjusted tests
    for market in ("null", "momentum", "sequence"):
        run_info = json.loads((out / market / "run.json").read_text())
        assert run_info["spec"]["market"] == market
        assert (out / market / "report.md").is_file()
    momentum = next(r for r in table["rows"] if r["scenario"] == "momentum")
    assert momentum["theoretical_net_per_bar"] > 0  # the marker's theoretical edge
    report = (out / "report.md").read_text()
    assert report.startswith("# Ground-truth comparison")
    assert "[sequence](sequence/report.md)" in report


def test_out_of_sample_test_scores_every_bar_even_after_a_ruinous_loss():
    """A policy that loses half its capital is reported with its whole loss (not a crash).

    Training episodes end at the ruin threshold; the test rollout must cover every test bar,
    as the baselines do, or the session tests would compare different sessions.
    """
    import numpy as np

    from backend.data_download.market_arrays import synthetic_market_arrays
    from backend.environments.env_config import EnvConfig
    from backend.environments.intraday_env import IntradayTradingEnv
    from backend.evaluation.rollout import rollout_policy

    arrays = synthetic_market_arrays(40, 4, seed=3)

    class Churn:
        """Flips between full long and full short every bar: costs ruin it."""

        def __init__(self) -> None:
            self.sign = 1.0

        def predict(self, observation, state=None, episode_start=None, deterministic=False):
            self.sign = -self.sign
            return np.array([self.sign], dtype=np.float32), None

    training_cfg = EnvConfig(cost_bps=100.0, deadband=0.0, ruin_equity=0.5)
    test_cfg = runner.out_of_sample_env_config(training_cfg)
    assert test_cfg.episode_sessions == 0 and not test_cfg.random_start
    assert test_cfg.ruin_equity == 0.0 and test_cfg.cost_bps == 100.0
    whole = {"episode_sessions": 0, "random_start": False}
    full = IntradayTradingEnv(arrays, training_cfg.model_copy(update=whole))
    stopped = rollout_policy(Churn(), full)
    assert stopped.equity[-1] < 0.5 and stopped.n_steps < arrays.n_bars - 1  # training rule
    scored = rollout_policy(Churn(), IntradayTradingEnv(arrays, test_cfg))
    assert scored.n_steps == arrays.n_bars - 1  # every bar after the first decision bar
    assert scored.equity[-1] < stopped.equity[-1]  # the whole loss is reported
