"""The console without a browser: form generation, validation, security checks, escaping, runs."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml
from console_support import (
    CONSOLE_TOKEN,
    HOSTILE_HEADLINE,
    SUPERVISOR_TOKEN,
    TRADER_TOKEN,
    build_live_stack,
)
from loopback import serve
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.api.console import (
    ConsoleSettings,
    create_app,
    metrics_tests,
    render_report,
)
from backend.api.console_forms import (
    Group,
    Union,
    build_form,
    error_paths,
    form_to_data,
    iter_fields,
)
from backend.api.console_runs import RUN_KINDS, RunError, RunManager, RunRequest, check_name

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's "use httpx2" notice, not ours to fix
    from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}


# -- a schema shaped like the experiment schema: nested sections, a discriminated union ---


class CnnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["cnn"] = "cnn"
    channels: int = Field(16, ge=1, description="convolution channels")
    dilations: list[int] = [1, 2, 4]


class LstmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["lstm"] = "lstm"
    hidden_size: int = Field(32, ge=1)
    bidirectional: bool = False


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    total_timesteps: int = Field(3000, gt=0)
    learning_rate: float = Field(3e-4, gt=0)
    tensorboard_log: str | None = "tb"
    loss: Literal["critic", "actor"] = "critic"


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    training: Training = Training()
    encoder: Annotated[CnnOptions | LstmOptions, Field(discriminator="name")] = LstmOptions()


def test_form_has_a_toggle_per_discriminated_union_and_typed_fields():
    form = build_form(Experiment.model_json_schema())
    training, encoder = form.children
    assert isinstance(training, Group) and isinstance(encoder, Union)
    assert encoder.select_path == "encoder::variant"
    assert list(encoder.variants) == ["cnn", "lstm"] and encoder.default_variant == "lstm"
    fields = {f.path: f for f in iter_fields(form)}
    assert fields["encoder[cnn].channels"].kind == "integer"
    assert fields["encoder[cnn].channels"].description == "convolution channels"
    assert fields["encoder[cnn].dilations"].display_default() == "1, 2, 4"
    assert fields["encoder[lstm].bidirectional"].kind == "boolean"
    assert fields["training.tensorboard_log"].nullable
    assert fields["training.loss"].options == ["critic", "actor"]
    assert "encoder[cnn].name" not in fields  # the tag is the toggle, not an input


def test_posted_values_become_model_input_of_the_selected_variant_only():
    form = build_form(Experiment.model_json_schema())
    posted = {
        "training.total_timesteps": "500",
        "training.learning_rate": "0.001",
        "training.tensorboard_log": "",
        "encoder::variant": "cnn",
        "encoder[cnn].channels": "8",
        "encoder[cnn].dilations": "1, 3",
        "encoder[lstm].hidden_size": "999",
    }
    data = form_to_data(form, posted)
    assert data == {
        "training": {"total_timesteps": 500, "learning_rate": 0.001, "tensorboard_log": None},
        "encoder": {"name": "cnn", "channels": 8, "dilations": [1, 3]},
    }
    model = Experiment.model_validate(data)
    assert isinstance(model.encoder, CnnOptions) and model.encoder.channels == 8


def test_pydantic_errors_land_on_their_fields():
    form = build_form(Experiment.model_json_schema())
    posted = {
        "training.total_timesteps": "-5",
        "training.learning_rate": "fast",
        "encoder::variant": "cnn",
        "encoder[cnn].channels": "0",
        "encoder[cnn].dilations": "1, two",
    }
    with pytest.raises(ValidationError) as info:
        Experiment.model_validate(form_to_data(form, posted))
    errors = {e["field"]: e["message"] for e in error_paths(form, info.value.errors())}
    assert set(errors) == {
        "training.total_timesteps",
        "training.learning_rate",
        "encoder[cnn].channels",
        "encoder[cnn].dilations",
    }
    assert "greater than 0" in errors["training.total_timesteps"]
    assert "valid number" in errors["training.learning_rate"]
    with pytest.raises(ValidationError) as info:
        Experiment.model_validate(form_to_data(form, {"encoder::variant": "gru"}))
    assert error_paths(form, info.value.errors())[0]["field"] == "encoder::variant"


# -- the app ------------------------------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path) -> TestClient:
    settings = ConsoleSettings(output_root=tmp_path / "runs", workdir=tmp_path, token=CONSOLE_TOKEN)
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8300")


def test_configure_validates_server_side_and_saves_yaml(console, tmp_path):
    page = console.get("/configure")
    assert page.status_code == 200
    assert 'data-path="training.total_timesteps"' in page.text
    bad = console.post("/api/config/validate", json={"values": {"training.batch_size": "x"}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "training.batch_size"
    ok = console.post(
        "/api/config/save",
        json={"name": "tiny", "values": {"training.total_timesteps": "150"}},
        headers=AUTH,
    )
    assert ok.status_code == 200, ok.text
    assert "total_timesteps: 150" in ok.json()["resolved"]
    saved = yaml.safe_load((tmp_path / "runs" / "configs" / "tiny.yaml").read_text())
    assert saved["training"]["total_timesteps"] == 150
    assert "encoder_mode" not in saved["training"]  # chosen per run by --sequence-encoder
    bad_name = console.post(
        "/api/config/save", json={"name": "../evil", "values": {}}, headers=AUTH
    )
    assert bad_name.status_code == 422
    assert not (tmp_path / "runs" / "evil.yaml").exists()


def test_state_changes_need_the_token_a_same_origin_and_a_known_host(console, tmp_path):
    body = {"name": "x", "values": {}}
    assert console.post("/api/config/save", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert console.post("/api/config/save", json=body, headers=wrong).status_code == 401
    forged = {**AUTH, "Origin": "http://evil.example"}
    r = console.post("/api/config/save", json=body, headers=forged)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    same = {**AUTH, "Origin": "http://127.0.0.1:8300"}
    assert console.post("/api/config/save", json=body, headers=same).status_code == 200
    rebinding = TestClient(console.app, base_url="http://attacker.example:8300")
    assert rebinding.get("/").status_code == 421
    assert console.post("/api/runs", json={}).status_code == 401
    assert console.post("/api/live/trader/halt", json={}).status_code == 401
    assert "Content-Security-Policy" in console.get("/").headers
    read_only = TestClient(
        create_app(ConsoleSettings(output_root=tmp_path / "ro", workdir=tmp_path, token=None)),
        base_url="http://127.0.0.1:8300",
    )
    r = read_only.post("/api/config/save", json=body, headers=AUTH)
    assert r.status_code == 503 and "YOOPRL_CONSOLE_TOKEN" in r.json()["detail"]


def test_run_files_are_served_from_inside_the_run_only(console, tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "plot.png").write_bytes(b"\x89PNG fake")
    (run / "model.zip").write_bytes(b"zip")
    (tmp_path / "secret.json").write_text("{}")
    assert console.get("/results/r1/files/plot.png").status_code == 200
    assert console.get("/results/r1/files/model.zip").status_code == 404
    assert console.get("/results/r1/files/../../secret.json").status_code == 404
    assert console.get("/results/r1/files/%2e%2e/%2e%2e/secret.json").status_code == 404
    assert console.get("/results/..%2fsecret.json").status_code == 404


def test_report_markdown_is_rendered_with_raw_html_off():
    text = (
        "# Report <script>alert(1)</script>\n\n"
        '<img src=x onerror="alert(2)">\n\n'
        "![equity](equity_SPY.png) [bad](javascript:alert(3))\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    html = render_report(text, "run<1>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert 'src="/results/run%3C1%3E/files/equity_SPY.png"' in html
    assert 'href="javascript:' not in html
    assert "<table>" in html


def test_metrics_tests_read_both_layouts():
    new = {
        "tests": [
            {
                "strategy": "cnn",
                "against": "flat",
                "metric": "mean_daily_return",
                "estimate": 0.1,
                "ci_low": -0.1,
                "ci_high": 0.3,
                "ci_method": "stationary bootstrap",
                "p_value": 0.2,
                "p_adjusted": 0.6,
                "significant": False,
                "n_sessions": 40,
            }
        ],
        "power": {"mde": 0.5},
    }
    old = {
        "comparisons": [
            {
                "encoder": "cnn",
                "reference": "manual",
                "n_windows": 2,
                "mean_difference": 0.5,
                "p_value": 1.0,
                "ci": {"low": -1.0, "high": 2.0, "method": "percentile"},
            }
        ]
    }
    (row,) = metrics_tests(new)
    assert row["p_adjusted"] == 0.6 and row["n"] == 40 and row["significant"] is False
    (row,) = metrics_tests(old)
    assert row["strategy"] == "cnn" and row["against"] == "manual" and row["ci_high"] == 2.0
    assert metrics_tests({}) == []


def test_live_page_escapes_headlines_reasons_and_halt_reasons(tmp_path, monkeypatch):
    live = build_live_stack(tmp_path, monkeypatch.setenv)
    with serve(live.trader_app) as trader, serve(live.supervisor_app) as supervisor:
        settings = ConsoleSettings(
            output_root=tmp_path / "runs",
            workdir=tmp_path,
            token=CONSOLE_TOKEN,
            trader_url=trader,
            supervisor_url=supervisor,
            trader_token=TRADER_TOKEN,
            supervisor_token=SUPERVISOR_TOKEN,
        )
        client = TestClient(create_app(settings), base_url="http://127.0.0.1:8300")
        html = client.get("/live").text
        assert "market-wide trading halt" in html
        for raw in ("<script>window.__xss", '<img src="x"', '<img src="y"', "<b>ops</b>"):
            assert raw not in html, raw
        assert "&lt;script&gt;" in html or "script" not in HOSTILE_HEADLINE
        r = client.post("/api/live/trader/halt", json={"reason": "<b>drill</b>"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["ok"]
        assert live.store.get("manual_halt") == {"active": True, "reason": "<b>drill</b>"}
        assert "ACTIVE: &lt;b&gt;drill&lt;/b&gt;" in client.get("/live").text
        r = client.post("/api/live/supervisor/resume", json={"reason": "all clear"}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert live.supervisor.status().manual_override is None


def test_live_page_says_when_the_services_are_down(console):
    html = console.get("/live").text
    assert "ConnectError" in html or "ConnectTimeout" in html


def test_names_are_single_safe_path_components():
    assert check_name("2024-01-02_run.1") == "2024-01-02_run.1"
    for bad in ("..", "../x", "a/b", "", ".hidden", "a" * 101, "<script>"):
        with pytest.raises(RunError, match="use 1-100 letters"):
            check_name(bad)


TINY = """
walk_forward: {train_sessions: 12, test_sessions: 3, max_windows: 2}
training: {total_timesteps: 150, learning_starts: 50, batch_size: 16, buffer_size: 1000,
           eval_every_steps: 75}
