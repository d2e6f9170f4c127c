"""Seasonal naive: tomorrow at 18:00 looks like today at 18:00. The floor every model must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasts.base import (
    DAY,
    Calibration,
    FittedModel,
    FloatArray,
    Forecaster,
    calibrating_origins,
    level_changes,
    origins_matrix,
    prepare_history,
    scale_floor,
)
from forecasts.models.smoothing import shifted
from forecasts.series import LoadSeries

__all__ = ["SeasonalNaive"]

#: Calibrate on at most this much recent history: errors from a month ago say little about now.
CALIBRATION_WINDOW = 7 * DAY


@dataclass(eq=False)
class _FittedSeasonalNaive(FittedModel):
    name: str
    step: float
    fitted_until: float
    estimated_until: float
    calibration: Calibration
    fit_seconds: float
    season: int
    recent: FloatArray  # the last ``season`` values of the fit

    def _known(self, observed: FloatArray) -> FloatArray:
        known = np.concatenate([self.recent, observed])
        # A missing new observation repeats the value one season before it.
        for i in np.flatnonzero(np.isnan(known)):
            if i >= self.season:
                known[i] = known[i - self.season]
        return known

    def _project(self, observed: FloatArray, steps: int) -> FloatArray:
        tail = self._known(observed)[-self.season :]
        reps = -(-steps // self.season)
        return np.tile(tail, reps)[:steps].copy()

    def backtest_paths(self, observed: FloatArray, lead: int) -> FloatArray:
        known = self._known(observed)
        h = np.arange(1, lead + 1)[None, :]
        last = self.recent.size - 1 + np.arange(observed.size)[:, None]
        paths: FloatArray = known[
            last + h - self.season * np.ceil(h / self.season).astype(np.int64)
        ]
        return paths


class SeasonalNaive(Forecaster):
    """``y(t + h) = y(t + h - season)``, with a one-day season.

    It has no parameters to estimate, so every fit is a full fit and costs a few milliseconds;
    ``previous`` is ignored.
    """

    name = "seasonal-naive"

    def __init__(self, *, season: float = DAY, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.season = season

    def least_points(self, step: float) -> int:
        """A season and a lead: the least that forecasts a whole lead from a season back."""
        return max(1, round(self.season / step)) + self.lead_steps(step) + 1

    def _fit(self, history: LoadSeries, *, previous: FittedModel | None) -> FittedModel:
        step = max(self.fit_step, history.step)
        lead = self.lead_steps(step)
        prepared = prepare_history(
            history, fit_step=self.fit_step, min_points=self.least_points(step), what="history"
        )
        values = prepared.values
        season = prepared.season_steps(self.season)
        first = max(season - 1, values.size - 1 - round(CALIBRATION_WINDOW / prepared.step))
        # A value filled in over a gap is no actual, and no forecast is made from inside the
        # gap: its filled values lean on the first sample after it.
        known = prepared.known
        origins, actual = origins_matrix(np.where(known, values, np.nan), first, lead)
        times = prepared.start + prepared.step * origins.astype(np.float64)
        kept = calibrating_origins(
            times, level_changes(prepared), reach=lead * prepared.step, step=prepared.step
        )
        kept &= known[origins]
        origins, actual = origins[kept], actual[kept]
        h = np.arange(1, lead + 1)[None, :]
        # Forecast of o+h is the value one season before it, taken from what was known at o.
        src = origins[:, None] + h - season * np.ceil(h / season).astype(np.int64)
        predicted = values[src]
        deviations = prepared.within_tail(values)
        within = None if deviations is None else shifted(deviations, origins, lead)
        calibration = Calibration.from_forecasts(
            actual, predicted, scale_floor=scale_floor(values), within=within
        )
        return _FittedSeasonalNaive(
            name=self.name,
            step=prepared.step,
            fitted_until=prepared.end,
            estimated_until=prepared.end,
            calibration=calibration,
            fit_seconds=0.0,
            season=season,
            recent=values[-season:].copy(),
        )
