"""Holt-Winters: additive damped trend and additive daily seasonality.

statsmodels' ``ExponentialSmoothing`` estimates the smoothing parameters and the initial state
(heuristic initialisation, so that only the four smoothing parameters are optimised). The
recursion itself runs here, in the component form statsmodels uses (Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, section 8.3, https://otexts.com/fpp3/holt-winters.html):

    l[t] = alpha * (y[t] - s[t-m]) + (1 - alpha) * (l[t-1] + phi * b[t-1])
    b[t] = beta * (l[t] - l[t-1]) + (1 - beta) * phi * b[t-1]
    s[t] = gamma * (y[t] - l[t-1] - phi * b[t-1]) + (1 - gamma) * s[t-m]

Owning the recursion is what lets a fitted model advance over new observations in
microseconds, and a refit within ``reestimate_every`` (default one day) of the last estimation
continue the state and refresh the calibration without any optimisation.

A constant history is not given to the optimiser (it has nothing to estimate and statsmodels
warns or fails on it): the model then starts flat at that constant with fixed, moderate
smoothing parameters, and forecasts the constant.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from forecasts.base import (
    DAY,
    BoolArray,
    Calibration,
    FittedModel,
    FloatArray,
    PreparedHistory,
    scale_floor,
    values_after,
)
from forecasts.errors import FitFailed
from forecasts.models.smoothing import (
    ForecastRecord,
    SmoothingForecaster,
    calibration_origins,
    damped_sums,
)
from forecasts.series import LoadSeries

__all__ = ["HoltWinters", "HoltWintersParameters"]


@dataclass(frozen=True)
class HoltWintersParameters:
    """Smoothing parameters of the level, trend and season, the damping, and the period in steps."""

    alpha: float
    beta: float
    gamma: float
    phi: float
    period: int


#: Parameters for a constant history, where there is nothing to estimate.
_FLAT_PARAMETERS = {"alpha": 0.5, "beta": 0.01, "gamma": 0.05, "phi": 0.9}


def run_recursion(
    params: HoltWintersParameters,
    observed: FloatArray,
    *,
    level: float,
    trend: float,
    seasons: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Advance the state over ``observed`` and return the level, trend and season after each step.

    ``seasons`` holds the last ``period`` seasonal estimates, oldest first. A missing (NaN)
    observation is replaced by its one-step forecast, which leaves the state on its projection.
    """
    m = params.period
    alpha, beta, gamma, phi = params.alpha, params.beta, params.gamma, params.phi
    ring = [float(v) for v in seasons[-m:]]
    levels: list[float] = []
    trends: list[float] = []
    for t, obs in enumerate(observed.tolist()):
        s_prev = ring[t]
        expected = level + phi * trend
        if obs != obs:  # NaN: no information, follow the projection
            obs = expected + s_prev
        new_level = alpha * (obs - s_prev) + (1.0 - alpha) * expected
        trend = beta * (new_level - level) + (1.0 - beta) * phi * trend
        ring.append(gamma * (obs - expected) + (1.0 - gamma) * s_prev)
        level = new_level
        levels.append(level)
        trends.append(trend)
    return np.array(levels), np.array(trends), np.array(ring[m:])


def forecast_paths(
    params: HoltWintersParameters,
    level: FloatArray,
    trend: FloatArray,
    season: FloatArray,
    origins: np.ndarray,
    lead: int,
) -> FloatArray:
    """Forecasts of ``1..lead`` steps from each origin of aligned state arrays.

    The season of step ``o + h`` is the latest estimate for its phase known at ``o``: the one made
    ``m * ceil(h / m)`` steps earlier, so ``origins`` must be at least ``period - 1``.
    """
    m = params.period
    h = np.arange(1, lead + 1)
    back = m * np.ceil(h / m).astype(np.int64)
    paths: FloatArray = (
        level[origins][:, None]
        + damped_sums(params.phi, lead)[None, :] * trend[origins][:, None]
        + season[origins[:, None] + h[None, :] - back[None, :]]
    )
    return paths


