"""The web console: configure, run, read results and watch the live stack in a browser.

``python -m backend.api.console --host 127.0.0.1 --port 8300`` serves plain server-rendered
pages (Jinja2, autoescape on) with one small script, no Node build:

* **Configure** (``/configure``): a form generated from the experiment schema's JSON
  Schema (:mod:`backend.api.console_forms`), validated server-side by the same pydantic
  models as the CLI, errors beside their fields, saved as YAML under
  ``<output root>/configs/``, with the resolved config shown;
* **Run** (``/runs``): start a main-job / supervised / tuning run in the background
  (:mod:`backend.api.console_runs`), live progress, cancel, resume;
* **Results** (``/results``): every run under the output root, each ``report.md``
  rendered (markdown-it, raw HTML off) with its PNGs and ``metrics.json`` tables, and a
  side-by-side comparison of two runs' per-mode tests;
* **Live** (``/live``): trader and supervisor status, positions, PnL, the supervisor's
  recent decisions, Halt / Resume.

Security: loopback by default; every request's ``Host`` must be one of the console's own
names (no DNS rebinding), every state-changing request (``POST /api/...``) needs
``Authorization: Bearer <console token>`` (from ``$YOOPRL_CONSOLE_TOKEN``; pasted once by
the user, kept in ``sessionStorage`` by the page's script, never in a URL or cookie) and a
same-origin ``Origin`` when the browser sends one, so another site cannot forge them. The
console calls the trader's and the supervisor's control APIs server-side with *their*
tokens, read from their usual environment variables. Pages carry a strict
Content-Security-Policy (no inline script) on top of the templates' escaping.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from pydantic import BaseModel, ValidationError

from backend.api.console_forms import Group, build_form, error_paths, form_to_data
from backend.api.console_runs import (
    RUN_KINDS,
    RunError,
    RunManager,
    RunRequest,
    check_name,
    read_json_object,
)
from backend.utils.atomic_io import write_text_atomic

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
DEFAULT_OUTPUT_ROOT = Path("runs") / "console"
"""Default output root (git-ignored ``runs/``)."""
DEFAULT_PORT = 8300
TOKEN_ENV = "YOOPRL_CONSOLE_TOKEN"
TRADER_TOKEN_ENV = "YOOPRL_LIVE_TOKEN"
SUPERVISOR_TOKEN_ENV = "YOOPRL_SUPERVISOR_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
RUN_FILE_TYPES = {
    ".png": "image/png",
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".yaml": "text/plain; charset=utf-8",
}
"""What ``/results/<run>/files/...`` serves; anything else is refused."""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


# ---------------------------------------------------------------------------------------
# Settings and the experiment schema
# ---------------------------------------------------------------------------------------


@dataclass
class ConsoleSettings:
    """How the console is wired: where runs live and where the live services are."""

    output_root: Path = DEFAULT_OUTPUT_ROOT
    workdir: Path = field(default_factory=Path.cwd)
    """Working directory of started runs (their relative defaults, such as ``data/``)."""
    token: str | None = None
    """Console token of state-changing requests; None disables them (503)."""
    trader_url: str = "http://127.0.0.1:8200"
    supervisor_url: str = "http://127.0.0.1:8765"
    trader_token: str | None = None
    supervisor_token: str | None = None
    allowed_hosts: Sequence[str] = LOOPBACK_NAMES
    """Host names the console answers to (its bind address is added)."""
    live_timeout_s: float = 3.0
    """Deadline of every call to the trader and the supervisor."""
    run_env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of started runs."""

    @classmethod
    def from_env(cls, **overrides: Any) -> ConsoleSettings:
        """Settings with the three tokens read from their environment variables."""
        base: dict[str, Any] = {
            "token": os.environ.get(TOKEN_ENV) or None,
            "trader_token": os.environ.get(TRADER_TOKEN_ENV) or None,
            "supervisor_token": os.environ.get(SUPERVISOR_TOKEN_ENV) or None,
        }
        return cls(**{**base, **overrides})


