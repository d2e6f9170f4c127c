"""Calibration: bands from the model's own errors, honest where the record allows."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from controller.operator.fitting import fit_error
from forecasts import create
from forecasts.base import (
    MAX_BINS,
    MAX_ROW_ERRORS,
    MIN_BIN_SAMPLES,
    Calibration,
    Forecast,
    _sorted_row,
    calibrating_origins,
    origin_means,
    origins_matrix,
    scale_floor,
)
from forecasts.models.smoothing import ForecastRecord, calibrate, merge_records
from forecasts.series import LoadSeries
from tests.forecast_series import seasonal, trend


def _calibration(errors: list[float]) -> Calibration:
    actual = 100 * (1 + np.asarray(errors))[:, None]
    predicted = np.full_like(actual, 100.0)
    return Calibration.from_forecasts(actual, predicted, scale_floor=0.0)


@pytest.mark.parametrize(
    ("q", "expected"), [pytest.param(0.5, 0.0, id="median"), pytest.param(1 - 1e-9, 0.2, id="top")]
)
def test_calibration_quantile_of_level_scaled_errors(q: float, expected: float) -> None:
    """The quantile is taken over errors relative to the forecast level."""
    calibration = _calibration([-0.2, -0.1, 0.0, 0.1, 0.2])
    assert calibration.quantile(q, 1)[0] == pytest.approx(expected, abs=1e-6)


def test_upper_band_scales_with_the_forecast_level() -> None:
    """The same relative error widens the band in proportion to the point."""
    calibration = _calibration([0.1] * 10)
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0, 200.0]), calibration)
    np.testing.assert_allclose(forecast.upper(0.95), [110.0, 220.0])


@pytest.mark.parametrize("q", [pytest.param(0.0, id="zero"), pytest.param(1.0, id="one")])
def test_upper_refuses_a_quantile_outside_the_open_unit_interval(q: float) -> None:
    """A 0 or 1 quantile band is no band of finite errors: upper refuses it."""
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0]), _calibration([0.1] * 10))
    with pytest.raises(ValueError, match="quantile"):
        forecast.upper(q)


def test_upper_never_below_point_even_with_negative_errors() -> None:
    """A model that always over-forecasts still gets an upper band at or above its point."""
    calibration = _calibration([-0.3] * 10)
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0]), calibration)
    assert forecast.upper(0.95)[0] >= 100.0


@pytest.mark.parametrize(
    ("q", "expected"),
    [pytest.param(0.25, [0.0, 70.0], id="low"), pytest.param(0.95, [0.0, 100.0], id="high")],
)
def test_a_band_at_zero_load_stays_at_zero(q: float, expected: list[float]) -> None:
    """Errors of -30 % put a low quantile below the point, a high one on it; at no load and
    no floor the band is zero either way, never lifted above it."""
    forecast = Forecast("m", 0.0, 300.0, np.array([0.0, 100.0]), _calibration([-0.3] * 10))
    np.testing.assert_allclose(forecast.upper(q), expected)


def test_exceedance_is_the_share_of_past_errors_above_the_threshold() -> None:
    """P(load > x) counts the level-scaled errors that would have carried the point past x."""
    calibration = _calibration([-0.2, -0.1, 0.0, 0.1, 0.2])
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0, 200.0]), calibration)
    probabilities = forecast.exceedance(np.array([95.0, 115.0, 250.0]), np.array([0, 1]))
    np.testing.assert_allclose(probabilities, [[0.6, 1.0], [0.2, 1.0], [0.0, 0.0]])


def test_exceedance_agrees_with_the_upper_quantile() -> None:
    """Just below the q band the load is exceeded with probability at least 1 - q; above, less."""
    rng = np.random.default_rng(7)
    calibration = _calibration(list(rng.normal(0.0, 0.1, 2000)))
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0]), calibration)
    band = forecast.upper(0.9)[0]
    below, above = forecast.exceedance(np.array([band - 0.5, band + 0.5]), np.array([0]))[:, 0]
    assert below >= 0.1 > above


def test_calibrate_replaces_in_sample_rows_by_the_honest_record() -> None:
    """Origins before the estimation use the recorded honest forecast, not the in-sample one."""
    values = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    origins = np.array([0, 1, 2, 3])
    in_sample = np.full((4, 1), 10.0)  # perfect in hindsight
    record = ForecastRecord(np.array([100.0, 200.0]), np.array([[5.0], [5.0]]))
    calibration, kept = calibrate(
        end=400.0,
        step=100.0,
        values=values,
        origins=origins,
        predicted=in_sample,
        floor=1.0,
        estimated_until=250.0,
        record=record,
    )
    errors = calibration.errors[0]
    assert np.count_nonzero(errors > 0) == 2  # the two honest rows under-forecast
    np.testing.assert_allclose(kept.origins, [100.0, 200.0, 300.0])


def test_merge_records_prefers_the_newer_rows() -> None:
    """Where two records overlap, the newer one's rows win."""
    older = ForecastRecord(np.array([0.0, 1.0, 2.0]), np.array([[1.0], [1.0], [1.0]]))
    newer = ForecastRecord(np.array([1.0, 2.0, 3.0]), np.array([[2.0], [2.0], [2.0]]))
    merged = merge_records(older, newer)
    np.testing.assert_allclose(merged.origins, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(merged.predicted[:, 0], [1.0, 2.0, 2.0, 2.0])


def test_each_sample_inside_a_bucket_counts_as_an_error() -> None:
    """Capacity serves the load sample by sample: with the samples' deviations from their
    bucket's mean, a forecast that gets every mean right still has a band as wide as they are,
    and bins count forecasts, not samples."""
    actual = np.full((40, 1), 100.0)
    predicted = actual.copy()
    within = np.broadcast_to([-20.0, 0.0, 20.0], (40, 1, 3))
    means_only = Calibration.from_forecasts(actual, predicted, scale_floor=0.0)
    per_sample = Calibration.from_forecasts(actual, predicted, scale_floor=0.0, within=within)
    assert means_only.quantile(1 - 1e-9, 1)[0] == pytest.approx(0.0)
    assert per_sample.quantile(1 - 1e-9, 1)[0] == pytest.approx(0.2)
    assert per_sample.samples == 120
    assert not per_sample.bin_errors  # 40 forecasts are one bin, however many samples


def test_missing_samples_inside_a_bucket_are_left_out() -> None:
    """A NaN deviation (a sample Prometheus did not return) adds no error."""
    actual = np.full((10, 1), 100.0)
    within = np.broadcast_to([10.0, np.nan], (10, 1, 2))
    calibration = Calibration.from_forecasts(actual, actual.copy(), scale_floor=0.0, within=within)
    assert calibration.samples == 10
    np.testing.assert_allclose(calibration.errors[0], 0.1)


def test_long_rows_are_thinned_to_order_statistics_that_keep_the_distribution() -> None:
    """Samples per bucket multiply the errors kept: a row beyond MAX_ROW_ERRORS keeps that many
    order statistics, and its quantiles and exceedances move by at most one of its ranks."""
    rng = np.random.default_rng(3)
    forecasts, per_bucket = 3000, 8  # 24,000 errors at each lead, about six times the cap
    actual = np.full((forecasts, 2), 100.0)
    within = rng.standard_t(3, size=(forecasts, 2, per_bucket)) * 10.0
    calibration = Calibration.from_forecasts(actual, actual.copy(), scale_floor=0.0, within=within)
    assert calibration.samples == MAX_ROW_ERRORS
    assert all(row.size <= MAX_ROW_ERRORS for rows in calibration.bin_errors for row in rows)
    exact = np.sort(within[:, 0, :].reshape(-1) / 100.0)
    for q in (0.5, 0.9, 0.95, 0.99):
        got = calibration.quantile(q, 1)[0]
        rank = np.searchsorted(exact, got) / exact.size
        assert abs(rank - q) <= 1.5 / MAX_ROW_ERRORS
    thresholds = 100.0 + np.array([5.0, 15.0, 40.0])
    pooled = Calibration(calibration.errors, 0.0)
    expected = 1.0 - np.searchsorted(exact, (thresholds - 100.0) / 100.0, side="right") / exact.size
    got = pooled.exceedance(np.array([100.0]), thresholds, np.array([0]))[:, 0]
    np.testing.assert_allclose(got, expected, atol=1.5 / MAX_ROW_ERRORS)


def test_the_reported_error_is_the_point_s_against_each_bucket_mean() -> None:
    """The status's backtest error measures the point forecast, not the spread inside buckets
    that widens the band: a pinned model and ``auto`` report comparable numbers."""
    cycle = seasonal(4, seed=5)
    swing = 40.0 * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    minutes = LoadSeries(cycle.start, 60.0, (cycle.values[:, None] + swing[None, :]).reshape(-1))
    by_minute = create("holt-winters", fit_step=300.0).fit(minutes)
    by_mean = create("holt-winters", fit_step=300.0).fit(minutes.aggregate(300.0))
    assert by_minute.calibration.samples == min(5 * by_mean.calibration.samples, MAX_ROW_ERRORS)
    assert fit_error(by_minute) == pytest.approx(fit_error(by_mean), rel=1e-9)


@pytest.mark.parametrize("model", ["mstl", "holt-winters", "seasonal-naive"])
def test_a_forecast_after_missing_samples_is_banded_from_its_last_observation(model: str) -> None:
    """Samples missing at the end of the history (a metrics outage): the forecast's first step
    is as far from what the model saw as the gap is long, and its band is that lead's."""
    history = trend(6, seed=3)
    fitted = create(model, fit_step=300.0, max_horizon=3 * 3600.0).fit(history)
    later = trend(7, seed=3)  # one more day of the same series
    seen = LoadSeries(later.start, later.step, later.values.copy())
    gap = 12  # an hour of 5-minute buckets
    seen.values[-gap:] = np.nan
    full = fitted.forecast(later, horizon=1800.0)
    blind = fitted.forecast(seen, horizon=1800.0)
    assert blind.origin == full.origin  # the same steps ahead of the same now
    spread = fitted.calibration.quantile(0.95, 24)
    band = blind.calibration.quantile(0.95, 6)
    assert np.array_equal(band, spread[gap : gap + 6])
    assert np.array_equal(full.calibration.quantile(0.95, 6), spread[:6])
    assert blind.calibration.lead_steps == fitted.calibration.lead_steps - gap


def test_a_gap_longer_than_every_lead_keeps_the_last_row() -> None:
    """Beyond the calibrated leads, the farthest one's errors stand for the rest."""
    calibration = Calibration.from_forecasts(
        np.arange(12.0).reshape(4, 3) + 1.0, np.ones((4, 3)), scale_floor=0.0
    )
    assert calibration.after(50).errors == calibration.errors[-1:]
    assert calibration.after(0) is calibration


def _binned_calibration(seed: int) -> Calibration:
    rng = np.random.default_rng(seed)
    forecasts, leads = 3000, 6
    predicted = rng.gamma(3.0, 40.0, (forecasts, leads))
    actual = predicted * rng.lognormal(0.0, 0.3, (forecasts, leads))
    within = rng.normal(0.0, 4.0, (forecasts, leads, 3))
    actual[rng.random(actual.shape) < 0.02] = np.nan
    return Calibration.from_forecasts(actual, predicted, scale_floor=5.0, within=within)


def _bin_weights(cal: Calibration, level: float) -> list[tuple[int, float]]:
    """The bins a level reads and their weights, worked out from the bins' middle levels."""
    middles = cal.bin_levels.tolist()
    if level <= middles[0]:
        return [(0, 1.0)]
    if level >= middles[-1]:
        return [(len(middles) - 1, 1.0)]
    b = max(i for i, m in enumerate(middles) if m <= level)
    w = (level - middles[b]) / (middles[b + 1] - middles[b])
    return [(b, 1.0 - w), (b + 1, w)]


@pytest.mark.parametrize("seed", range(4))
def test_each_step_s_spread_is_its_bins_and_lead_s_quantile_whatever_was_read_before(
    seed: int,
) -> None:
    """The bins' quantiles are computed as steps first read them: every value must be the
    quantiles of its own bins' rows at its lead, weighted by its level, whichever paths were
    read before it."""
    cal = _binned_calibration(seed)
    assert len(cal.bin_errors) > 1
    rng = np.random.default_rng(100 + seed)
    low, high = cal.bin_edges[0] / 2, cal.bin_edges[-1] * 2
    for _ in range(8):
        point = rng.uniform(low, high, int(rng.integers(1, 10)))
        for q in (0.95, 0.8):
            expected = [
                sum(
                    w * float(np.quantile(cal.bin_errors[b][min(i, cal.lead_steps - 1)], q))
                    for b, w in _bin_weights(cal, level)
                )
                for i, level in enumerate(point.tolist())
            ]
            np.testing.assert_allclose(cal.spread(q, point), expected, rtol=1e-12, atol=1e-12)


def _two_regimes() -> Calibration:
    """Forecasts under 100 err by up to +-150% (a noisy night), those above by +-10%."""
    rng = np.random.default_rng(5)
    predicted = rng.uniform(20.0, 180.0, (4000, 2))
    noise = np.where(predicted < 100.0, 1.5, 0.1)
    actual = predicted * (1.0 + rng.uniform(-noise, noise))
    return Calibration.from_forecasts(actual, predicted, scale_floor=0.0)


def test_a_band_does_not_jump_where_one_bin_ends_and_the_next_begins() -> None:
    """A point a hair higher is a band a hair wider or narrower, across every bin edge: with
    each bin read alone, a point just under the noisy bins' edge had a band over twice as wide
    as one just over it."""
    cal = _two_regimes()
    assert len(cal.bin_errors) == MAX_BINS
    thresholds, first = np.array([1.2, 2.0]), np.array([0])
    for edge in cal.bin_edges.tolist():
        under, over = (
            Forecast("m", 0.0, 300.0, np.array([level]), cal)
            for level in (edge - 1e-6, edge + 1e-6)
        )
        assert abs(over.upper(0.95)[0] - under.upper(0.95)[0]) < 1e-3
        np.testing.assert_allclose(
            under.exceedance(thresholds * edge, first),
            over.exceedance(thresholds * edge, first),
            atol=1e-3,
        )


def test_a_level_at_a_bin_s_middle_or_beyond_the_last_reads_that_bin_alone() -> None:
    """Between the bins' middle levels the band is a blend; at a middle, or outside the first
    and the last, it is that bin's own quantile, as each bin alone gave it."""
    cal = _two_regimes()
    middles = cal.bin_levels.tolist()
    assert middles == sorted(middles) and len(middles) == MAX_BINS
    for b, level in [*enumerate(middles), (0, middles[0] / 2), (MAX_BINS - 1, middles[-1] * 2)]:
        own = float(np.quantile(cal.bin_errors[b][0], 0.95))
        assert cal.spread(0.95, np.array([level])).tolist() == [own]
        row = cal.bin_errors[b][0]
        expected = 1.0 - np.searchsorted(row, 0.05, side="right") / row.size
        got = cal.exceedance(np.array([level]), np.array([level * 1.05]), np.array([0]))
        assert got.tolist() == [[expected]]


def test_bins_given_without_middles_are_each_read_alone() -> None:
    """A calibration built by hand with bins but no middle levels reads each level's own bin,
    as every calibration did before the blend: no weight on the bin beside it."""
    low, high = np.array([-0.5, 0.0, 0.5]), np.array([-0.1, 0.0, 0.1])
    cal = Calibration((np.array([-0.5, 0.0, 0.1]),), 0.0, np.array([100.0]), ((low,), (high,)))
    assert cal.spread(1 / 3, np.array([99.0, 100.0])).tolist() == [
        float(np.quantile(low, 1 / 3)),
        float(np.quantile(high, 1 / 3)),
    ]
    got = cal.exceedance(np.array([99.0, 100.0]), np.array([120.0]), np.array([0, 1]))
    np.testing.assert_allclose(got, [[1 / 3, 0.0]])


def test_a_calibration_read_later_keeps_its_bins_middles() -> None:
    """A forecast advanced over an outage reads later rows, from the same bins and middles."""
    cal = _two_regimes()
    later = cal.after(1)
    assert later.bin_levels.tobytes() == cal.bin_levels.tobytes()
    point = np.array([90.0, 110.0])
    assert later.spread(0.95, point).tolist() == [
        cal.spread(0.95, np.array([90.0, 110.0, 90.0, 110.0]))[i] for i in (2, 3)
    ]


def _rows_one_bin_at_a_time(
    actual: np.ndarray, predicted: np.ndarray, scale_floor: float, within: np.ndarray | None
) -> tuple[list[np.ndarray], np.ndarray, list[list[np.ndarray]]]:
    """The pooled rows, bin edges and binned rows as ``from_forecasts`` built them before it
    took each bin from the lead's finite errors: every lead, every bin, masks of its own."""
    scale = np.maximum(predicted, 0.0) + scale_floor
    if within is None:
        within = np.zeros((*actual.shape, 1))
    counted = np.isfinite(actual) & np.isfinite(scale) & np.isfinite(within).any(axis=2)
    samples = int(counted.sum(axis=0).min()) if counted.size else 0
    bins = max(1, min(MAX_BINS, samples // MIN_BIN_SAMPLES))
    edges, which = np.empty(0), np.zeros(actual.shape, dtype=np.int64)
    if bins > 1:
        edges = np.quantile(predicted[np.isfinite(predicted)], np.arange(1, bins) / bins)
        which = np.searchsorted(edges, predicted, side="right")
    pooled: list[np.ndarray] = []
    binned: list[list[np.ndarray]] = [[] for _ in range(bins)] if bins > 1 else []
    for h in range(actual.shape[1]):
        column = (actual[:, h, None] + within[:, h, :] - predicted[:, h, None]) / scale[:, h, None]
        pooled.append(_sorted_row(column[np.isfinite(column)]))
        for b, lead_rows in enumerate(binned):
            inside = which[:, h] == b
            thick = int(counted[inside, h].sum()) >= MIN_BIN_SAMPLES // 4
            part = column[inside]
            lead_rows.append(_sorted_row(part[np.isfinite(part)]) if thick else pooled[h])
    return pooled, edges, binned


@pytest.mark.parametrize("seed", range(12))
def test_rows_are_those_built_one_bin_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    forecasts = int(rng.choice([50, 700, 1500, 3000]))
    leads = int(rng.integers(1, 8))
    per = [None, 1, 5, 20][seed % 4]
    predicted = rng.gamma(2.0, 50.0, (forecasts, leads))
    actual = predicted * rng.lognormal(0.0, 0.4, predicted.shape)
    actual[rng.random(actual.shape) < 0.05] = np.nan
    # At the first lead the highest forecasts' actuals are missing: the top bins are thin
    # there, and borrow the pooled row.
    actual[predicted[:, 0] > np.quantile(predicted[:, 0], 0.7), 0] = np.nan
    actual[rng.random(actual.shape) < 0.002] = np.inf
    predicted[rng.random(predicted.shape) < 0.01] = np.nan
    within = None
    if per is not None:
        within = rng.normal(0.0, 5.0, (forecasts, leads, per))
        # Some buckets lose a sample, some lose them all.
        within[rng.random(within.shape) < 0.2] = np.nan
        within[rng.random((forecasts, leads)) < 0.1] = np.nan
    cal = Calibration.from_forecasts(actual, predicted, scale_floor=3.0, within=within)
    pooled, edges, binned = _rows_one_bin_at_a_time(actual, predicted, 3.0, within)
    if forecasts >= 3000:
        assert len(binned) == MAX_BINS
        assert binned[-1][0] is pooled[0]
        assert leads == 1 or binned[-1][1] is not pooled[1]
    assert [r.tobytes() for r in cal.errors] == [r.tobytes() for r in pooled]
    assert cal.bin_edges.tobytes() == edges.tobytes()
    assert [[r.tobytes() for r in rows] for rows in cal.bin_errors] == [
        [r.tobytes() for r in rows] for rows in binned
    ]


def _binned_errors(seed: int, forecasts: int, per: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    predicted = rng.gamma(2.0, 50.0, (forecasts, 6))
    actual = predicted * rng.lognormal(0.0, 0.4, predicted.shape)
    actual[rng.random(actual.shape) < 0.05] = np.nan
    within = rng.normal(0.0, 5.0, (forecasts, 6, per))
    within[rng.random(within.shape) < 0.1] = np.nan
    return actual, predicted, within


@pytest.mark.parametrize(("forecasts", "per"), [(3000, 1), (3000, 5), (1700, 10)])
def test_rows_sorted_when_read_are_those_sorted_at_once(
    forecasts: int, per: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Up to LAZY_ROW_ERRORS errors a lead, rows are sorted when first read; past it, at once.
    # Both give the same rows, bands and odds, whichever rows are read first and through
    # whichever slice.
    actual, predicted, within = _binned_errors(forecasts, forecasts, per)
    lazy = Calibration.from_forecasts(actual, predicted, scale_floor=3.0, within=within)
    monkeypatch.setattr("forecasts.base.LAZY_ROW_ERRORS", -1)
    eager = Calibration.from_forecasts(actual, predicted, scale_floor=3.0, within=within)
    assert len(lazy.bin_errors) == MAX_BINS
    point = np.quantile(predicted[:, 0], [0.1, 0.4, 0.6, 0.9, 0.99, 0.5])
    steps = np.arange(point.size)
    thresholds = np.linspace(0.0, 400.0, 9)
    # A forecast advanced over a gap reads the rows through a slice first.
    assert lazy.after(2).spread(0.95, point[:4]).tobytes() == (
        eager.after(2).spread(0.95, point[:4]).tobytes()
    )
    assert lazy.exceedance(point, thresholds, steps).tobytes() == (
        eager.exceedance(point, thresholds, steps).tobytes()
    )
    assert lazy.spread(0.95, point).tobytes() == eager.spread(0.95, point).tobytes()
    assert lazy.quantile(0.95, 6).tobytes() == eager.quantile(0.95, 6).tobytes()
    assert [r.tobytes() for r in lazy.errors] == [r.tobytes() for r in eager.errors]
    assert [[r.tobytes() for r in rows] for rows in lazy.bin_errors] == [
        [r.tobytes() for r in rows] for rows in eager.bin_errors
    ]
    assert lazy.samples == eager.samples


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_calibration_pickles_sorted_at_every_protocol(protocol: int) -> None:
    actual, predicted, within = _binned_errors(5, 2000, 3)
    # The highest forecasts' actuals at the first lead are missing: the top bin borrows the
    # pooled row there, and a copy must share it too.
    actual[predicted[:, 0] > np.quantile(predicted[:, 0], 0.7), 0] = np.nan
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=3.0, within=within)
    calibration.bin_errors[2][1]  # one row read before, the others not
    copy = pickle.loads(pickle.dumps(calibration, protocol=protocol))
    assert [r.tobytes() for r in copy.errors] == [r.tobytes() for r in calibration.errors]
    assert [[r.tobytes() for r in rows] for rows in copy.bin_errors] == [
        [r.tobytes() for r in rows] for rows in calibration.bin_errors
    ]
    thin = [(b, h) for b, rows in enumerate(calibration.bin_errors) for h in range(len(rows))]
    shared = [(b, h) for b, h in thin if calibration.bin_errors[b][h] is calibration.errors[h]]
    assert shared  # a thin bin at the first lead
    assert [(b, h) for b, h in thin if copy.bin_errors[b][h] is copy.errors[h]] == shared


@pytest.mark.parametrize("lazy", [True, False])
def test_a_zero_error_has_one_sign(lazy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # -0.0 and 0.0 are equal, so sorts may order them either way; rows hold only 0.0.
    # An actual of -0.0 with a sample deviation of -0.0, less a forecast of 0.0, is -0.0.
    actual = np.zeros((900, 2))
    actual[::2] = -0.0
    predicted = np.zeros((900, 2))
    predicted[::3] = 1.0
    within = np.full((900, 2, 2), -0.0)
    within[1::2] = 0.5
    if not lazy:
        monkeypatch.setattr("forecasts.base.LAZY_ROW_ERRORS", -1)
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=1.0, within=within)
    assert len(calibration.bin_errors) == 2
    rows = [*calibration.errors, *(r for rows in calibration.bin_errors for r in rows)]
    assert any((row == 0.0).any() for row in rows)
    assert not any(np.signbit(row[row == 0.0]).any() for row in rows)


def test_a_row_read_through_a_slice_is_sorted_for_the_whole() -> None:
    actual, predicted, within = _binned_errors(3, 2000, 2)
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=3.0, within=within)
    later = calibration.after(2)
    row = later.bin_errors[1][0]
    assert np.all(np.diff(row) >= 0)
    assert calibration.bin_errors[1][2] is row
    assert later.errors == calibration.errors[2:]
    assert later.errors != calibration.errors[1:5]


@pytest.mark.parametrize(
    ("known", "own_row"), [(MIN_BIN_SAMPLES // 4, True), (MIN_BIN_SAMPLES // 4 - 1, False)]
)
def test_a_bin_keeps_its_own_row_from_a_quarter_of_the_bin_size_on(
    known: int, own_row: bool
) -> None:
    # 1,000 forecasts, two leads. At the first lead 900 forecasts are low and 100 high; at the
    # second all sit between. The bins' edge falls among the second lead's, so at the first
    # lead the upper bin holds exactly the 100 high forecasts, of which ``known`` have an
    # actual: a quarter of MIN_BIN_SAMPLES is thick enough for a row of its own, one fewer
    # borrows the pooled row.
    forecasts = 1000
    rng = np.random.default_rng(7)
    predicted = np.empty((forecasts, 2))
    predicted[:, 0] = 1.0
    predicted[:100, 0] = 100.0
    predicted[:, 1] = np.linspace(10.0, 20.0, forecasts)
    actual = predicted * rng.lognormal(0.0, 0.3, predicted.shape)
    actual[known:100, 0] = np.nan
    cal = Calibration.from_forecasts(actual, predicted, scale_floor=0.0)
    assert len(cal.bin_errors) == 2
    upper = cal.bin_errors[1][0]
    if own_row:
        assert upper is not cal.errors[0]
        expected = (actual[:100, 0] - predicted[:100, 0]) / predicted[:100, 0]
        assert np.array_equal(upper, np.sort(expected))
    else:
        assert upper is cal.errors[0]
        assert upper.size == forecasts - (100 - known)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        pytest.param(125.0, 0.25, id="on-an-error"),
        pytest.param(124.0, 0.5, id="just-below"),
        pytest.param(100.0, 0.5, id="on-the-point"),
        pytest.param(74.0, 1.0, id="below-every-error"),
        pytest.param(150.0, 0.0, id="on-the-largest"),
    ],
)
def test_exceedance_counts_only_errors_strictly_above_the_threshold(
    threshold: float, expected: float
) -> None:
    """P(load > x) is strict: a past error landing exactly on x did not exceed it."""
    calibration = Calibration((np.array([-0.25, 0.0, 0.25, 0.5]),), 0.0)
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0]), calibration)
    got = forecast.exceedance(np.array([threshold]), np.array([0]))[0, 0]
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("forecasts", "bins"),
    [
        pytest.param(2 * MIN_BIN_SAMPLES - 1, 0, id="one-short-of-two-bins"),
        pytest.param(2 * MIN_BIN_SAMPLES, 2, id="two-bins"),
        pytest.param(3 * MIN_BIN_SAMPLES, 3, id="three-bins"),
        pytest.param((MAX_BINS + 2) * MIN_BIN_SAMPLES, MAX_BINS, id="capped"),
    ],
)
def test_a_bin_is_made_for_every_min_bin_samples_forecasts(forecasts: int, bins: int) -> None:
    """Forecasts split into one level bin per MIN_BIN_SAMPLES of them (none below two bins)."""
    predicted = np.linspace(10.0, 20.0, forecasts)[:, None]
    calibration = Calibration.from_forecasts(predicted * 1.1, predicted, scale_floor=0.0)
    assert len(calibration.bin_errors) == bins
    assert calibration.bin_edges.size == max(bins - 1, 0)