"""


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_cancelled_run_resumes_and_finishes(walk_forward_workspace, tmp_path):
    root = walk_forward_workspace
    repo = Path(__file__).resolve().parents[1]
    manager = RunManager(tmp_path / "runs", workdir=tmp_path, env={"PYTHONPATH": str(repo)})
    manager.configs_dir.mkdir(parents=True)
    (manager.configs_dir / "tiny.yaml").write_text(TINY)
    req = RunRequest(config="tiny", encoders="manual", data_dir=str(root / "store"))
    name = manager.start(req, "cancel-me")
    run_dir = tmp_path / "runs" / "cancel-me"
    _wait(lambda: (run_dir / "run.json").is_file(), 60, "run.json")
    assert manager.progress(name)["jobs_total"] == 2
    assert manager.cancel(name)
    progress = _wait(
        lambda: (p := manager.progress(name))["status"] in ("cancelled", "finished") and p,
        30,
        "the cancelled status",
    )
    if progress["status"] == "finished":
        pytest.skip("the run finished before it could be cancelled (machine too fast)")
    assert progress["jobs_done"] < 2
    manager.resume(name)
    done = _wait(
        lambda: (p := manager.progress(name))["status"] not in ("running", "cancelled") and p,
        120,
        "the resumed run to end",
    )
    assert done["status"] == "finished", done["log_tail"]
    assert done["jobs_done"] == 2 and done["has_report"]
    record = json.loads((run_dir / "console_run.json").read_text())
    assert [h["resumed"] for h in record["history"]] == [False, True]
    assert "--resume" in record["history"][1]["argv"]


def test_the_experiment_form_posts_its_own_defaults_as_a_valid_config():
    """Defaults as the page shows them ("manual, cnn, ...") validate; derived fields stay out."""
    from backend.config.experiment import ExperimentConfig

    form = build_form(ExperimentConfig.model_json_schema())
    paths = {f.path for f in iter_fields(form)}
    assert "env.use_sequence_encoder" not in paths  # readOnly: derived from the encoder
    posted = {f.path: f.display_default() for f in iter_fields(form)}
    config = ExperimentConfig.model_validate(form_to_data(form, posted))
    assert config.modes == ("manual", "cnn", "lstm", "transformer")
    assert config.encoder.name == "transformer" and config.env.use_sequence_encoder is True


def test_every_run_kind_builds_a_command_its_module_accepts(tmp_path):
    """The Run page's kinds point at real modules, and the argv they build parses there."""
    import importlib

    manager = RunManager(tmp_path / "runs", workdir=tmp_path)
    manager.configs_dir.mkdir(parents=True, exist_ok=True)
    (manager.configs_dir / "space.yaml").write_text("search: {}\n")
    for kind in RUN_KINDS.values():
        assert kind.available, f"{kind.name}: {kind.module} is not importable"
        if kind.needs_config:
            with pytest.raises(RunError, match="choose a saved config"):
                manager.command(RunRequest(kind=kind.name), tmp_path / "r")
        req = RunRequest(kind=kind.name, config="space", encoders="manual", seed=3)
        argv = manager.command(req, tmp_path / "r")
        module = importlib.import_module(argv[2])
        parser = module.build_parser()
        parser.parse_args(argv[3:])
