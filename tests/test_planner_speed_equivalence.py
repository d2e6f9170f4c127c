"""The planner's and the simulator's shortcuts read exactly what the plain forms they replace
read, bit for bit.

``_path_max`` slices the run of bucket centres inside a window where a mask of every centre
was built, and the peak the run of steps within the horizon; ``plan_region`` weighs the cloud
nodes worth holding for the coming minutes only when they can count, relying on
``_cloud_worth_holding`` never returning fewer than its floor; ``TidalPolicy`` reports the
forecast a pod start ahead from paths computed once per forecast.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import numpy.typing as npt
import pytest

from controller.planner import (
    RegionState,
    _bucket_centres,
    _cloud_floor,
    _cloud_worth_holding,
    _path_max,
    _window_max,
    plan_region,
)
from controller.spec import GatewayAutoscalerSpec
from forecasts.base import Calibration, Forecast
from forecasts.series import LoadSeries
from tests.support.fixtures import SINE_START, daily_sine_views, seasonal_naive_policy
from tests.test_planner import NOW, make_spec

FloatArray = npt.NDArray[np.float64]


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def masked_max(centres: FloatArray, values: FloatArray, start: float, end: float) -> float:
    """``_path_max`` as it was: a mask over every centre."""
    inside = (centres > start) & (centres < end)
    edges = np.interp([start, end], centres, values)
    if inside.any():
        return float(max(edges.max(), values[inside].max()))
    return float(edges.max())


def windows(rng: np.random.Generator, centres: FloatArray) -> list[tuple[float, float]]:
    """Windows around, inside, across, before and after the centres; on them; reversed; NaN."""
    lo, hi = float(centres[0]), float(centres[-1])
    points = [lo - 500.0, lo, hi, hi + 500.0, math.nan, *centres.tolist()]
    points += rng.uniform(lo - 400.0, hi + 400.0, 12).tolist()
    return [(a, b) for a in points for b in points]


@pytest.mark.parametrize("seed", range(6))
def test_the_sliced_window_reads_what_the_mask_read(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 9))
    step = float(rng.choice([60.0, 300.0, 1800.0]))
    times = NOW + step * np.arange(1, size + 1, dtype=np.float64)
    if seed == 5 and size > 2:
        times[1] = times[2]  # equal times: the run is still one
    values = rng.choice([0.0, -0.0, 1.0, 2.5, 1e5, rng.uniform(0, 1e5)], size)
    if seed == 4:
        values[size // 2] = np.nan
    for sample_step in (15.0, 60.0, step, 2 * step):
        centres = _bucket_centres(times, step, sample_step)
        for start, end in windows(rng, centres):
            want = masked_max(centres, values, start, end)
            assert bits(_path_max(centres, values, start, end)) == bits(want)
            got = _window_max(times, values, step, start, end, sample_step=sample_step)
            assert bits(got) == bits(want)


def calibrated(rng: np.random.Generator, point: FloatArray, step: float) -> Forecast:
    """A forecast with a random (binned) calibration, as wide as ``rng`` makes it."""
    forecasts, leads = 1600, point.size
    predicted = rng.uniform(0.0, 2.0 * float(point.max()) + 1.0, (forecasts, leads))
    actual = predicted * rng.lognormal(0.0, float(rng.uniform(0.05, 0.6)), (forecasts, leads))
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=10.0)
    return Forecast("test", NOW, step, point, calibration)


def spec_for(rng: np.random.Generator) -> GatewayAutoscalerSpec:
    return make_spec(
        **{
            "cloud.replicasPerNode": int(rng.choice([1, 3, 10])),
            "cloud.maxReplicas": int(rng.choice([0, 7, 200])),
            "forecast.quantile": float(rng.choice([0.6, 0.9, 0.99])),
        }
    )


@pytest.mark.parametrize("seed", range(8))
def test_the_nodes_worth_holding_are_never_fewer_than_their_floor(seed: int) -> None:
    """What lets ``plan_region`` spare the second weighing when it could not count."""
    rng = np.random.default_rng(seed)
    step = float(rng.choice([60.0, 300.0]))
    point = rng.uniform(0.0, 30_000.0, int(rng.integers(3, 40)))
    fc = calibrated(rng, point, step)
    spec = spec_for(rng)
    for _ in range(20):
        capacity = int(rng.integers(0, 120))
        floor = int(rng.integers(-50, 250))
        now = NOW + float(rng.uniform(-step, 2 * step))
        ready = now + float(rng.choice([60.0, 360.0]))
        held = _cloud_worth_holding(
            fc, spec, capacity=capacity, floor=floor, now=now, ready=ready, hold=600.0
        )
        assert held >= _cloud_floor(spec, capacity, floor)
        again = _cloud_worth_holding(
            fc,
            spec,
            capacity=capacity,
            floor=floor,
            now=now,
            ready=ready,
            hold=600.0,
            times=fc.times(),
        )
        assert again == held


@pytest.mark.parametrize("seed", range(4))
def test_the_peak_is_the_one_a_mask_of_the_horizon_finds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = spec_for(rng)
    for _ in range(10):
        step = float(rng.choice([60.0, 300.0, 1800.0]))
        point = rng.choice([0.0, 500.0, 2000.0, float(rng.uniform(0, 9000))], 40)
        fc = calibrated(rng, point, step)
        now = NOW + float(rng.choice([0.0, 59.0, 60.0, step, 1.5 * step]))
        got = plan_region(
            spec,
            history=LoadSeries(now - 540.0, 60.0, np.full(10, 1000.0)),
            forecast=fc,
            state=RegionState(physical_replicas=10, cloud_replicas=0, physical_capacity=60),
            now=now,
        )
        times, upper = fc.times(), fc.upper(spec.forecast.quantile)
        horizon = spec.forecast.horizon.total_seconds()
        ahead = (times > now) & (times - fc.step < now + horizon)
        assert ahead.any()
        best = int(upper[ahead].argmax())
        assert got.forecast_peak is not None and got.forecast_peak_at is not None
        assert bits(got.forecast_peak) == bits(float(upper[ahead][best]))
        assert bits(got.forecast_peak_at) == bits(float(times[ahead][best]))


def test_the_simulator_reports_each_minute_what_value_at_reads() -> None:
    """The reported forecast a pod start ahead, read on paths computed once per forecast, is
    ``Forecast.value_at``'s, point and upper quantile, whether the forecast is new or reused."""
    policy = seasonal_naive_policy("report")
    spec = policy.spec
    start = SINE_START
    for minute, view in daily_sine_views(start, 40):
        policy(minute, view)
        fc = policy.last_forecast
        assert fc is not None
        ahead = view.now + policy.settings.pod_ready
        assert bits(policy.forecast_point[-1]) == bits(fc.value_at(ahead))
        upper = fc.value_at(ahead, spec.forecast.quantile)
        assert bits(policy.forecast_upper[-1]) == bits(upper)
    assert policy.refits > 1