def test_bins_split_forecasts_at_their_level_edges() -> None:
    """A forecast level exactly on a bin's edge goes to the bin above it when calibrating:
    the low half's errors are -10 %, the high half's +10 %, and the bins' middles are 10 and
    20. A level at or under the low middle reads the low bin, one at or over the high middle
    the high bin, and one between reads both, weighted by its distance to each."""
    halves = [MIN_BIN_SAMPLES - 1, MIN_BIN_SAMPLES + 1]
    predicted = np.repeat([10.0, 20.0], halves)[:, None]
    actual = np.where(predicted < 15.0, 0.9, 1.1) * predicted
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=0.0)
    assert calibration.bin_edges.tolist() == [20.0]  # the median level: 20 is on the edge
    assert calibration.bin_levels.tolist() == [10.0, 20.0]
    low = Forecast("m", 0.0, 300.0, np.array([5.0, 10.0]), calibration)
    high = Forecast("m", 0.0, 300.0, np.array([20.0, 30.0]), calibration)
    between = Forecast("m", 0.0, 300.0, np.array([15.0, 17.5]), calibration)
    np.testing.assert_allclose(low.upper(0.5), [5.0, 10.0])  # -10 % is floored at the point
    np.testing.assert_allclose(high.upper(0.5), [22.0, 33.0])
    np.testing.assert_allclose(between.upper(0.5), [15.0, 17.5 * 1.05])
    steps = np.array([0, 1])
    np.testing.assert_allclose(
        low.exceedance(np.array([4.4, 8.9]), steps), [[1.0, 1.0], [0.0, 1.0]]
    )
    np.testing.assert_allclose(
        high.exceedance(np.array([21.0, 33.5]), steps), [[1.0, 1.0], [0.0, 0.0]]
    )
    # Just over the point at 15: no low error reaches it, every high one does.
    np.testing.assert_allclose(between.exceedance(np.array([15.3]), steps[:1]), [[0.5]])