@dataclass
class ExperimentSchema:
    """The model the Configure page is generated from, and how a valid config is resolved."""

    model: type[BaseModel]
    title: str
    resolve: Callable[[BaseModel], dict[str, Any]]
    """The resolved config (what ``--print-config`` prints) of a validated model."""
    to_file: Callable[[BaseModel, dict[str, Any]], dict[str, Any]]
    """The mapping saved as YAML (what the CLI's ``--config`` reads)."""


def _interim_schema() -> ExperimentSchema:
    """The run file's sections as one pydantic model, until ``ExperimentConfig`` exists.

    Built from the config dataclasses the CLI validates (``pydantic`` validates stdlib
    dataclasses, running their ``__post_init__`` checks), so the form, the validation and
    the CLI agree. Only the values the user posted are saved: the ``--mode`` preset
    fills in the rest, as on the command line.
    """
    from pydantic import ConfigDict, create_model

    from backend.config.env_config import EnvConfig
    from backend.config.training_config import FeatureConfig, TrainingSettings
    from backend.training.walk_forward import WalkForwardConfig

    model = create_model(
        "RunConfig",
        __config__=ConfigDict(extra="forbid"),
        walk_forward=(WalkForwardConfig, WalkForwardConfig()),
        features=(FeatureConfig, FeatureConfig()),
        training=(TrainingSettings, TrainingSettings()),
        env=(EnvConfig, EnvConfig()),
    )

    def resolve(value: BaseModel) -> dict[str, Any]:
        return dict(value.model_dump(mode="json"))

    defaults = model().model_dump(mode="json")

    def to_file(value: BaseModel, posted: dict[str, Any]) -> dict[str, Any]:
        dumped = value.model_dump(mode="json")
        out: dict[str, Any] = {}
        for section, fields in dumped.items():
            changed = {
                k: v
                for k, v in fields.items()
                if v != defaults[section].get(k) and k != "encoder_mode"  # --sequence-encoder
            }
            if changed:
                out[section] = changed
        return out

    return ExperimentSchema(model, "run config (interim)", resolve, to_file)


def load_experiment_schema() -> ExperimentSchema:
    """The experiment schema: ``backend.config.ExperimentConfig`` when it is there."""
    import importlib

    model = None
    for module in ("backend.config", "backend.config.experiment"):
        try:
            model = getattr(importlib.import_module(module), "ExperimentConfig", None)
        except ImportError:
            continue
        if model is not None:
            break
    if model is None or not issubclass(model, BaseModel):
        return _interim_schema()

    def resolve(value: BaseModel) -> dict[str, Any]:
        return dict(value.model_dump(mode="json"))

    def to_file(value: BaseModel, posted: dict[str, Any]) -> dict[str, Any]:
        return dict(value.model_dump(mode="json"))

    return ExperimentSchema(model, "ExperimentConfig", resolve, to_file)


# ---------------------------------------------------------------------------------------
# Rendering helpers
# ---------------------------------------------------------------------------------------


def markdown_renderer() -> MarkdownIt:
    """CommonMark + tables with raw HTML off: markup in a report is shown, never run."""
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_report(text: str, run_name: str) -> str:
    """``report.md`` as HTML, relative image and link targets pointed at the run's files."""
    md = markdown_renderer()
    tokens = md.parse(text)
    base = f"/results/{urllib.parse.quote(run_name)}/files/"

    def fix(url: str) -> str:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme or parsed.netloc or url.startswith(("/", "#")):
            return url
        return base + urllib.parse.quote(url)

    for tok in tokens:
        for child in tok.children or []:
            if child.type == "image" and child.attrs.get("src"):
                child.attrs["src"] = fix(str(child.attrs["src"]))
            if child.type == "link_open" and child.attrs.get("href"):
                child.attrs["href"] = fix(str(child.attrs["href"]))
    return str(md.renderer.render(tokens, md.options, {}))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["urlpart"] = lambda s: urllib.parse.quote(str(s), safe="")
    return env


