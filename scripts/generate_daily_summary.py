"""Write the daily summary of a live (paper) trading session as Markdown plus an equity PNG.

Usage::

    python scripts/generate_daily_summary.py --state live_state.sqlite \
        --audit data/supervisor/audit.sqlite3 [--date YYYY-MM-DD] \
        [--out-dir backend/evaluation/daily_reports] [--supervisor-config FILE]

Writes ``<out-dir>/<date>.md`` and, when the day has fills, ``<out-dir>/<date>_equity.png``.
``--date`` is a New York session date; by default the newest session found in the state
DB. Both databases are opened read-only (``mode=ro``) and never written.

Where the numbers come from (the state DB keeps no bar-by-bar equity series):

* cash and shares at any time are unrolled from the current ``account`` rows and the
  ``fills`` table (each fill moved ``qty`` shares and ``qty * price + cost`` cash);
* the equity curve is marked at each fill's price (plus the day's start and end), so the
  drawdown is the drawdown between fills, not intrabar;
* the end equity is the trader's persisted status when its last bar is on that day,
  otherwise the position marked at the day's last fill price (exact when flat, the
  default with ``flatten_at_close``);
* trades are listed under the bar whose open (market orders) or close (MOC) priced them;
* the trader logs no level-change event today, so "level changes" lists the events whose
  kind mentions a level, mode, halt or resume, plus the status after the day's last bar.

The supervisor section's narrative is written by the LLM of ``--supervisor-config`` when
its ``llm`` section is enabled (:mod:`backend.monitoring.narrative`: hard deadline, the
day's facts sent as untrusted data, the answer reduced to one escaped plain paragraph);
the rule-based template is used otherwise and whenever the LLM fails, and the report says
which one wrote it (and why the LLM did not).

Exit codes: 0 report written (also for a day without trading), 1 a database is missing,
unreadable or not of the expected schema, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

NY_TZ = "America/New_York"
CASH_KEY = "$CASH"
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "backend" / "evaluation" / "daily_reports"
LEVEL_EVENT_WORDS = ("level", "mode", "halt", "resume")
"""Trader event kinds containing one of these words are reported as level changes."""


class InputError(RuntimeError):
    """A database is missing, unreadable or not of the expected schema."""


@dataclass(frozen=True)
class EquityPoint:
    """Equity marked at one time of the day."""

    ts: pd.Timestamp
    equity: float
    label: str


@dataclass
class DaySummary:
    """Everything the report prints for one session date."""

    day: date
    fills: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    curve: list[EquityPoint] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    """The trader's persisted status when its last bar is on this day."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    level_before: str | None = None
    """Supervisor level in force before the day's first audit row."""

    @property
    def traded(self) -> bool:
        """Whether any order or fill belongs to the day."""
        return bool(self.fills or self.orders)

    @property
    def start_equity(self) -> float:
        """Equity at the start of the day."""
        return self.curve[0].equity

    @property
    def end_equity(self) -> float:
        """Equity at the end of the day (or now, for today's running session)."""
        return self.curve[-1].equity

    @property
    def max_drawdown(self) -> float:
        """Largest fall from a running peak of the curve, as a fraction (>= 0)."""
        peak, worst = float("-inf"), 0.0
        for p in self.curve:
            peak = max(peak, p.equity)
            if peak > 0:
                worst = max(worst, 1.0 - p.equity / peak)
        return worst


# --------------------------------------------------------------------------- reading


def connect_ro(path: Path, what: str) -> sqlite3.Connection:
    """Open ``path`` read-only; raise :class:`InputError` naming the file if impossible."""
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"{what} unreadable: {path}: {exc}") from exc
    return conn


def _rows(conn: sqlite3.Connection, sql: str, path: Path, params: Sequence[Any] = ()) -> list[Any]:
    try:
        return list(conn.execute(sql, tuple(params)).fetchall())
    except sqlite3.Error as exc:
        raise InputError(f"{path}: not the expected schema ({exc})") from exc


def ny_date(ts: str) -> date:
    """The New York calendar date of an ISO timestamp (naive = UTC)."""
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.tz_convert(NY_TZ).date()


def ny_time(ts: str) -> pd.Timestamp:
    """An ISO timestamp in New York time."""
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.tz_convert(NY_TZ)


def _kv(conn: sqlite3.Connection, path: Path, key: str) -> Any:
    rows = _rows(conn, "SELECT value FROM kv WHERE key = ?", path, (key,))
    return json.loads(rows[0]["value"]) if rows else None


