"""Downloader: idempotent, append-only, crash-safe updates from recorded Yahoo answers.

No test touches the network. Yahoo's chart API answers recorded under
``tests/fixtures/yfinance/`` are replayed at the HTTP session's ``get`` (the lowest level
yfinance reaches), so the real ``YFinanceSource`` -> ``yfinance.Ticker.history`` ->
yfinance parsing path runs in every test that uses the ``yahoo`` fixture.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yfinance as yf  # imported up front: it installs a warnings filter when imported

from backend.data_download import csv_store
from backend.data_download.csv_store import read_store_csv, session_csv_path, symbol_dir
from backend.data_download.downloader import (
    BarSource,
    DownloadError,
    DownloadWindow,
    YFinanceSource,
    build_parser,
    main,
    resolve_window,
    update_symbol,
)
from backend.data_download.schema import NY_TZ, OHLCV_COLUMNS

pytestmark = pytest.mark.filterwarnings(
    "ignore:The inplace keyword in DataFrame.sort_index",  # yfinance 1.7 itself, pandas 3.1
    "ignore:Series.values returning an ndarray that drops timezone",  # exchange_calendars
)

FIXTURES = Path(__file__).parent / "fixtures" / "yfinance"
FIRST = "SPY_15m_2024-11-25_2024-11-26.json"
OVERLAP = "SPY_15m_2024-11-26_2024-11-29.json"
LIVE = "SPY_15m_live_2024-12-02.json"
VIX = "VIX_15m_2024-11-26.json"
PREPOST = "SPY_15m_prepost_2024-11-26.json"


def load_fixture(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return payload


def ny(ts: str) -> pd.Timestamp:
    return pd.Timestamp(ts, tz=NY_TZ)


def clock_at(ts: str):  # noqa: ANN201 - a tiny test helper
    moment = ny(ts)
    return lambda: moment


# --------------------------------------------------------------------------- replay


class RecordedResponse:
    """The parts of a curl_cffi/requests response yfinance reads."""

    def __init__(self, url: str, status_code: int, text: str) -> None:
        self.url = url
        self.status_code = status_code
        self.text = text
        self.content = text.encode()

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code} for {self.url}")


class RecordedYahoo:
    """Answers yfinance's HTTP GETs from recorded chart responses, keyed by Yahoo ticker."""

    NOT_FOUND = {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }

    def __init__(self) -> None:
        self.charts: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.offline = False

    def get(self, url: str, params: dict[str, Any] | None = None, **_: Any) -> RecordedResponse:
        self.calls.append((url, dict(params or {})))
        if self.offline:
            from yfinance._http import requests as backend

            raise backend.exceptions.ConnectionError(
                "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com"
            )
        if "fc.yahoo.com" in url:
            return RecordedResponse(url, 404, "")
        if "getcrumb" in url:
            return RecordedResponse(url, 200, "recorded-crumb")
        match = re.search(r"/v8/finance/chart/([^/?]+)", url)
        if match and match.group(1) in self.charts:
            return RecordedResponse(url, 200, json.dumps(self.charts[match.group(1)]))
        return RecordedResponse(url, 404, json.dumps(self.NOT_FOUND))

    def post(self, url: str, **_: Any) -> RecordedResponse:
        self.calls.append((url, {}))
        return RecordedResponse(url, 404, "")

    def bar_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Chart calls for intraday bars (not yfinance's 1d timezone probe)."""
        return [(u, p) for u, p in self.calls if "/v8/finance/chart/" in u and p.get("period1")]


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch) -> Any:
    from yfinance import cache as yf_cache
    from yfinance.data import YfData

    fake = RecordedYahoo()
    data = YfData()
    # No disk caches (they live in the user's home) and a clean cookie/crumb state.
    monkeypatch.setattr(yf_cache, "get_tz_cache", yf_cache._TzCacheDummy)
    monkeypatch.setattr(yf_cache, "get_cookie_cache", yf_cache._CookieCacheDummy)
    monkeypatch.setattr(data._session, "get", fake.get)
    monkeypatch.setattr(data._session, "post", fake.post)
    monkeypatch.setattr(data, "_crumb", None)
    monkeypatch.setattr(data, "_cookie", None)
    monkeypatch.setattr(data, "_cookie_strategy", "basic")
    YfData.cache_get.cache_clear()  # yfinance memoises answers for past date ranges
    yield fake
    YfData.cache_get.cache_clear()


