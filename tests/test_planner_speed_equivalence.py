"""The planner's and the simulator's shortcuts read exactly what the plain forms they replace
read, bit for bit.

``path_max`` slices the run of bucket centres inside a window where a mask of every centre
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
    _REPLICA_TOLERANCE,
    RegionState,
    _cloud_ceiling,
    _cloud_floor,
    _cloud_worth_holding,
    _window_max,
    _window_weights,
    bucket_centres,
    path_max,
    plan_region,
    target_per_replica,
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
    """``path_max`` as it was: a mask over every centre."""
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
        centres = bucket_centres(times, step, sample_step)
        for start, end in windows(rng, centres):
            want = masked_max(centres, values, start, end)
            assert bits(path_max(centres, values, start, end)) == bits(want)
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


def node_use(
    fc: Forecast, spec: GatewayAutoscalerSpec, first: FloatArray, ready: float, hold: float
) -> FloatArray:
    """Each node's expected use, the node's first slot (past the physical pool) in ``first``."""
    per_node = spec.cloud.replicas_per_node
    slots = (first[:, None] + np.arange(per_node)).reshape(-1)
    steps, seconds = _window_weights(fc, ready, ready + hold)
    thresholds = (slots + _REPLICA_TOLERANCE) * target_per_replica(spec)
    used = fc.exceedance(thresholds, steps) @ seconds
    return np.asarray(used.reshape(first.size, per_node).sum(axis=1), dtype=np.float64)


def plain_worth_holding(
    fc: Forecast, spec: GatewayAutoscalerSpec, *, capacity: int, floor: int, now: float
) -> int:
    """``_cloud_worth_holding`` as a scan of every node up to the ceiling, weighed at once."""
    ready, hold = now + 360.0, 600.0
    per_node, limit = spec.cloud.replicas_per_node, _cloud_ceiling(spec, capacity)
    cloud = _cloud_floor(spec, capacity, floor)
    if cloud >= limit:
        return cloud
    first = capacity + np.arange(cloud, limit, per_node, dtype=np.float64)
    need = (1.0 - spec.forecast.quantile) * per_node * ((ready - now) + hold)
    short = np.flatnonzero(node_use(fc, spec, first, ready, hold) < need)
    return limit if not short.size else min(limit, cloud + int(short[0]) * per_node)


@pytest.mark.parametrize("seed", range(6))
def test_a_band_far_past_the_widest_block_holds_what_a_scan_of_every_node_holds(
    seed: int,
) -> None:
    """Past a block of 4096 slots held, the nodes are searched rather than scanned: the first
    node under the price is the one a scan of every node finds."""
    rng = np.random.default_rng(100 + seed)
    per_node = int(rng.choice([1, 2, 3, 7]))
    spec = make_spec(
        **{
            "cloud.replicasPerNode": per_node,
            "cloud.maxReplicas": int(rng.choice([20_001, 40_000, 90_000])),
            "replicas.max": 100_000,
            "forecast.quantile": float(rng.choice([0.9, 0.95, 0.99])),
        }
    )
    point = rng.uniform(0.0, 60_000.0 * target_per_replica(spec), 12)
    fc = calibrated(rng, point, 60.0)
    widest = 4096 // per_node
    blocks = [4, 4, *(min(4 << k, widest) for k in range(1, 13))]
    scanned = per_node * sum(blocks[: blocks.index(widest) + 1])  # before the search starts
    searched = 0
    for _ in range(12):
        capacity = int(rng.integers(0, 3_000))
        floor = int(rng.choice([-5, 0, int(rng.integers(0, 12_000))]))
        want = plain_worth_holding(fc, spec, capacity=capacity, floor=floor, now=NOW)
        got = _cloud_worth_holding(
            fc, spec, capacity=capacity, floor=floor, now=NOW, ready=NOW + 360.0, hold=600.0
        )
        assert got == want
        searched += want - _cloud_floor(spec, capacity, floor) > scanned
    assert searched  # the search past the widest block ran, not only the blocks


def test_a_band_of_millions_of_replicas_is_weighed_in_few_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One replica a node, ceilings at 2^31 - 1 and a fat-tailed band at a million replicas'
    worth: blocks of 4096 slots alone took some 4,600 calls (11 s a plan)."""
    rng = np.random.default_rng(7)
    spec = make_spec(
        **{
            "cloud.replicasPerNode": 1,
            "cloud.maxReplicas": 2**31 - 1,
            "replicas.max": 2**31 - 1,
            "forecast.quantile": 0.99,
        }
    )
    to_load = target_per_replica(spec)
    predicted = rng.uniform(0.0, 2e6 * to_load, (1600, 12))
    actual = predicted * rng.pareto(1.2, (1600, 12))
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=10.0)
    fc = Forecast("test", NOW, 60.0, np.full(12, 1e6 * to_load), calibration)
    calls: list[int] = []
    weigh = Forecast.exceedance

    def counted(self: Forecast, thresholds: FloatArray, steps: npt.NDArray[np.int64]) -> FloatArray:
        calls.append(np.asarray(thresholds).size)
        return weigh(self, thresholds, steps)

    monkeypatch.setattr(Forecast, "exceedance", counted)
    held = _cloud_worth_holding(
        fc, spec, capacity=100, floor=0, now=NOW, ready=NOW + 360.0, hold=600.0
    )
    assert len(calls) < 80
    monkeypatch.setattr(Forecast, "exceedance", weigh)
    need = 0.01 * 1 * 960.0
    around = node_use(fc, spec, np.array([100.0 + held - 1, 100.0 + held]), NOW + 360.0, 600.0)
    assert held > 1_000_000 and around[0] >= need > around[1]


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