def test_point_errors_are_the_mean_scaled_absolute_error_of_the_known_forecasts() -> None:
    """The point error per lead is the mean of |actual - point| / (point + floor) over the
    forecasts whose actual is known."""
    nan = np.nan
    actual = np.array(
        [[110.0, 100.0, nan], [90.0, nan, nan], [nan, nan, 120.0], [130.0, 70.0, nan]]
    )
    predicted = np.full((4, 3), 90.0)
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=10.0)
    expected = [(0.2 + 0.0 + 0.4) / 3, (0.1 + 0.2) / 2, 0.3]
    np.testing.assert_allclose(calibration.point_errors, expected)


@pytest.mark.parametrize(
    ("when", "q", "expected"),
    [
        pytest.param(300.0, None, 100.0, id="point-on-a-step"),
        pytest.param(450.0, None, 150.0, id="point-between-steps"),
        pytest.param(450.0, 0.95, 165.0, id="band-between-steps"),
        pytest.param(9000.0, 0.95, 220.0, id="band-past-the-end"),
    ],
)
def test_value_at_interpolates_the_point_or_the_band(
    when: float, q: float | None, expected: float
) -> None:
    """value_at reads the point path, or the q band when asked, linearly between steps."""
    forecast = Forecast("m", 0.0, 300.0, np.array([100.0, 200.0]), _calibration([0.1] * 10))
    np.testing.assert_allclose(forecast.path(0.95), [110.0, 220.0])
    assert forecast.value_at(when, q) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("start", "end", "q", "expected"),
    [
        pytest.param(0.0, 300.0, None, 1.0, id="first-bucket"),
        pytest.param(301.0, 302.0, None, 5.0, id="inside-a-bucket"),
        pytest.param(250.0, 350.0, None, 5.0, id="across-two-buckets"),
        pytest.param(600.0, 1200.0, None, 3.0, id="from-a-step-s-end"),
        pytest.param(0.0, 1200.0, 0.95, 5.5, id="band-over-all"),
        pytest.param(5000.0, 6000.0, None, 2.0, id="past-the-end"),
    ],
)
def test_max_between_counts_each_bucket_that_overlaps_the_window(
    start: float, end: float, q: float | None, expected: float
) -> None:
    """A step's value covers the bucket (t - step, t]: the highest over the buckets the window
    overlaps, or the last value past the end."""
    point = np.array([1.0, 5.0, 3.0, 2.0])  # at 300, 600, 900, 1200
    forecast = Forecast("m", 0.0, 300.0, point, _calibration([0.1] * 10))
    assert forecast.max_between(start, end, q) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("first_origin", "lead", "origins", "actual"),
    [
        pytest.param(1, 2, [1, 2, 3], [[20.0, 30.0], [30.0, 40.0], [40.0, np.nan]], id="lead-2"),
        pytest.param(0, 1, [0, 1, 2, 3], [[10.0], [20.0], [30.0], [40.0]], id="lead-1"),
        pytest.param(3, 3, [3], [[40.0, np.nan, np.nan]], id="past-the-end"),
    ],
)
def test_origins_matrix_pairs_each_origin_with_the_values_after_it(
    first_origin: int, lead: int, origins: list[int], actual: list[list[float]]
) -> None:
    """Row ``i`` holds the ``lead`` values after origin ``o``, NaN past the last value."""
    got_origins, got_actual = origins_matrix(np.arange(5.0) * 10.0, first_origin, lead)
    assert got_origins.tolist() == origins
    np.testing.assert_array_equal(got_actual, actual)