@dataclass(eq=False)
class _FittedHoltWinters(FittedModel):
    name: str
    step: float
    fitted_until: float
    estimated_until: float
    calibration: Calibration
    fit_seconds: float
    params: HoltWintersParameters
    floor: float
    # The state after each of the last samples of the fit (the last one is at ``fitted_until``).
    values: FloatArray
    level: FloatArray
    trend: FloatArray
    season: FloatArray
    # Which of ``values`` were observed (False: filled in over a gap).
    known: BoolArray
    record: ForecastRecord | None = None

    def _advanced(self, observed: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """State arrays over the last ``period`` fitted samples followed by ``observed``."""
        m = self.params.period
        level, trend, season = run_recursion(
            self.params,
            observed,
            level=float(self.level[-1]),
            trend=float(self.trend[-1]),
            seasons=self.season[-m:],
        )
        return (
            np.concatenate([self.level[-m:], level]),
            np.concatenate([self.trend[-m:], trend]),
            np.concatenate([self.season[-m:], season]),
        )

    def _project(self, observed: FloatArray, steps: int) -> FloatArray:
        level, trend, season = self._advanced(observed)
        origin = np.array([level.size - 1])
        path: FloatArray = forecast_paths(self.params, level, trend, season, origin, steps)[0]
        return path

    def backtest_paths(self, observed: FloatArray, lead: int) -> FloatArray:
        level, trend, season = self._advanced(observed)
        m = self.params.period
        origins = np.arange(m - 1, m - 1 + observed.size, dtype=np.int64)
        return forecast_paths(self.params, level, trend, season, origins, lead)


class HoltWinters(SmoothingForecaster):
    """Additive damped-trend Holt-Winters with a daily season, on ``fit_step`` means.

    Options: ``window`` (history used for estimation, default 14 days), ``reestimate_every``
    (a refit given ``previous`` within this age of its estimation only advances the state and
    refreshes the calibration; default 1 day), ``calibration_window`` (default 7 days).
    """

    name = "holt-winters"
    default_window = 14 * DAY
    fitted_type = _FittedHoltWinters

    def _fit(self, history: LoadSeries, *, previous: FittedModel | None) -> FittedModel:
        prepared, period, _ = self._prepare(history)
        if isinstance(previous, _FittedHoltWinters):
            continued = self._continue(previous, prepared)
            if continued is not None:
                return continued
        params, level0, trend0, seasons0 = self._estimate(prepared.values, period)
        level, trend, season = run_recursion(
            params, prepared.values, level=level0, trend=trend0, seasons=seasons0
        )
        return self._fitted(
            params,
            prepared,
            estimated_until=prepared.end,
            record=self._record(previous, prepared),
            floor=scale_floor(prepared.values),
            values=prepared.values,
            known=prepared.known,
            level=level,
            trend=trend,
            season=season,
        )

    def _continue(
        self, previous: _FittedHoltWinters, prepared: PreparedHistory
    ) -> FittedModel | None:
        """The cheap refit: advance ``previous`` over new samples; None if re-estimation is due."""
        if (
            previous.step != prepared.step
            or prepared.end - previous.estimated_until >= self.reestimate_every
        ):
            return None
        after = values_after(prepared, previous.fitted_until)
        if after is None:
            return None
        new, known = after
        level, trend, season = run_recursion(
            previous.params,
            new,
            level=float(previous.level[-1]),
            trend=float(previous.trend[-1]),
            seasons=previous.season[-previous.params.period :],
        )
        return self._fitted(
            previous.params,
            prepared,
            estimated_until=previous.estimated_until,
            record=self._record(previous, prepared),
            floor=previous.floor,
            values=np.concatenate([previous.values, new]),
            known=np.concatenate([previous.known, known]),
            level=np.concatenate([previous.level, level]),
            trend=np.concatenate([previous.trend, trend]),
            season=np.concatenate([previous.season, season]),
        )

    def _fitted(
        self,
        params: HoltWintersParameters,
        prepared: PreparedHistory,
        *,
        estimated_until: float,
        record: ForecastRecord | None,
        floor: float,
        values: FloatArray,
        known: BoolArray,
        level: FloatArray,
        trend: FloatArray,
        season: FloatArray,
    ) -> _FittedHoltWinters:
        m = params.period
        lead = self.lead_steps(prepared.step)
        # Keep only the tail that the calibration and the next cheap refit need.
        keep = math.ceil(self.calibration_window / prepared.step) + lead + m + 2
        values, level, trend, season = values[-keep:], level[-keep:], trend[-keep:], season[-keep:]
        known = known[-keep:]
        origins = calibration_origins(
            values.size, step=prepared.step, first=m - 1, window=self.calibration_window
        )
        predicted = forecast_paths(params, level, trend, season, origins, lead)
        calibration, record = self._calibrate(
            prepared,
            values=values,
            known=known,
            origins=origins,
            predicted=predicted,
            floor=floor,
            estimated_until=estimated_until,
            record=record,
        )
        return _FittedHoltWinters(
            name=self.name,
            step=prepared.step,
            fitted_until=prepared.end,
            estimated_until=estimated_until,
            calibration=calibration,
            fit_seconds=0.0,
            params=params,
            floor=floor,
            values=values,
            level=level,
            trend=trend,
            season=season,
            known=known,
            record=record,
        )

    @staticmethod
    def _estimate(
        values: FloatArray, period: int
    ) -> tuple[HoltWintersParameters, float, float, FloatArray]:
        """Parameters and initial state (level, trend, the ``period`` seasons before the start)."""
        if np.ptp(values) <= 1e-9 * max(1.0, abs(float(values.mean()))):
            params = HoltWintersParameters(period=period, **_FLAT_PARAMETERS)
            return params, float(values[0]), 0.0, np.zeros(period)
        # Imported here: statsmodels takes a second to import, and only a full fit needs it.
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        try:
            with warnings.catch_warnings():
                # Convergence chatter from the optimiser; the result is checked below.
                warnings.simplefilter("ignore")
                result = ExponentialSmoothing(
                    values,
                    trend="add",
                    damped_trend=True,
                    seasonal="add",
                    seasonal_periods=period,
                    initialization_method="heuristic",
                ).fit()
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise FitFailed(f"Holt-Winters estimation failed: {exc}") from exc
        p = result.params
        params = HoltWintersParameters(
            alpha=float(p["smoothing_level"]),
            beta=float(p["smoothing_trend"]),
            gamma=float(p["smoothing_seasonal"]),
            phi=float(p["damping_trend"]),
            period=period,
        )
        seasons = np.asarray(p["initial_seasons"], dtype=np.float64)
        state = [params.alpha, params.beta, params.gamma, params.phi]
        state += [float(p["initial_level"]), float(p["initial_trend"])]
        if not (np.isfinite(state).all() and np.isfinite(seasons).all()):
            raise FitFailed("Holt-Winters estimation returned non-finite parameters")
        return params, float(p["initial_level"]), float(p["initial_trend"]), seasons