def latest_session(state: sqlite3.Connection, path: Path) -> date | None:
    """Newest session date in the state DB (status, fills, orders), or None."""
    stamps: list[str] = []
    status = _kv(state, path, "status") or {}
    if status.get("last_bar"):
        stamps.append(str(status["last_bar"]))
    for table in ("fills", "orders"):
        rows = _rows(state, f"SELECT MAX(bar_ts) AS t FROM {table}", path)
        if rows and rows[0]["t"]:
            stamps.append(rows[0]["t"])
    return max((ny_date(s) for s in stamps), default=None)


def summarize(
    state: sqlite3.Connection,
    state_path: Path,
    audit: sqlite3.Connection,
    audit_path: Path,
    day: date,
) -> DaySummary:
    """Collect the day's numbers from both databases (read-only)."""
    out = DaySummary(day)
    fills = [
        dict(r)
        for r in _rows(
            state,
            "SELECT f.client_order_id, f.symbol, f.bar_ts, f.qty, f.price, f.cost, "
            "o.target, o.kind, o.bar_ts AS decided FROM fills f "
            "LEFT JOIN orders o ON o.client_order_id = f.client_order_id ORDER BY f.rowid",
            state_path,
        )
    ]
    account = {
        r["symbol"]: float(r["qty"])
        for r in _rows(state, "SELECT symbol, qty FROM account", state_path)
    }
    cash_now = account.pop(CASH_KEY, 0.0)
    shares_now = sum(account.values())
    # Unroll the book back to the start of the day.
    later = [f for f in fills if ny_date(f["bar_ts"]) >= day]
    cash = cash_now + sum(f["qty"] * f["price"] + f["cost"] for f in later)
    shares = shares_now - sum(f["qty"] for f in later)
    out.fills = [f for f in fills if ny_date(f["bar_ts"]) == day]
    out.orders = [
        dict(r)
        for r in _rows(state, "SELECT * FROM orders ORDER BY created_seq", state_path)
        if ny_date(r["bar_ts"]) == day
    ]
    status = _kv(state, state_path, "status") or {}
    if status.get("last_bar") and ny_date(str(status["last_bar"])) == day:
        out.status = status
    out.events = [
        dict(r)
        for r in _rows(state, "SELECT ts, kind, message FROM events ORDER BY id", state_path)
        if ny_date(r["ts"]) == day
    ]
    if out.fills:
        first = out.fills[0]
        start_ts = ny_time(first["bar_ts"]).normalize() + pd.Timedelta(hours=9, minutes=30)
        start_price = first["price"]
        out.curve.append(EquityPoint(start_ts, cash + shares * start_price, "start"))
        for f in out.fills:
            cash -= f["qty"] * f["price"] + f["cost"]
            shares += f["qty"]
            out.curve.append(EquityPoint(ny_time(f["bar_ts"]), cash + shares * f["price"], "fill"))
    elif out.orders:  # orders but no fill (cancelled or pending): mark the book once
        prior = [f["price"] for f in fills if ny_date(f["bar_ts"]) < day]
        price = float(out.status["last_price"]) if out.status else (prior[-1] if prior else 0.0)
        start_ts = ny_time(out.orders[0]["bar_ts"])
        out.curve.append(EquityPoint(start_ts, cash + shares * price, "start"))
    if out.curve and out.status is not None:
        end_ts = ny_time(str(out.status["last_bar"])) + pd.Timedelta(minutes=15)
        out.curve.append(EquityPoint(end_ts, float(out.status["equity"]), "end"))
    rows = _rows(audit, "SELECT * FROM decisions ORDER BY id", audit_path)
    before = [r for r in rows if ny_date(r["decided_at"]) < day]
    out.level_before = before[-1]["level"] if before else None
    out.decisions = []
    for r in rows:
        if ny_date(r["decided_at"]) != day:
            continue
        d = dict(r)
        d["override"] = json.loads(d["override"]) if d.get("override") else None
        out.decisions.append(d)
    return out


# --------------------------------------------------------------------------- writing


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _hhmm(ts: str) -> str:
    return ny_time(ts).strftime("%H:%M")