def test_origin_means_average_each_row_s_known_errors() -> None:
    """A row's mean leaves out its unknown errors; a row with none is NaN."""
    errors = np.array([[1.0, 3.0], [np.nan, 4.0], [np.nan, np.nan], [np.inf, 2.0]])
    np.testing.assert_array_equal(origin_means(errors), [2.0, 4.0, np.nan, 2.0])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([20.0, 30.0, 40.0], 3.0, id="a-tenth-of-the-median"),
        pytest.param([0.0, 0.0, 0.0, 500.0], 5.0, id="a-hundredth-of-the-peak"),
        pytest.param([0.0, 0.0], 0.0, id="no-load"),
        pytest.param([], 0.0, id="empty"),
    ],
)
def test_scale_floor_is_a_tenth_of_the_median_or_a_hundredth_of_the_peak(
    values: list[float], expected: float
) -> None:
    """The absolute error scale near zero: the larger of a tenth of the typical (median) load
    and a hundredth of the peak, and never zero (a tiny positive scale without load)."""
    got = scale_floor(np.asarray(values, dtype=np.float64))
    assert got > 0.0
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_samples_are_the_fewest_errors_at_any_lead() -> None:
    """``samples`` counts the known errors of the lead that has the fewest."""
    actual = np.array([[1.0, 1.0, 1.0], [2.0, np.nan, 1.0], [3.0, np.nan, np.nan]])
    calibration = Calibration.from_forecasts(actual, np.ones((3, 3)), scale_floor=1.0)
    assert [row.size for row in calibration.errors] == [3, 1, 2]
    assert calibration.samples == 1