def run(
    yahoo: RecordedYahoo,
    data_dir: Path,
    fixture: str | dict[str, Any],
    now: str,
    symbol: str = "SPY",
    extended_hours: bool = False,
):  # noqa: ANN201
    payload = load_fixture(fixture) if isinstance(fixture, str) else fixture
    yahoo.charts[YFinanceSource().yahoo_symbol(symbol)] = payload
    clock = clock_at(now)
    window = resolve_window(clock(), "15m")
    return update_symbol(
        symbol, YFinanceSource(), data_dir, window, "15m", extended_hours, clock=clock
    )


def snapshot(data_dir: Path, symbol: str = "SPY") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(symbol_dir(data_dir, symbol).iterdir())}


def fixture_frame(name: str) -> pd.DataFrame:
    """The fixture's bars as a bar frame, straight from the JSON (no yfinance)."""
    result = load_fixture(name)["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    index = pd.to_datetime(result["timestamp"], unit="s", utc=True).tz_convert(NY_TZ)
    return pd.DataFrame({c: np.asarray(quote[c], dtype=float) for c in OHLCV_COLUMNS}, index=index)


# --------------------------------------------------------------------------- behaviour


def test_first_download_creates_one_file_per_session(yahoo: RecordedYahoo, tmp_path: Path):
    result = run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")

    assert result.added == 52
    assert result.sessions == ("2024-11-25", "2024-11-26")
    assert result.conflicts == () and result.forming == 0 and result.off_grid == 0
    assert sorted(snapshot(tmp_path)) == ["2024-11-25.csv", "2024-11-26.csv"]
    day = read_store_csv(session_csv_path(tmp_path, "SPY", "2024-11-26"))
    assert len(day) == 26
    assert day.index[0] == ny("2024-11-26 09:30") and day.index[-1] == ny("2024-11-26 15:45")
    text = session_csv_path(tmp_path, "SPY", "2024-11-26").read_text().splitlines()
    assert text[0] == "timestamp,open,high,low,close,volume"
    assert text[1].startswith("2024-11-26 09:30:00-05:00,")
    expected = fixture_frame(FIRST)
    stored = pd.concat([read_store_csv(p) for p in csv_store.list_csv_files(tmp_path, "SPY")])
    np.testing.assert_allclose(stored.to_numpy(), expected.loc[stored.index].to_numpy(), rtol=1e-9)
    # What was asked of Yahoo: the real chart endpoint, 15m, regular hours only.
    (url, params), *_ = yahoo.bar_requests()
    assert url.endswith("/v8/finance/chart/SPY")
    assert params["interval"] == "15m" and params["includePrePost"] is False


def test_rerun_with_same_answer_adds_nothing_and_keeps_bytes(yahoo: RecordedYahoo, tmp_path: Path):
    run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")
    before = snapshot(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in symbol_dir(tmp_path, "SPY").iterdir()}

    again = run(yahoo, tmp_path, FIRST, "2024-11-26 18:00")

    assert again.added == 0 and again.sessions == () and again.conflicts == ()
    assert again.fetched == 52
    assert snapshot(tmp_path) == before
    assert {p.name: p.stat().st_mtime_ns for p in symbol_dir(tmp_path, "SPY").iterdir()} == mtimes


def test_overlapping_answer_appends_only_new_bars(yahoo: RecordedYahoo, tmp_path: Path):
    run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")
    before = snapshot(tmp_path)

    result = run(yahoo, tmp_path, OVERLAP, "2024-11-29 14:00")

    assert result.fetched == 26 + 26 + 14
    assert result.added == 26 + 14
    assert result.sessions == ("2024-11-27", "2024-11-29")
    assert result.conflicts == ()
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before  # old sessions untouched, byte for byte
    half_day = read_store_csv(session_csv_path(tmp_path, "SPY", "2024-11-29"))
    assert len(half_day) == 14 and half_day.index[-1] == ny("2024-11-29 12:45")
    assert not session_csv_path(tmp_path, "SPY", "2024-11-28").exists()  # Thanksgiving


def test_conflicting_values_keep_the_stored_bar_and_are_reported(
    yahoo: RecordedYahoo, tmp_path: Path
):
    run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")
    stored_day = session_csv_path(tmp_path, "SPY", "2024-11-26").read_bytes()
    revised = copy.deepcopy(load_fixture(OVERLAP))
    result0 = revised["chart"]["result"][0]
    i = result0["timestamp"].index(int(ny("2024-11-26 10:00").timestamp()))
    quote = result0["indicators"]["quote"][0]
    old_close, old_volume = quote["close"][i], quote["volume"][i]
    quote["close"][i] = old_close + 0.25
    quote["high"][i] = max(quote["high"][i], quote["close"][i])
    quote["volume"][i] = old_volume + 1000

    result = run(yahoo, tmp_path, revised, "2024-11-29 14:00")

    changed = {(c.timestamp, c.column) for c in result.conflicts}
    assert (ny("2024-11-26 10:00"), "close") in changed
    assert (ny("2024-11-26 10:00"), "volume") in changed
    assert {c.timestamp for c in result.conflicts} == {ny("2024-11-26 10:00")}
    close = next(c for c in result.conflicts if c.column == "close")
    assert close.stored == pytest.approx(old_close) and close.fetched == pytest.approx(
        old_close + 0.25
    )
    assert session_csv_path(tmp_path, "SPY", "2024-11-26").read_bytes() == stored_day
    assert result.added == 40  # the new sessions still arrive
    assert "1 conflicting bar(s)" in result.summary()


@pytest.mark.parametrize("fail_on_call", [1, 2])
def test_crash_during_write_leaves_previous_files_intact(
    yahoo: RecordedYahoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_call: int
):
    # A live run on 11-27 at noon stores that session up to the 11:45 bar.
    run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")
    partial = run(yahoo, tmp_path, OVERLAP, "2024-11-27 12:00")
    assert partial.sessions == ("2024-11-27",) and partial.added == 10
    before = snapshot(tmp_path)

    real_replace = os.replace
    calls = {"n": 0}

    def crashing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            raise OSError(28, "No space left on device (simulated)")
        real_replace(src, dst)

    # The update rewrites 2024-11-27 (existing file) first, then creates 2024-11-29.
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crashing_replace)
        with pytest.raises(OSError, match="simulated"):
            run(yahoo, tmp_path, OVERLAP, "2024-11-29 14:00")

    after = snapshot(tmp_path)
    assert not [name for name in after if not name.endswith(".csv")]  # no temp files left
    for name, content in before.items():
        if fail_on_call == 1 or name != "2024-11-27.csv":
            assert after[name] == content  # untouched, byte for byte
    for path in csv_store.list_csv_files(tmp_path, "SPY"):
        read_store_csv(path)  # every file is complete and readable
    assert ("2024-11-29.csv" in after) is False
    if fail_on_call == 2:
        assert len(read_store_csv(session_csv_path(tmp_path, "SPY", "2024-11-27"))) == 26

    # A re-run completes the store exactly as an uninterrupted run would have.
    resumed = run(yahoo, tmp_path, OVERLAP, "2024-11-29 14:00")
    assert resumed.conflicts == ()
    reference = tmp_path / "reference"
    run(yahoo, reference, FIRST, "2024-11-26 17:00")
    run(yahoo, reference, OVERLAP, "2024-11-29 14:00")
    assert snapshot(tmp_path) == snapshot(reference)


