"""The bar database: validated ingest, the overlap rule, range reads equal to the loader's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.data_download.csv_store import write_csv_atomic
from backend.data_download.loader import load_bars, load_market
from backend.database.bar_database import BarDatabase, DatabaseError
from backend.database.db_manager import main
from backend.database.ingest import IngestRefused, ingest_files, ingest_store
from backend.database.inventory import describe

MakeBars = Callable[..., pd.DataFrame]


def _files(db: BarDatabase) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(db.bars_dir.rglob("*.parquet"))}


@pytest.fixture
def spy_store(tmp_data_dir: Path, make_bars: MakeBars, write_store: Callable[..., list[Path]]):
    """Two years across a year boundary, with a half day (2024-11-29) and a holiday."""
    bars = make_bars("2024-11-25", "2025-01-10", seed=1)
    write_store(bars, tmp_data_dir, "SPY")
    write_store(
        make_bars("2024-11-25", "2025-01-10", seed=2, start_price=15.0), tmp_data_dir, "VIX"
    )
    return tmp_data_dir, bars


def test_store_ingest_reads_back_exactly_what_the_loader_gives(spy_store, tmp_path: Path):
    data_dir, bars = spy_store
    db = BarDatabase(tmp_path / "db")
    outcome = ingest_store(db, data_dir, "SPY")
    assert (outcome.report.added, outcome.report.already_stored) == (len(bars), 0)
    assert outcome.report.years_written == [2024, 2025]
    loaded = load_bars("SPY", data_dir=data_dir, use_cache=False)
    pd.testing.assert_frame_equal(db.load_bars("SPY"), loaded)
    # Range semantics are the loader's: a date end keeps the whole day, naive = New York.
    for start, end in [
        ("2024-12-30", "2025-01-02"),
        ("2024-12-31 15:00", "2025-01-02 10:00"),
        (pd.Timestamp("2024-12-31 20:00", tz="UTC"), None),
        (None, "2024-11-29"),
    ]:
        want = load_bars("SPY", start=start, end=end, data_dir=data_dir, use_cache=False)
        pd.testing.assert_frame_equal(db.load_bars("SPY", start=start, end=end), want)
    empty = db.load_bars("SPY", start="2030-01-01")
    assert len(empty) == 0 and list(empty.columns) == list(bars.columns)


def test_market_frame_from_the_database_matches_the_loader(spy_store, tmp_path: Path):
    from backend.data_download.loader import join_vix_asof

    data_dir, _ = spy_store
    db = BarDatabase(tmp_path / "db")
    ingest_store(db, data_dir, "SPY")
    with pytest.raises(DatabaseError, match=r"no VIX 15m bars for the VIX features.*use_vix"):
        db.load_market("SPY")
    ingest_store(db, data_dir, "VIX")
    market = join_vix_asof(db.load_bars("SPY", end="2024-12-31"), db.load_bars("VIX"))
    want = load_market("SPY", end="2024-12-31", data_dir=data_dir, use_cache=False)
    pd.testing.assert_frame_equal(market, want)
    for kwargs in (
        {"start": "2024-12-02", "end": "2025-01-03"},
        {"start": "2025-01-02", "vix_tolerance": "1D"},
        {"include_vix": False},
    ):
        want = load_market("SPY", data_dir=data_dir, use_cache=False, **kwargs)
        pd.testing.assert_frame_equal(db.load_market("SPY", **kwargs), want)


def test_list_names_first_last_bar_sessions_and_gaps(spy_store, tmp_path: Path):
    data_dir, bars = spy_store
    db = BarDatabase(tmp_path / "db")
    ingest_store(db, data_dir, "SPY")
    # A second ingest from files with a hole: two bars of one session and a whole session.
    later = pd.concat(
        [
            bars.iloc[:0],
            _day_bars(bars, "2025-01-13", bars.iloc[-1]["close"]),
            _day_bars(bars, "2025-01-15", bars.iloc[-1]["close"]).iloc[2:],
        ]
    )
    path = tmp_path / "later.csv"
    write_csv_atomic(later, path)
    ingest_files(db, [path], "SPY")
    (held,) = describe(db)
    assert (held.symbol, held.interval) == ("SPY", "15m")
    assert held.first_bar == "2024-11-25 09:30:00-05:00"
    assert held.last_bar == "2025-01-15 15:45:00-05:00"
    assert held.bars == len(bars) + 26 + 24
    assert held.sessions == bars.index.normalize().nunique() + 2
    assert (held.missing_bars, held.missing_sessions) == (2, 1)  # 2025-01-14 absent
    assert held.years == [2024, 2025]


def _day_bars(like: pd.DataFrame, day: str, price: float) -> pd.DataFrame:
    index = pd.date_range(f"{day} 09:30", periods=26, freq="15min", tz="America/New_York")
    close = np.round(price + np.arange(26) * 0.01, 4)
    return pd.DataFrame(
        {
            "open": close,
            "high": close + 0.05,
            "low": close - 0.05,
            "close": close,
            "volume": np.full(26, 1000.0),
        },
        index=index.as_unit("ns").rename("timestamp"),
    )[list(like.columns)]


def test_reingest_of_overlapping_identical_bars_adds_only_the_new_ones(
    spy_store, tmp_path: Path, make_bars: MakeBars
):
    data_dir, bars = spy_store
    db = BarDatabase(tmp_path / "db")
    ingest_store(db, data_dir, "SPY")
    before = _files(db)
    again = ingest_store(db, data_dir, "SPY")
    assert (again.report.added, again.report.already_stored) == (0, len(bars))
    assert again.report.years_written == []
    assert _files(db) == before  # nothing rewritten
    # Overlap plus new bars: the overlap is skipped, the rest added, old bars kept.
    more = make_bars("2025-01-06", "2025-01-17", seed=1)
    overlap = more.index.intersection(bars.index)
    more.loc[overlap] = bars.loc[overlap]
    path = tmp_path / "more.csv"
    write_csv_atomic(more, path)
    report = ingest_files(db, [path], "SPY").report
    assert report.already_stored == len(overlap) > 0
    assert report.added == len(more) - len(overlap)
    assert report.years_written == [2025]
    assert (
        _files(db)[str(db.partition_path("SPY", "15m", 2024))]
        == before[str(db.partition_path("SPY", "15m", 2024))]
    )
    stored = db.load_bars("SPY")
    pd.testing.assert_frame_equal(stored.loc[bars.index], bars, check_freq=False)
    log = [json.loads(line) for line in db.log_path.read_text().splitlines()]
    assert [e["added"] for e in log] == [len(bars), 0, report.added]


def test_a_bar_that_differs_from_the_stored_one_refuses_the_whole_ingest(spy_store, tmp_path: Path):
    data_dir, bars = spy_store
    db = BarDatabase(tmp_path / "db")
    ingest_store(db, data_dir, "SPY")
    before = _files(db)
    changed = pd.concat([bars.iloc[-30:], _day_bars(bars, "2025-01-13", 100.0)])
    changed.iloc[3, changed.columns.get_loc("close")] += 0.5
    changed.iloc[3, changed.columns.get_loc("high")] += 0.5
    path = tmp_path / "fix.csv"
    write_csv_atomic(changed, path)
    stamp = changed.index[3].isoformat(sep=" ")
    with pytest.raises(
        DatabaseError,
        match=rf"fix\.csv:5: SPY 15m bar {stamp} is already "
        r"stored with high=.*nothing was stored",
    ) as info:
        ingest_files(db, [path], "SPY")
    assert "\n" not in str(info.value)
    assert _files(db) == before  # the 2025-01-13 bars of the same call were not added either
    assert len(db.load_bars("SPY")) == len(bars)


def test_validation_errors_refuse_the_ingest_naming_file_line_and_field(
    tmp_path: Path, make_bars: MakeBars
):
    db = BarDatabase(tmp_path / "db")
    path = tmp_path / "bad.csv"
    write_csv_atomic(make_bars("2024-03-26"), path)
    lines = path.read_text().splitlines()
    cells = lines[4].split(",")
    cells[4] = "abc"
    lines[4] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestRefused, match=r"bad\.csv:5: bad_number \[close=abc\]") as info:
        ingest_files(db, [path], "SPY")
    assert "nothing stored" in str(info.value) and "\n" not in str(info.value)
    assert not db.bars_dir.exists()


def test_a_partition_damaged_behind_its_back_is_a_one_line_error(spy_store, tmp_path: Path):
    data_dir, _ = spy_store
    db = BarDatabase(tmp_path / "db")
    ingest_store(db, data_dir, "SPY")
    part = db.partition_path("SPY", "15m", 2025)
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseError, match=r"year=2025/bars\.parquet: not a readable parquet"):
        db.load_bars("SPY", start="2025-01-02")
    assert part.read_bytes() == data[: len(data) // 2]  # never modified
    # A year that does not touch the damaged file still reads.
    assert len(db.load_bars("SPY", end="2024-12-31")) > 0
    pd.DataFrame({"x": [1]}).to_parquet(part)
    with pytest.raises(DatabaseError, match=r"not the database's"):
        db.load_bars("SPY")


def test_bad_names_are_refused(tmp_path: Path):
    db = BarDatabase(tmp_path / "db")
    with pytest.raises(DatabaseError, match=r"symbol '\.\./SPY' is not a ticker"):
        db.load_bars("../SPY")
    with pytest.raises(DatabaseError, match=r"interval '7m' is unknown"):
        db.load_bars("SPY", "7m")
    with pytest.raises(DatabaseError, match=r"no SPY 15m bars; it holds nothing"):
        db.load_bars("SPY")


def test_cli_ingest_list_export_round_trip(spy_store, tmp_path: Path, capsys):
    data_dir, bars = spy_store
    db = tmp_path / "db"
    assert main(["--db", str(db), "ingest", "--store", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"SPY 15m: {len(bars)} bar(s) added" in out and "VIX 15m:" in out
    assert main(["--db", str(db), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(h["symbol"], h["bars"]) for h in listed] == [("SPY", len(bars)), ("VIX", len(bars))]
    assert main(["--db", str(db), "list"]) == 0
    assert "missing sessions" in capsys.readouterr().out
    out_csv = tmp_path / "range.csv"
    args = [
        "--db",
        str(db),
        "export",
        "--symbol",
        "SPY",
        "--start",
        "2024-12-02",
        "--end",
        "2024-12-06",
    ]
    assert main([*args, "--out", str(out_csv)]) == 0
    assert main([*args, "--out", str(out_csv)]) == 1  # never overwrites
    assert "exists; exports never overwrite" in capsys.readouterr().err
    store = tmp_path / "exported"
    assert main([*args, "--store", str(store)]) == 0
    want = load_bars(
        "SPY", start="2024-12-02", end="2024-12-06", data_dir=data_dir, use_cache=False
    )
    pd.testing.assert_frame_equal(load_bars("SPY", data_dir=store, use_cache=False), want)
    out_pq = tmp_path / "range.parquet"
    assert main([*args, "--out", str(out_pq)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out_pq), want, check_freq=False)


def test_cli_refusals_are_one_line_and_exit_1_or_2(tmp_path: Path, capsys, make_bars: MakeBars):
    db = tmp_path / "db"
    path = tmp_path / "export.csv"
    bars = make_bars("2024-03-26")
    write_csv_atomic(bars, path)
    with pytest.raises(SystemExit) as code:
        main(["--db", str(db), "ingest", str(path)])
    assert code.value.code == 2
    assert "--symbol is required" in capsys.readouterr().err
    text = path.read_text().replace(",", ";", 1)
    path.write_text(
        text.replace("timestamp;open", "timestamp,open").replace(",close,", ",closing,")
    )
    assert main(["--db", str(db), "ingest", str(path), "--symbol", "SPY"]) == 1
    err = capsys.readouterr()
    assert "missing_column [close=closing]" in err.err and "Traceback" not in err.err + err.out
    assert (
        main(["--db", str(db), "export", "--symbol", "SPY", "--out", str(tmp_path / "x.csv")]) == 1
    )
    assert "no SPY 15m bars" in capsys.readouterr().err


def test_converter_feeds_the_database_with_what_it_writes_to_the_store(
    tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars, load_script, capsys
):
    convert = load_script("convert_newdata_intraday")
    fine = make_bars("2024-10-01", "2024-10-03", interval="5m")
    src = tmp_path / "SPY_5m.csv"
    write_csv_atomic(fine, src)
    db = tmp_path / "db"
    argv = [str(src), "--data-dir", str(tmp_data_dir), "--input-interval", "5m"]
    argv += ["--database", str(db)]
    assert convert.main(argv) == 0
    assert "database" in capsys.readouterr().out
    stored = BarDatabase(db).load_bars("SPY")
    pd.testing.assert_frame_equal(stored, load_bars("SPY", data_dir=tmp_data_dir, use_cache=False))
    assert len(stored) == 3 * 26
    assert convert.main(argv) == 0  # the same file again: identical, nothing added
    assert "0 bar(s) added, 78 already stored" in capsys.readouterr().out
    # The same bars as 15m input but one value changed: the store keeps the old file
    # (no --overwrite) and the database refuses; the run fails.
    coarse = stored.copy()
    coarse.iloc[0, coarse.columns.get_loc("volume")] += 1
    other = tmp_path / "SPY_15m.csv"
    write_csv_atomic(coarse, other)
    assert convert.main([str(other), "--data-dir", str(tmp_data_dir), "--database", str(db)]) == 1
    out = capsys.readouterr().out
    assert "refused" in out and "volume=" in out and "nothing was stored" in out
    pd.testing.assert_frame_equal(BarDatabase(db).load_bars("SPY"), stored)


def test_ingest_fuzz_every_mutated_file_is_stored_or_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # The loader fuzz's mutations (byte flips, encodings, headers, offsets, years, ...)
    # through the database's ingest: stored, or refused with one line naming the file;
    # a bar that conflicts with an earlier accepted file is refused the same way.
    import random

    from test_loader_fuzz import base_csv, mutate

    rng = random.Random(20261202)
    text = base_csv()
    db = BarDatabase(tmp_path / "db")
    counts = {"accepted": 0, "refused": 0, "conflicts": 0}
    for n in range(120):
        path = tmp_path / f"m{n}.csv"
        path.write_bytes(mutate(rng, text))
        before = _files(db)
        try:
            ingest_files(db, [path], "SPY")
        except IngestRefused as exc:
            counts["refused"] += 1
            assert str(path) in str(exc) and "\n" not in str(exc), (n, str(exc))
            assert _files(db) == before
        except DatabaseError as exc:
            counts["conflicts"] += 1
            assert "already stored" in str(exc) and "\n" not in str(exc), (n, str(exc))
            assert _files(db) == before
        else:
            counts["accepted"] += 1
    with capsys.disabled():
        print(f"\ningest fuzz (seed 20261202, 120 files): {counts}, tracebacks 0")
    assert counts["refused"] > 30 and counts["accepted"] > 0
    stored = db.load_bars("SPY")
    assert stored.index.is_unique and stored.notna().all().all()


def test_trainer_reads_data_database_like_the_store(tmp_path: Path):
    # The same bars from a CSV store and from the database train the same model.
    import yaml

    from backend.data_download.synthetic_market import (
        SyntheticMarketConfig,
        write_synthetic_market,
    )
    from backend.training.train import main as train_main

    store = tmp_path / "data"
    write_synthetic_market(
        store, SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=24, seed=7)
    )
    db = BarDatabase(tmp_path / "db")
    for symbol in ("SPY", "VIX"):
        ingest_store(db, store, symbol)
    training = {
        "net_arch": [16], "total_timesteps": 120, "batch_size": 16, "buffer_size": 1_000,
        "learning_starts": 40, "eval_every_steps": 60, "device": "cpu", "seed": 3,
        "tensorboard_log": None,
    }  # fmt: skip
    base = {"training": training, "encoder": {"name": "manual"}, "env": {"episode_sessions": 2}}
    runs = {}
    for name, data in (("store", {"data_dir": str(store)}), ("db", {"database": str(db.root)})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, "data": data}))
        out = tmp_path / f"out_{name}"
        argv = ["--config", str(path), "--output", str(out), "--no-progress"]
        assert train_main([*argv, "--val-fraction", "0.15"]) == 0
        (run_dir,) = out.iterdir()
        runs[name] = run_dir
    metrics = {k: json.loads((v / "metrics.json").read_text()) for k, v in runs.items()}
    for key in ("best_val_sharpe", "steps_done"):
        assert metrics["db"][key] == metrics["store"][key]
    normalizers = {k: sorted(v.glob("normalizer_SPY*")) for k, v in runs.items()}
    assert [p.read_bytes() for p in normalizers["db"]] == [
        p.read_bytes() for p in normalizers["store"]
    ]
    with pytest.raises(Exception, match=r"data_dir .* or database, not both"):
        from backend.data_download.data_config import DataConfig

        DataConfig(data_dir=str(store), database=str(db.root))


def test_main_job_with_a_database_is_not_the_ground_truth_comparison(tmp_path: Path, capsys):
    import yaml

    from backend.scripts import run_walk_forward

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"database": str(tmp_path / "db")}}))
    assert run_walk_forward.main(["--config", str(path), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert f"database: {tmp_path / 'db'}" in out
    assert "ground-truth comparison" not in out