@pytest.mark.parametrize(
    ("level", "threshold", "expected", "median"),
    [
        pytest.param(100.0, 140.0, 0.5, 125.0, id="level-plus-floor"),
        pytest.param(100.0, 160.0, 0.25, 125.0, id="level-plus-floor-higher"),
        pytest.param(0.0, 25.0, 0.25, 12.5, id="floor-alone-at-zero"),
    ],
)
def test_band_and_exceedance_scale_errors_by_the_level_plus_the_floor(
    level: float, threshold: float, expected: float, median: float
) -> None:
    """An error is relative to the forecast level plus the scale floor: with a floor of 100,
    a point of 100 and errors of -25 %..+50 % put the load at 50, 100, 150 and 200, and the
    median error (+12.5 %) puts the median band at 125."""
    calibration = Calibration((np.array([-0.25, 0.0, 0.25, 0.5]),), 100.0)
    forecast = Forecast("m", 0.0, 300.0, np.array([level]), calibration)
    got = forecast.exceedance(np.array([threshold]), np.array([0]))[0, 0]
    assert got == pytest.approx(expected)
    assert forecast.upper(0.5)[0] == pytest.approx(median)


def test_a_thinned_row_keeps_the_middle_error_of_each_even_share() -> None:
    """A row of three times MAX_ROW_ERRORS errors keeps, sorted, the middle one of each
    consecutive three: the order statistic at rank ``(k + 0.5) / MAX_ROW_ERRORS``."""
    errors = np.random.default_rng(5).permutation(3 * MAX_ROW_ERRORS).astype(np.float64)
    kept = _sorted_row(errors)
    np.testing.assert_array_equal(kept, np.arange(1, 3 * MAX_ROW_ERRORS, 3))