@pytest.mark.parametrize(
    ("now", "bars", "forming"),
    [("2024-12-02 11:52:30", 9, 1), ("2024-12-02 12:00:00", 10, 0)],
)
def test_forming_bar_is_dropped(
    yahoo: RecordedYahoo, tmp_path: Path, now: str, bars: int, forming: int
):
    result = run(yahoo, tmp_path, LIVE, now)

    assert result.forming == forming and result.added == bars
    day = read_store_csv(session_csv_path(tmp_path, "SPY", "2024-12-02"))
    assert len(day) == bars
    assert day.index[-1] == ny("2024-12-02 09:30") + pd.Timedelta(minutes=15) * (bars - 1)
    assert (day.index + pd.Timedelta(minutes=15) <= ny(now)).all()


def test_network_failure_names_the_symbol_and_writes_nothing(yahoo: RecordedYahoo, tmp_path: Path):
    run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")
    before = snapshot(tmp_path)
    yahoo.offline = True
    clock = clock_at("2024-11-29 14:00")

    with pytest.raises(DownloadError, match=r"^SPY: could not fetch SPY from Yahoo.*resolve host"):
        update_symbol("SPY", YFinanceSource(), tmp_path, resolve_window(clock()), clock=clock)
    with pytest.raises(DownloadError, match=r"^QQQ: ") as info:
        update_symbol("QQQ", YFinanceSource(), tmp_path, resolve_window(clock()), clock=clock)

    assert info.value.symbol == "QQQ"
    assert yf.config.debug.hide_exceptions is True  # yfinance's global switch restored
    assert snapshot(tmp_path) == before
    assert not symbol_dir(tmp_path, "QQQ").exists()