def metrics_tests(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-mode tests of a run's ``metrics.json``, in one shape for both layouts.

    Newer runs carry ``tests`` (strategy vs reference, estimate, CI, raw and adjusted
    p-values, significance); older ones only ``comparisons`` (Wilcoxon on window Sharpe
    differences against manual), mapped onto the same columns.
    """
    rows: list[dict[str, Any]] = []
    tests = metrics.get("tests")
    if isinstance(tests, list) and tests:
        for t in tests:
            if isinstance(t, Mapping):
                rows.append(
                    {
                        "strategy": t.get("strategy"),
                        "against": t.get("against"),
                        "metric": t.get("metric"),
                        "estimate": t.get("estimate"),
                        "ci_low": t.get("ci_low"),
                        "ci_high": t.get("ci_high"),
                        "ci_method": t.get("ci_method"),
                        "p_value": t.get("p_value"),
                        "p_adjusted": t.get("p_adjusted"),
                        "significant": t.get("significant"),
                        "n": t.get("n_sessions"),
                    }
                )
        return rows
    for c in metrics.get("comparisons") or []:
        if not isinstance(c, Mapping):
            continue
        ci = c.get("ci") or {}
        rows.append(
            {
                "strategy": c.get("encoder"),
                "against": c.get("reference"),
                "metric": "sharpe difference per window",
                "estimate": c.get("mean_difference"),
                "ci_low": ci.get("low"),
                "ci_high": ci.get("high"),
                "ci_method": ci.get("method"),
                "p_value": c.get("p_value"),
                "p_adjusted": None,
                "significant": None,
                "n": c.get("n_windows"),
            }
        )
    return rows


def metrics_aggregates(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{mode, metric, estimate, low, high, note}]`` of ``metrics.json`` ``aggregates``."""
    rows = []
    for source in ("aggregates", "baseline_aggregates"):
        for name, stats in (metrics.get(source) or {}).items():
            if not isinstance(stats, Mapping):
                continue
            for metric in ("sharpe", "total_return", "max_drawdown"):
                s = stats.get(metric)
                if isinstance(s, Mapping):
                    rows.append(
                        {
                            "strategy": name,
                            "baseline": source == "baseline_aggregates",
                            "metric": metric,
                            "estimate": s.get("estimate"),
                            "low": s.get("low"),
                            "high": s.get("high"),
                        }
                    )
    return rows


# ---------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------


class LiveClient:
    """Server-side calls to the trader and the supervisor, with their tokens and a deadline."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings

    def _get(self, base: str, path: str) -> tuple[Any, str | None]:
        try:
            r = httpx.get(base.rstrip("/") + path, timeout=self.settings.live_timeout_s)
            r.raise_for_status()
            return r.json(), None
        except (httpx.HTTPError, ValueError) as exc:
            return None, f"{base}{path}: {type(exc).__name__}: {exc}"

    def snapshot(self) -> dict[str, Any]:
        """Everything the Live page shows; unreachable services give an error line each."""
        s = self.settings
        trader, e1 = self._get(s.trader_url, "/live/status")
        positions, e2 = self._get(s.trader_url, "/live/positions")
        supervisor, e3 = self._get(s.supervisor_url, "/supervisor/status")
        history, e4 = self._get(s.supervisor_url, "/supervisor/history?limit=20")
        return {
            "trader": trader,
            "positions": positions,
            "supervisor": supervisor,
            "history": (history or {}).get("entries", []) if isinstance(history, dict) else [],
            "errors": [e for e in (e1, e2, e3, e4) if e],
        }

    def control(self, target: str, action: str, reason: str) -> tuple[int, Any]:
        """``POST`` halt/resume to the trader or the supervisor with its own token."""
        s = self.settings
        if target == "trader":
            url, token = f"{s.trader_url.rstrip('/')}/live/{action}", s.trader_token
            body: dict[str, Any] = {"reason": reason} if action == "halt" else {}
        else:
            url, token = f"{s.supervisor_url.rstrip('/')}/supervisor/{action}", s.supervisor_token
            body = {"who": "console", "why": reason}
        if not token:
            env = TRADER_TOKEN_ENV if target == "trader" else SUPERVISOR_TOKEN_ENV
            return 503, {"detail": f"no {target} token configured: set {env} for the console"}
        try:
            r = httpx.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=s.live_timeout_s,
            )
        except httpx.HTTPError as exc:
            return 502, {"detail": f"{target} unreachable: {type(exc).__name__}: {exc}"}
        try:
            payload = r.json()
        except ValueError:
            payload = {"detail": r.text[:500]}
        return r.status_code, payload


def _host_name(host_header: str) -> str:
    """``127.0.0.1:8300`` -> ``127.0.0.1``; ``[::1]:8300`` -> ``[::1]``."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def create_app(
    settings: ConsoleSettings,
    *,
    schema: ExperimentSchema | None = None,
    runs: RunManager | None = None,
) -> FastAPI:
    """The console app over ``settings`` (schema and run manager injectable for tests)."""
    schema = schema or load_experiment_schema()
    runs = runs or RunManager(
        Path(settings.output_root), workdir=Path(settings.workdir), env=settings.run_env
    )
    form: Group = build_form(schema.model.model_json_schema())
    templates = _templates()
    live = LiveClient(settings)
    allowed = {h.lower() for h in settings.allowed_hosts}
    app = FastAPI(title="YoopRL console", version="1", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.state.runs = runs

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        host = _host_name(request.headers.get("host", "")).lower()
        if host not in allowed:
            return JSONResponse({"detail": f"host {host!r} not served"}, status_code=421)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin is not None:
                parsed = urllib.parse.urlparse(origin)
                if parsed.netloc.lower() != request.headers.get("host", "").lower():
                    return JSONResponse({"detail": "cross-origin request refused"}, 403)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def require_token(request: Request) -> None:
        if not settings.token:
            raise HTTPException(503, f"console controls disabled: set {TOKEN_ENV}")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), settings.token.encode()
        ):
            raise HTTPException(
                401, "missing or wrong console token", headers={"WWW-Authenticate": "Bearer"}
            )

    def page(template: str, **context: Any) -> HTMLResponse:
        html = templates.get_template(template).render(
            controls_enabled=bool(settings.token), **context
        )
        return HTMLResponse(html)

    async def body_json(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise HTTPException(400, "expected a JSON body") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "expected a JSON object")
        return data

    def validate(values: Mapping[str, Any]) -> tuple[BaseModel | None, dict[str, Any], list]:
        flat = {str(k): str(v) for k, v in values.items()}
        data = form_to_data(form, flat)
        try:
            return schema.model.model_validate(data), data, []
        except ValidationError as exc:
            return None, data, error_paths(form, exc.errors())

    # -- pages ----------------------------------------------------------------------------

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return page("index.html", runs=runs.list_runs()[:10], settings=settings)

    @app.get("/configure", response_class=HTMLResponse)
    def configure() -> HTMLResponse:
        saved = sorted(p.stem for p in runs.configs_dir.glob("*.yaml"))
        return page("configure.html", form=form, schema_title=schema.title, saved=saved)

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page() -> HTMLResponse:
        saved = sorted(p.stem for p in runs.configs_dir.glob("*.yaml"))
        return page("runs.html", kinds=list(RUN_KINDS.values()), saved=saved, runs=runs.list_runs())

    @app.get("/results", response_class=HTMLResponse)
    def results() -> HTMLResponse:
        listed = [r for r in runs.list_runs() if r["has_report"]]
        return page("results.html", runs=listed)

    @app.get("/results/{name}", response_class=HTMLResponse)
    def result(name: str) -> HTMLResponse:
        run_dir = _existing_run(name)
        report = run_dir / "report.md"
        metrics = read_json_object(run_dir / "metrics.json") or {}
        html = render_report(report.read_text(encoding="utf-8"), name) if report.is_file() else ""
        return page(
            "result.html",
            name=name,
            report_html=html,
            tests=metrics_tests(metrics),
            aggregates=metrics_aggregates(metrics),
            plots=[p for p in metrics.get("plots", []) if isinstance(p, str)],
            progress=runs.progress(name),
        )

    @app.get("/results/{name}/files/{path:path}")
    def result_file(name: str, path: str) -> FileResponse:
        run_dir = _existing_run(name).resolve()
        target = (run_dir / path).resolve()
        if run_dir not in target.parents or not target.is_file():
            raise HTTPException(404, "no such file in this run")
        kind = RUN_FILE_TYPES.get(target.suffix.lower())
        if kind is None:
            raise HTTPException(404, "this file type is not served")
        return FileResponse(target, media_type=kind)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(a: str | None = None, b: str | None = None) -> HTMLResponse:
        listed = [r["name"] for r in runs.list_runs() if r["has_report"]]
        sides = []
        for name in (a, b):
            if not name:
                continue
            metrics = read_json_object(_existing_run(name) / "metrics.json") or {}
            sides.append(
                {"name": name, "tests": metrics_tests(metrics), "modes": metrics.get("modes", [])}
            )
        rows = _comparison_rows(sides)
        return page("compare.html", runs=listed, a=a, b=b, sides=sides, rows=rows)

    @app.get("/live", response_class=HTMLResponse)
    def live_page() -> HTMLResponse:
        return page("live.html", snap=live.snapshot(), settings=settings)

    # -- JSON API -------------------------------------------------------------------------

    @app.post("/api/config/validate")
    async def api_validate(request: Request) -> JSONResponse:
        values = (await body_json(request)).get("values", {})
        if not isinstance(values, dict):
            raise HTTPException(400, "values must be an object")
        model, _, errors = validate(values)
        if model is None:
            return JSONResponse({"ok": False, "errors": errors}, status_code=422)
        resolved = yaml.safe_dump(schema.resolve(model), sort_keys=False)
        return JSONResponse({"ok": True, "resolved": resolved})

    @app.post("/api/config/save")
    async def api_save(request: Request) -> JSONResponse:
        require_token(request)
        body = await body_json(request)
        try:
            name = check_name(str(body.get("name", "")), "config name")
        except RunError as exc:
            return JSONResponse(
                {"ok": False, "errors": [{"field": "::name", "message": str(exc)}]}, 422
            )
        values = body.get("values", {})
        if not isinstance(values, dict):
            raise HTTPException(400, "values must be an object")
        model, posted, errors = validate(values)
        if model is None:
            return JSONResponse({"ok": False, "errors": errors}, status_code=422)
        text = yaml.safe_dump(schema.to_file(model, posted), sort_keys=False)
        path = runs.configs_dir / f"{name}.yaml"
        write_text_atomic(path, text)
        resolved = yaml.safe_dump(schema.resolve(model), sort_keys=False)
        return JSONResponse({"ok": True, "saved": path.name, "yaml": text, "resolved": resolved})

    @app.post("/api/runs")
    async def api_start(request: Request) -> JSONResponse:
        require_token(request)
        body = await body_json(request)
        try:
            req = RunRequest(
                kind=str(body.get("kind", "walk_forward")),
                config=str(body["config"]) if body.get("config") else None,
                preset=str(body.get("preset", "short")),
                encoders=str(body.get("encoders", "all")),
                seed=int(body.get("seed", 0)),
                data_dir=str(body["data_dir"]) if body.get("data_dir") else None,
                symbols=str(body["symbols"]) if body.get("symbols") else None,
            )
            name = runs.start(req, check_name(str(body["name"])) if body.get("name") else None)
        except (RunError, ValueError, TypeError) as exc:
            return JSONResponse({"ok": False, "detail": str(exc)}, status_code=422)
        return JSONResponse({"ok": True, "name": name})

    @app.get("/api/runs/{name}/progress")
    def api_progress(name: str) -> dict[str, Any]:
        _existing_run(name)
        return runs.progress(name)

    @app.post("/api/runs/{name}/cancel")
    def api_cancel(name: str, request: Request) -> JSONResponse:
        require_token(request)
        _existing_run(name)
        return JSONResponse({"ok": runs.cancel(name)})

    @app.post("/api/runs/{name}/resume")
    def api_resume(name: str, request: Request) -> JSONResponse:
        require_token(request)
        _existing_run(name)
        try:
            runs.resume(name)
        except RunError as exc:
            return JSONResponse({"ok": False, "detail": str(exc)}, status_code=422)
        return JSONResponse({"ok": True, "name": name})

    @app.post("/api/live/{target}/{action}")
    async def api_live(target: str, action: str, request: Request) -> JSONResponse:
        require_token(request)
        if target not in ("trader", "supervisor") or action not in ("halt", "resume"):
            raise HTTPException(404, "expected /api/live/{trader|supervisor}/{halt|resume}")
        body = await body_json(request)
        reason = str(body.get("reason") or f"{action} from the console")[:2000]
        code, payload = live.control(target, action, reason)
        return JSONResponse(
            {"ok": 200 <= code < 300, "status": code, "response": payload},
            code if code >= 400 else 200,
        )

    def _existing_run(name: str) -> Path:
        try:
            run_dir = runs.run_dir(name)
        except RunError:
            raise HTTPException(404, "no such run") from None
        if not run_dir.is_dir():
            raise HTTPException(404, "no such run")
        return run_dir

    return app