def test_steps_beyond_the_calibrated_leads_read_the_last_lead_s_errors() -> None:
    """With errors for two leads (0 % and +50 %), the second step and every later one are
    banded and exceeded by the second lead's errors."""
    calibration = Calibration((np.array([0.0]), np.array([0.5])), 0.0)
    forecast = Forecast("m", 0.0, 300.0, np.full(4, 100.0), calibration)
    np.testing.assert_allclose(forecast.upper(0.9), [100.0, 150.0, 150.0, 150.0])
    got = forecast.exceedance(np.array([120.0]), np.arange(4))
    np.testing.assert_allclose(got, [[0.0, 1.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    ("origins", "kept"),
    [
        pytest.param(594, 222 + 66, id="exactly-a-day-s-worth-left"),
        pytest.param(593, 593, id="one-short-keeps-all"),
    ],
)
def test_origins_retired_by_a_change_end_an_hour_plus_the_reach_before_it(
    origins: int, kept: int
) -> None:
    """5-minute origins, a change at 20 h, a 30-minute reach: origins before 18.5 h and from a
    day after the change calibrate, and the others are retired unless fewer than a day's
    worth (288) would be left."""
    step = 300.0
    times = np.arange(origins) * step
    settled = calibrating_origins(times, (20 * 3600.0,), reach=1800.0, step=step)
    assert int(settled.sum()) == kept
    if kept < origins:
        assert settled[:222].all() and not settled[222:528].any() and settled[528:].all()