def test_unknown_symbol_is_a_clear_error(yahoo: RecordedYahoo, tmp_path: Path):
    clock = clock_at("2024-11-29 14:00")
    with pytest.raises(DownloadError, match=r"^NOPE: .*NOPE"):
        update_symbol("NOPE", YFinanceSource(), tmp_path, resolve_window(clock()), clock=clock)
    assert not (tmp_path / "intraday").exists()


def test_vix_is_fetched_as_caret_vix_and_kept_on_the_regular_grid(
    yahoo: RecordedYahoo, tmp_path: Path
):
    result = run(yahoo, tmp_path, VIX, "2024-11-26 17:00", symbol="VIX")

    assert yahoo.bar_requests()[0][0].endswith("/v8/finance/chart/^VIX")
    assert result.fetched == 27 and result.off_grid == 1  # Cboe's 16:00-16:15 bar
    day = read_store_csv(session_csv_path(tmp_path, "VIX", "2024-11-26"))
    assert len(day) == 26 and day.index[-1] == ny("2024-11-26 15:45")
    assert (day["volume"] == 0).all()


@pytest.mark.parametrize(("extended", "bars"), [(True, 64), (False, 26)])
def test_extended_hours_flag(yahoo: RecordedYahoo, tmp_path: Path, extended: bool, bars: int):
    result = run(yahoo, tmp_path, PREPOST, "2024-11-26 21:00", extended_hours=extended)

    assert yahoo.bar_requests()[0][1]["includePrePost"] is extended
    day = read_store_csv(session_csv_path(tmp_path, "SPY", "2024-11-26"))
    assert result.added == bars == len(day)
    first = "04:00" if extended else "09:30"
    assert day.index[0] == ny(f"2024-11-26 {first}")


def test_bars_held_in_a_consolidated_file_are_not_duplicated(yahoo: RecordedYahoo, tmp_path: Path):
    older = fixture_frame(FIRST).loc["2024-11-26"]
    csv_store.write_csv_atomic(older, symbol_dir(tmp_path, "SPY") / "SPY_history.csv")

    result = run(yahoo, tmp_path, FIRST, "2024-11-26 17:00")

    assert result.added == 26 and result.sessions == ("2024-11-25",)
    assert not session_csv_path(tmp_path, "SPY", "2024-11-26").exists()


