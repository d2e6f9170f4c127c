"""The held-out bench's rule for cutting windows (``bench/bench_heldout.py``): no download."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tests.support.repository import bench_script


@pytest.fixture(scope="module")
def heldout():
    return bench_script("bench_heldout")


def _hourly(start: str, days: int) -> pd.Series:
    index = pd.date_range(start, periods=days * 24 + 1, freq="h")
    return pd.Series(np.arange(index.size, dtype=float), index=index)


def test_windows_start_on_mondays_spread_over_the_series(heldout) -> None:
    series = _hourly("2020-01-01 05:00", 365)  # a Wednesday
    cut = heldout.windows(series, 3, 42)
    assert len(cut) == 3
    for window in cut:
        assert window.index[0].weekday() == 0 and window.index[0].hour == 0
        assert window.index[-1] - window.index[0] == pd.Timedelta(days=42)
    assert cut[0].index[0] == pd.Timestamp("2020-01-06")
    # Spread: the last ends within the series and a week or less from its end.
    assert pd.Timedelta(0) <= series.index[-1] - cut[-1].index[-1] <= pd.Timedelta(days=7)
    gaps = [b.index[0] - a.index[-1] for a, b in itertools.pairwise(cut)]
    assert all(gap > pd.Timedelta(0) for gap in gaps)


def test_a_window_missing_too_much_moves_on_a_week(heldout) -> None:
    series = _hourly("2020-01-06", 120)
    series["2020-01-08":"2020-01-09"] = np.nan  # two days of 42: about 5% missing
    (window,) = heldout.windows(series, 1, 42)
    assert window.index[0] == pd.Timestamp("2020-01-13")
    assert window.isna().mean() <= heldout.MOST_MISSING


def test_windows_never_overlap_and_a_short_series_gives_fewer(heldout) -> None:
    series = _hourly("2020-01-06", 100)
    cut = heldout.windows(series, 3, 42)
    # The second's start (3 February) falls inside the first, which ends on 17 February: it
    # moves on to the first Monday after. The third finds no room before the end.
    assert [w.index[0] for w in cut] == [pd.Timestamp("2020-01-06"), pd.Timestamp("2020-02-24")]
    assert len(heldout.windows(_hourly("2020-01-06", 60), 3, 42)) == 1
    assert heldout.windows(series, 1, 200) == []