def supervisor_narrative(s: DaySummary) -> str:
    """A few plain sentences generated from the day's audit rows (no LLM)."""
    if not s.decisions:
        before = f" (level in force: {s.level_before})" if s.level_before else ""
        return f"The supervisor recorded no decision on {s.day}{before}."
    polls = [d for d in s.decisions if d["kind"] == "decision"]
    manual = [d for d in s.decisions if d["kind"] != "decision"]
    start = s.level_before or "Caution (boot)"
    end = s.decisions[-1]["level"]
    out = [
        f"The supervisor made {len(polls)} poll decision(s) and recorded {len(manual)} "
        f"manual action(s) on {s.day}; the level went from {start} to {end}."
    ]
    level = s.level_before
    for d in s.decisions:
        when = _hhmm(d["decided_at"])
        ov = d["override"] or {}
        if d["kind"] in ("halt", "override", "resume"):
            verb = {"halt": "halted trading", "override": "forced the level", "resume": "resumed"}
            out.append(
                f"At {when} {ov.get('who', 'an operator')} {verb[d['kind']]} "
                f"(level {d['level']}): {ov.get('why', d['reason'])}."
            )
        elif d["kind"] == "expire":
            out.append(f"At {when} the override by {ov.get('who', '?')} expired.")
        elif d["level"] != level:
            out.append(f"At {when} the level moved to {d['level']}: {d['reason']}.")
        level = d["level"]
    failed = [d for d in polls if d.get("error")]
    if failed:
        out.append(
            f"{len(failed)} poll(s) reported an input or LLM error; the rules decided alone then."
        )
    return " ".join(out)


def day_facts(s: DaySummary) -> dict[str, Any]:
    """The facts the LLM narrates: figures, trades and supervisor decisions of the day."""
    facts: dict[str, Any] = {"date": s.day.isoformat(), "traded": s.traded}
    if s.traded and s.curve:
        facts.update(
            start_equity=round(s.start_equity, 2),
            end_equity=round(s.end_equity, 2),
            pnl=round(s.end_equity - s.start_equity, 2),
            max_drawdown_pct=round(100 * s.max_drawdown, 4),
            fills=len(s.fills),
            orders=len(s.orders),
            costs=round(sum(f["cost"] for f in s.fills), 2),
        )
    facts["supervisor_level_before"] = s.level_before
    facts["supervisor_decisions"] = [
        {
            "time_ny": _hhmm(d["decided_at"]),
            "kind": d["kind"],
            "level": d["level"],
            "reason": d["reason"],
            "headlines": json.loads(d["sources"]) if isinstance(d.get("sources"), str) else [],
            "operator": (d["override"] or {}).get("who"),
            "operator_note": (d["override"] or {}).get("why"),
        }
        for d in s.decisions[-50:]
    ]
    facts["trader_level_events"] = [
        {"time_ny": _hhmm(e["ts"]), "kind": e["kind"], "message": e["message"]}
        for e in s.events
        if any(w in e["kind"] for w in LEVEL_EVENT_WORDS)
    ][-30:]
    if s.status is not None:
        facts["trader_status_end"] = {k: s.status.get(k) for k in ("mode", "level", "halt_reason")}
    return facts


def write_narrative(s: DaySummary, llm: Any | None) -> tuple[str, str]:
    """``(paragraph, who wrote it)``: the LLM's when configured and it answers, else rules."""
    if llm is None or not getattr(llm, "enabled", False):
        return supervisor_narrative(s), "the rule-based template (no LLM configured)"
    from backend.monitoring.narrative import llm_narrative

    result = llm_narrative(day_facts(s), llm)
    if result.text is not None:
        return result.text, (
            f"{result.provider} in {result.latency_s:.1f} s; the tables are authoritative"
        )
    return supervisor_narrative(
        s
    ), f"the rule-based template ({result.provider} failed: {result.error})"