def test_one_minute_requests_are_split_to_what_yahoo_accepts(yahoo: RecordedYahoo, tmp_path: Path):
    yahoo.charts["SPY"] = load_fixture(FIRST)  # content irrelevant here
    start, end = ny("2024-11-04 00:00"), ny("2024-11-26 00:00")

    YFinanceSource().fetch("SPY", "1m", start, end, extended_hours=False)

    spans = sorted((p["period1"], p["period2"]) for _, p in yahoo.bar_requests())
    assert len(spans) == 4
    assert spans[0][0] == int(start.timestamp()) and spans[-1][1] == int(end.timestamp())
    assert all(b - a <= 7 * 86400 for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


class FrameSource:
    """A ``BarSource`` serving a fixed frame, for merge logic without yfinance."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        extended_hours: bool,
    ) -> pd.DataFrame:
        return self.frame


def test_incomplete_and_off_grid_rows_are_dropped(tmp_path: Path):
    frame = fixture_frame(FIRST).loc["2024-11-25"].copy()
    frame.iloc[3, frame.columns.get_loc("close")] = np.nan
    stray = pd.DataFrame(
        frame.iloc[:1].to_numpy(),
        columns=frame.columns,
        index=pd.DatetimeIndex([ny("2024-11-25 09:37")]),
    )
    holiday = frame.iloc[:1].set_axis(pd.DatetimeIndex([ny("2024-11-28 10:00")]))
    source: BarSource = FrameSource(pd.concat([frame, stray, holiday]).sort_index())
    clock = clock_at("2024-11-29 17:00")

    result = update_symbol("SPY", source, tmp_path, resolve_window(clock()), clock=clock)

    assert (result.incomplete, result.off_grid, result.added) == (1, 2, 25)
    day = read_store_csv(session_csv_path(tmp_path, "SPY", "2024-11-25"))
    assert ny("2024-11-25 10:15") not in day.index and len(day) == 25


# --------------------------------------------------------------------------- window


NOW = ny("2024-12-04 12:00")


def test_window_default_is_everything_yahoo_serves():
    window = resolve_window(NOW, "15m")
    assert window.end == NOW
    assert window.start == NOW - pd.Timedelta(days=59)
    assert window.note is None


def test_window_clamps_a_start_beyond_the_60_day_limit():
    window = resolve_window(NOW, "15m", start="2024-06-03", end="2024-11-29")
    assert window.start == NOW - pd.Timedelta(days=59)
    assert window.end == ny("2024-11-30 00:00")  # end date inclusive
    assert window.note is not None and "about the last 60 days" in window.note
    period = resolve_window(NOW, "15m", period="90d")
    assert period.start == NOW - pd.Timedelta(days=59) and "clamped" in (period.note or "")


def test_window_refuses_a_range_entirely_older_than_yahoo_serves():
    with pytest.raises(ValueError, match=r"entirely older than Yahoo allows.*60 days"):
        resolve_window(NOW, "15m", start="2024-01-02", end="2024-01-31")
    # 60m bars reach back ~730 days, so the same range is fine there.
    assert resolve_window(NOW, "60m", start="2024-01-02", end="2024-01-31").note is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "5d", "start": "2024-12-01"}, "not both"),
        ({"period": "5x"}, "bad period"),
        ({"start": "2024-12-03", "end": "2024-12-01"}, "empty range"),
        ({"start": "2024-12-01 10:00"}, "expected a date"),
        ({"interval": "2h"}, "unknown interval"),
    ],
)
def test_window_rejects_bad_input(kwargs: dict[str, str], message: str):
    args = {"interval": "15m", **kwargs}
    with pytest.raises(ValueError, match=message):
        resolve_window(NOW, **args)


def test_window_end_in_the_future_stops_at_now():
    assert resolve_window(NOW, "15m", start="2024-12-02", end="2024-12-31").end == NOW
    assert resolve_window(NOW, "15m", period="5d") == DownloadWindow(
        NOW - pd.Timedelta(days=5), NOW
    )


# --------------------------------------------------------------------------- CLI


def test_cli_help_explains_the_60_day_limit(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "15m (also 5m, 30m) history reaches back about 60 days only" in text
    assert "^VIX" in text
    assert {
        "--symbols",
        "--data-dir",
        "--interval",
        "--period",
        "--start",
        "--end",
        "--extended-hours",
    } <= set(build_parser().format_help().split())


def test_cli_prints_one_summary_line_per_symbol(
    yahoo: RecordedYahoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    yahoo.charts["SPY"] = load_fixture(FIRST)
    yahoo.charts["^VIX"] = load_fixture(VIX)
    argv = ["--symbols", "SPY,vix", "--data-dir", str(tmp_path)]

    status = main(argv, clock=clock_at("2024-11-26 17:00"))

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("SPY: +52 bars, 2 session(s) (2024-11-25..2024-11-26) touched, ")
    assert lines[1].startswith("VIX: +26 bars, 1 session(s) (2024-11-26) touched, ")
    assert all("0 conflicting bar(s)" in line for line in lines)


def test_cli_reports_a_failed_symbol_and_exits_1(
    yahoo: RecordedYahoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    yahoo.offline = True
    status = main(
        ["--symbols", "QQQ", "--data-dir", str(tmp_path)], clock=clock_at("2024-11-26 17:00")
    )
    assert status == 1
    assert re.search(r"^FAILED QQQ: could not fetch QQQ", capsys.readouterr().err, re.M)
    assert not (tmp_path / "intraday").exists()


def test_cli_refuses_a_range_older_than_yahoo_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    argv = ["--data-dir", str(tmp_path), "--start", "2024-01-02", "--end", "2024-01-31"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv, clock=clock_at("2024-12-04 12:00"))
    assert exit_info.value.code == 2
    assert "about the last 60 days" in capsys.readouterr().err


# --------------------------------------------------------------------------- strict reader


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


HEADER = "timestamp,open,high,low,close,volume\n"
ROW = "2024-11-26 09:30:00-05:00,1,2,0.5,1.5,100\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ts,open,high,low,close,volume\n" + ROW, r":1: header"),
        (HEADER + ROW + "2024-11-26 09:45:00,1,2,0.5,1.5,100\n", r":3: bad timestamp"),
        (HEADER + ROW + ROW, r":3: timestamps must be strictly increasing"),
        (HEADER + ROW.replace(",1.5,", ",,"), r":2: bad close"),
        (HEADER + ROW.replace(",100", ",inf"), r":2: bad volume"),
    ],
)
def test_read_store_csv_is_strict(tmp_path: Path, text: str, message: str):
    path = _write(tmp_path / "2024-11-26.csv", text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        read_store_csv(path)


def test_read_store_csv_round_trips_the_writer_across_dst(tmp_path: Path):
    index = pd.DatetimeIndex([ny("2024-03-08 15:45"), ny("2024-03-11 09:30")], name="timestamp")
    frame = pd.DataFrame({c: [1.25, 2.5] for c in OHLCV_COLUMNS}, index=index)
    path = csv_store.write_csv_atomic(frame, tmp_path / "mixed.csv")
    assert "-05:00" in path.read_text() and "-04:00" in path.read_text()
    back = read_store_csv(path)
    pd.testing.assert_frame_equal(back, frame, check_index_type=False)
    assert str(back.index.tz) == NY_TZ and back.index.name == "timestamp"
    assert (back.dtypes == "float64").all()
    empty = _write(tmp_path / "empty.csv", HEADER)
    assert read_store_csv(empty).empty