def _comparison_rows(sides: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (strategy, against, metric) present in either run."""
    keys: list[tuple[Any, Any, Any]] = []
    by_side: list[dict[tuple[Any, Any, Any], Mapping[str, Any]]] = []
    for side in sides:
        table = {}
        for t in side["tests"]:
            key = (t["strategy"], t["against"], t["metric"])
            table[key] = t
            if key not in keys:
                keys.append(key)
        by_side.append(table)
    return [
        {"strategy": k[0], "against": k[1], "metric": k[2], "cells": [t.get(k) for t in by_side]}
        for k in keys
    ]


def build_parser() -> argparse.ArgumentParser:
    """Command line of the console."""
    p = argparse.ArgumentParser(
        prog="python -m backend.api.console", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument(
        "--output-root",
        type=Path,
        default=DEFAULT_OUTPUT_ROOT,
        help=f"where runs and saved configs live (default {DEFAULT_OUTPUT_ROOT}, git-ignored)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="working directory of started runs (default: the current one)",
    )
    p.add_argument("--trader-url", default="http://127.0.0.1:8200")
    p.add_argument("--supervisor-url", default="http://127.0.0.1:8765")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="extra Host name to answer to (repeatable)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the console until interrupted."""
    import uvicorn

    args = build_parser().parse_args(argv)
    settings = ConsoleSettings.from_env(
        output_root=args.output_root,
        workdir=(args.workdir or Path.cwd()).resolve(),
        trader_url=args.trader_url,
        supervisor_url=args.supervisor_url,
        allowed_hosts=(*LOOPBACK_NAMES, args.host, *args.allow_host),
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}, not loopback only", file=sys.stderr)
    if not settings.token:
        print(f"note: {TOKEN_ENV} is not set: pages are read-only", file=sys.stderr)
    app = create_app(settings)
    print(f"console: http://{args.host}:{args.port}/  (runs under {settings.output_root})")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        app.state.runs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