def plot_equity(s: DaySummary, path: Path) -> None:
    """Equity curve at the marked points (matplotlib, Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [p.ts.tz_localize(None) for p in s.curve]
    ax.step(xs, [p.equity for p in s.curve], where="post", marker="o", markersize=3)
    ax.set_title(f"Equity {s.day} (marked at fills, New York time)")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)


def render(s: DaySummary, png_name: str | None, narrative: tuple[str, str] | None = None) -> str:
    """The Markdown report; ``narrative`` is ``(paragraph, who wrote it)`` (default: rules)."""
    lines = [f"# Daily summary: {s.day}", ""]
    if not s.traded:
        lines += [f"**No trading on {s.day}**: the state DB has no order and no fill that day.", ""]
    else:
        ret = s.end_equity / s.start_equity - 1.0
        costs = sum(f["cost"] for f in s.fills)
        turnover = sum(abs(f["qty"] * f["price"]) for f in s.fills)
        lines += [
            "## PnL",
            "",
            "| | |",
            "|---|---|",
            f"| Start equity | {_money(s.start_equity)} |",
            f"| End equity | {_money(s.end_equity)} |",
            f"| PnL | {_money(s.end_equity - s.start_equity)} |",
            f"| Return | {ret:+.4%} |",
            f"| Max drawdown (between fills) | {s.max_drawdown:.4%} |",
            f"| Fills | {len(s.fills)} |",
            f"| Orders | {len(s.orders)} |",
            f"| Costs (commission + slippage) | {_money(costs)} |",
            f"| Turnover | {_money(turnover)} |",
            "",
        ]
        if s.status is None:
            lines += [
                "End equity marked at the day's last fill price (the trader's status is from "
                "another day).",
                "",
            ]
        if png_name:
            lines += [f"![equity]({png_name})", ""]
        lines += [
            "## Trades",
            "",
            "| fill bar (NY) | side | qty | price | notional | cost | target | kind |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for f in s.fills:
            side = "BUY" if f["qty"] > 0 else "SELL"
            target = "" if f["target"] is None else f"{f['target']:.3f}"
            lines.append(
                f"| {_hhmm(f['bar_ts'])} | {side} | {abs(f['qty']):.4f} | {f['price']:.4f} | "
                f"{_money(abs(f['qty'] * f['price']))} | {f['cost']:.4f} | {target} | "
                f"{f['kind'] or ''} |"
            )
        lines.append("")
    guards = [e for e in s.events if e["kind"].startswith("guard_")]
    levels = [
        e
        for e in s.events
        if not e["kind"].startswith("guard_") and any(w in e["kind"] for w in LEVEL_EVENT_WORDS)
    ]
    lines += ["## Guard trips", ""]
    if guards:
        lines += [f"- {_hhmm(e['ts'])} `{e['kind']}`: {e['message']}" for e in guards]
    else:
        lines.append("None.")
    lines += ["", "## Trader level changes", ""]
    if levels:
        lines += [f"- {_hhmm(e['ts'])} `{e['kind']}`: {e['message']}" for e in levels]
    else:
        lines.append("No level-change event in the trader's event log.")
    if s.status is not None:
        reason = s.status.get("halt_reason") or ""
        lines.append(
            f"Status after the day's last bar: mode {s.status.get('mode')}, level "
            f"{s.status.get('level')}" + (f", halt reason: {reason}" if reason else "") + "."
        )
    text, author = narrative or (supervisor_narrative(s), "the rule-based template")
    lines += ["", "## Supervisor", "", text, "", f"_Narrative written by {author}._", ""]
    if s.decisions:
        lines += [
            "| time (NY) | kind | level | rules | LLM | provider | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in s.decisions:
            reason = str(d["reason"]).replace("|", "\\|")
            ov = d["override"]
            if ov and d["kind"] != "decision":
                reason = f"{ov.get('who')}: {ov.get('why')} ({reason})".replace("|", "\\|")
            lines.append(
                f"| {_hhmm(d['decided_at'])} | {d['kind']} | {d['level']} | "
                f"{d['rule_level'] or ''} | {d['llm_level'] or ''} | {d['provider']} | "
                f"{reason} |"
            )
        lines.append("")
    return "\n".join(lines)


def generate(
    state_path: Path,
    audit_path: Path,
    day: date | None,
    out_dir: Path,
    llm: Any | None = None,
) -> Path:
    """Write the report (and plot) for ``day`` (default: newest session); returns the .md path.

    ``llm`` is an ``LLMConfig``: when enabled, it writes the supervisor narrative.

    Raises:
        InputError: If a database is missing, unreadable or of another schema.
    """
    state = connect_ro(state_path, "state DB")
    try:
        audit = connect_ro(audit_path, "audit DB")
        try:
            if day is None:
                day = latest_session(state, state_path) or pd.Timestamp.now(NY_TZ).date()
            summary = summarize(state, state_path, audit, audit_path, day)
        finally:
            audit.close()
    finally:
        state.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    png_name = None
    if summary.traded and summary.curve:
        png_name = f"{day.isoformat()}_equity.png"
        plot_equity(summary, out_dir / png_name)
    md = out_dir / f"{day.isoformat()}.md"
    md.write_text(render(summary, png_name, write_narrative(summary, llm)), encoding="utf-8")
    return md


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, type=Path, help="the trader's state SQLite")
    parser.add_argument("--audit", required=True, type=Path, help="the supervisor audit SQLite")
    parser.add_argument("--date", type=date.fromisoformat, help="session date, YYYY-MM-DD")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument(
        "--supervisor-config",
        type=Path,
        default=None,
        help="the supervisor's YAML config: its enabled 'llm' section writes the narrative "
        "(rule-based template otherwise and on any LLM failure)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    llm = None
    if args.supervisor_config is not None:
        from backend.config.supervisor_config import load_supervisor_config

        try:
            llm = load_supervisor_config(args.supervisor_config).llm
        except (OSError, ValueError, TypeError) as exc:
            print(f"error: --supervisor-config {args.supervisor_config}: {exc}", file=sys.stderr)
            return 2
    try:
        md = generate(args.state, args.audit, args.date, args.out_dir, llm)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
