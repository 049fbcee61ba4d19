import numpy as np
import pandas as pd
import pytest

from backend.training.walk_forward import (
    InsufficientDataError,
    WalkForwardConfig,
    generate_windows,
    window_table,
)

GAP = 104
"""Four full sessions: what the window arithmetic below is worked out for."""


def _bars(n: int, half_days: tuple[int, ...] = ()) -> np.ndarray:
    bars = np.full(n, 26)
    bars[list(half_days)] = 14
    return bars


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("gap_bars", [0, 26, 104, 131])
@pytest.mark.parametrize("half_days", [(), (3, 60, 61, 130, 199)])
def test_windows_respect_gaps_and_never_reach_past_data(anchored, gap_bars, half_days):
    bars = _bars(260, half_days)
    cfg = WalkForwardConfig(
        train_sessions=80, test_sessions=15, gap_bars=gap_bars, anchored=anchored
    )
    windows = generate_windows(bars, cfg)
    assert windows
    for w in windows:
        assert 0 <= w.fit.start < w.fit.stop <= w.val.start < w.val.stop <= w.test.start
        assert w.test.stop <= len(bars)
        assert len(w.test) == cfg.test_sessions
        assert len(w.val) == cfg.val_sessions
        # purged sessions hold at least gap_bars bars, counted on the real sessions
        assert bars[w.fit.stop : w.val.start].sum() >= gap_bars
        assert bars[w.val.stop : w.test.start].sum() >= gap_bars
        # and the gap is the smallest that does so (no needless data loss)
        if w.val.start > w.fit.stop:
            assert bars[w.fit.stop + 1 : w.val.start].sum() < gap_bars
        if w.test.start > w.val.stop:
            assert bars[w.val.stop : w.test.start - 1].sum() < gap_bars
        if anchored:
            assert w.fit.start == 0
        assert len(w.train) == w.val.stop - w.fit.start


@pytest.mark.parametrize("half_days", [(), (120, 150, 151, 300)])
def test_test_ranges_tile_without_overlap_or_holes(half_days):
    bars = _bars(400, half_days)
    windows = generate_windows(
        bars, WalkForwardConfig(train_sessions=100, test_sessions=25, gap_bars=GAP)
    )
    tests = [set(range(w.test.start, w.test.stop)) for w in windows]
    for a, b in zip(tests, tests[1:], strict=False):
        assert not a & b
        assert max(a) + 1 == min(b)
    # no test session is ever inside the same window's training range
    for w in windows:
        assert not set(range(w.fit.start, w.val.stop)) & set(range(w.test.start, w.test.stop))


def test_windows_use_the_data_up_to_the_end():
    bars = _bars(400)
    cfg = WalkForwardConfig(train_sessions=100, test_sessions=25, gap_bars=GAP)
    windows = generate_windows(bars, cfg)
    assert len(bars) - windows[-1].test.stop < cfg.test_sessions
    # the first window starts as early as the training range allows
    assert windows[0].fit.start == 0


def test_validation_is_last_five_percent_of_training():
    cfg = WalkForwardConfig(train_sessions=200, test_sessions=20, gap_bars=52)
    (w, *_) = generate_windows(_bars(300), cfg)
    assert len(w.val) == 10  # ceil(0.05 * 200)
    assert w.val.stop == w.fit.start + cfg.train_sessions


def test_too_short_data_raises_clear_error():
    with pytest.raises(InsufficientDataError, match=r"data hold 50 sessions .* needs at least 140"):
        generate_windows(
            _bars(50), WalkForwardConfig(train_sessions=120, test_sessions=20, gap_bars=GAP)
        )


def test_gap_too_large_for_training_range_raises():
    cfg = WalkForwardConfig(train_sessions=5, test_sessions=2, gap_bars=26 * 5)
    with pytest.raises(InsufficientDataError, match="leaves no session to fit on"):
        generate_windows(_bars(100), cfg)


def test_max_windows_spreads_over_the_range_and_renumbers():
    cfg_all = WalkForwardConfig(train_sessions=60, test_sessions=10, gap_bars=GAP)
    every = generate_windows(_bars(200), cfg_all)
    assert len(every) == 13
    three = generate_windows(_bars(200), cfg_all.replace(max_windows=3))
    assert [w.index for w in three] == [0, 1, 2]
    # first, middle and last: the budget tests the whole range, not its most recent end
    assert [w.test for w in three] == [every[0].test, every[6].test, every[12].test]
    assert generate_windows(_bars(200), cfg_all.replace(max_windows=50)) == every


def test_default_windows_tile_the_whole_range_after_the_first_training_range():
    every = generate_windows(
        _bars(200), WalkForwardConfig(train_sessions=60, test_sessions=10, gap_bars=GAP)
    )
    tested = [s for w in every for s in range(w.test.start, w.test.stop)]
    assert tested == list(range(every[0].test.start, every[-1].test.stop))
    assert 200 - every[-1].test.stop < 10  # only a remainder shorter than one test range


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_sessions": 1}, "train_sessions"),
        ({"test_sessions": 0}, "test_sessions"),
        ({"val_fraction": 0.6}, "val_fraction"),
        ({"gap_bars": -1}, "gap_bars"),
        ({"step_sessions": 0}, "step_sessions"),
        ({"windows": 0}, "windows"),
        ({"seeds": 0}, "seeds"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=rf"^WalkForwardConfig\.{match}: "):
        WalkForwardConfig(**kwargs)


def test_windows_need_a_resolved_gap():
    # gap_bars=None means "derive it from the features" (ExperimentConfig does); cutting
    # windows without resolving it would silently drop the purge rule.
    with pytest.raises(ValueError, match="walk_forward.gap_bars is unresolved"):
        generate_windows(_bars(200), WalkForwardConfig(train_sessions=60, test_sessions=10))


def test_window_table_reports_dates_and_bars():
    bars = _bars(200, half_days=(150,))
    days = pd.bdate_range("2024-01-02", periods=200)
    windows = generate_windows(
        bars, WalkForwardConfig(train_sessions=100, test_sessions=30, gap_bars=GAP)
    )
    table = window_table(windows, days, bars)
    first = table.loc[0]
    assert first["fit_start"] == days[0].date()
    assert first["fit_bars"] == bars[windows[0].fit.start : windows[0].fit.stop].sum()
    assert first["test_sessions"] == 30
    assert (table["test_start"] > table["val_end"]).all()
    assert (table["val_start"] > table["fit_end"]).all()


def test_a_window_count_tiles_everything_after_the_first_training_range():
    bars = _bars(200)
    tiled = generate_windows(
        bars, WalkForwardConfig(train_sessions=60, test_sessions=1, windows=3, gap_bars=GAP)
    )
    assert len(tiled) == 3
    tested = [s for w in tiled for s in range(w.test.start, w.test.stop)]
    assert tested == list(range(tiled[0].test.start, 200))  # nothing dropped at the end
    lengths = [len(w.test) for w in tiled]
    assert max(lengths) - min(lengths) < 3
    one = generate_windows(
        bars, WalkForwardConfig(train_sessions=60, test_sessions=1, windows=1, gap_bars=GAP)
    )
    assert one[0].test.stop == 200 and one[0].test.start == tiled[0].test.start
    with pytest.raises(InsufficientDataError, match="cannot hold 500 test windows"):
        generate_windows(bars, WalkForwardConfig(train_sessions=60, windows=500, gap_bars=GAP))
