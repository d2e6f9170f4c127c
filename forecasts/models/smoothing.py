"""Pieces shared by the exponential-smoothing models: damped-trend arithmetic and calibration.

Both Holt-Winters and MSTL keep, for the tail of the history they were fitted on, the state
after every observation. From those states the multi-step forecast of every origin is a few
vectorised numpy operations, which is what makes a cheap refit cheap: advance the state over
the new observations and recompute the calibration, without re-estimating anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from forecasts.base import (
    DAY,
    BoolArray,
    Calibration,
    FittedModel,
    FloatArray,
    Forecaster,
    PreparedHistory,
    calibrating_origins,
    level_changes,
    prepare_history,
    values_after,
)
from forecasts.series import LoadSeries

__all__ = [
    "CALIBRATION_WINDOW",
    "REESTIMATE_EVERY",
    "ForecastRecord",
    "SmoothingForecaster",
    "calibrate",
    "calibration_from_paths",
    "calibration_origins",
    "carried_record",
    "damped_sums",
    "merge_records",
    "shifted",
]

#: Calibrate on the last week of history: long enough for a few hundred origins at every hour of
#: the day and every lead, recent enough to track how noisy the series is now.
CALIBRATION_WINDOW = 7 * DAY

#: Parameters older than this are re-estimated; younger ones are reused by a cheap refit. A day
#: is one full daily cycle, so a re-estimation always sees a cycle it has not seen before.
REESTIMATE_EVERY = DAY


def damped_sums(phi: float, lead: int) -> FloatArray:
    """``phi + ... + phi**h`` for ``h = 1..lead``: the trend multiplier h steps ahead."""
    return np.cumsum(phi ** np.arange(1, lead + 1, dtype=np.float64))


def shifted(values: FloatArray, origins: FloatArray | np.ndarray, lead: int) -> FloatArray:
    """``values[o + h]`` for origins ``o >= 0`` (rows), ``h = 1..lead`` (columns); NaN past the
    end.

    ``values`` may have more axes (a row per time): they follow the two.
    """
    idx = np.asarray(origins, dtype=np.int64)[:, None] + np.arange(1, lead + 1)[None, :]
    values = np.asarray(values, dtype=np.float64)
    # NaN rows past the end, so that one gather does it: a mask over every sample of every
    # lead costs five times as much when ``values`` holds a row per time.
    beyond = int(idx.max(initial=-1)) - values.shape[0] + 1
    if beyond > 0:
        values = np.concatenate([values, np.full((beyond, *values.shape[1:]), np.nan)])
    return np.asarray(values[idx], dtype=np.float64)


def calibration_origins(size: int, *, step: float, first: int, window: float) -> np.ndarray:
    """Origins for calibration: the last ``window`` seconds of a fit of ``size`` samples."""
    start = max(first, size - 1 - math.ceil(window / step))
    return np.arange(start, size - 1, dtype=np.int64)


def calibration_from_paths(
    actual: FloatArray,
    predicted: FloatArray,
    *,
    floor: float,
    within: FloatArray | None = None,
) -> Calibration:
    """A calibration from forecasts that were made without seeing their own actuals.

    The level used for scaling is the forecast, clipped at zero as every forecast is.
    ``within`` holds the samples' deviations inside each actual's bucket (see
    :meth:`Calibration.from_forecasts`).
    """
    return Calibration.from_forecasts(
        actual, np.maximum(predicted, 0.0), scale_floor=floor, within=within
    )


@dataclass(frozen=True, eq=False)
class ForecastRecord:
    """Point paths forecast honestly (with parameters estimated before their origin).

    ``predicted[i, h]`` is the forecast made at ``origins[i]`` (a time) for ``h + 1`` steps
    later. The actuals are looked up again at every calibration, so a row recorded before its
    later leads were observed still counts in full once they are.
    """

    origins: FloatArray
    predicted: FloatArray

    @property
    def lead(self) -> int:
        return int(self.predicted.shape[1])


def merge_records(older: ForecastRecord | None, newer: ForecastRecord) -> ForecastRecord:
    """``newer``'s rows, plus ``older``'s rows from before ``newer`` starts."""
    if older is None or older.lead != newer.lead or older.origins.size == 0:
        return newer
    if newer.origins.size == 0:
        return older
    keep = older.origins < newer.origins[0] - 1e-6
    return ForecastRecord(
        np.concatenate([older.origins[keep], newer.origins]),
        np.concatenate([older.predicted[keep], newer.predicted]),
    )


def carried_record(
    previous: FittedModel, prepared: PreparedHistory, lead: int
) -> ForecastRecord | None:
    """``previous``'s honest record, extended by its forecasts over the samples since its fit.

    No forecast is recorded from an origin inside a gap that the history fills in: the values
    there lean on the first sample after the gap, which was not known at the origin. A forecast
    made there is the one from the last sample before the gap, further ahead, and that one is
    recorded already.
    """
    record: ForecastRecord | None = previous.record
    if previous.step != prepared.step:
        return None
    after = values_after(prepared, previous.fitted_until)
    if after is None or after[0].size == 0:
        return record
    new, known = after
    paths = previous.backtest_paths(new, lead)
    times = previous.fitted_until + previous.step * np.arange(new.size, dtype=np.float64)
    # Row i is made after new[:i]: at the fit's last sample, then at each new one.
    made = np.concatenate([[True], known[:-1]])
    return merge_records(record, ForecastRecord(times[made], paths[made]))


def calibrate(
    *,
    end: float,
    step: float,
    values: FloatArray,
    origins: np.ndarray,
    predicted: FloatArray,
    floor: float,
    estimated_until: float,
    record: ForecastRecord | None,
    within: FloatArray | None = None,
    changes: tuple[float, ...] = (),
    known: BoolArray | None = None,
) -> tuple[Calibration, ForecastRecord]:
    """Calibrate on the errors of forecasts from ``origins`` (indices into ``values``, which ends
    at time ``end``), honest wherever possible, and return the updated honest record.

    A forecast from an origin at or after ``estimated_until`` is honest as computed. For an
    earlier origin, the in-sample forecast (parameters and seasonal profile fitted on data that
    includes what it forecasts, optimistic, markedly so for MSTL's profile) is replaced by the
    honest one from ``record`` when there is one. ``within`` (rows aligned with ``values``)
    holds each bucket's samples' deviations from its value there, when the history was
    aggregated (:meth:`PreparedHistory.within_tail`). After lasting ``changes`` of level, the
    origins :func:`~forecasts.base.calibrating_origins` retires are left out. ``known``
    (aligned with ``values``) says which values were observed: a value filled in over a gap is
    no actual to measure an error against, and no forecast is made from inside the gap (its
    filled values lean on the first sample after it), nor kept in the record.
    """
    lead = predicted.shape[1]
    times = end - step * (values.size - 1 - origins.astype(np.float64))
    honest_now = times >= estimated_until - 1e-6
    current = ForecastRecord(times[honest_now], predicted[honest_now])
    merged = current
    if record is not None and record.lead == lead and record.origins.size:
        older = record.origins < estimated_until - 1e-6
        merged = merge_records(
            ForecastRecord(record.origins[older], record.predicted[older]), current
        )
        pos = np.minimum(np.searchsorted(merged.origins, times), merged.origins.size - 1)
        match = np.abs(merged.origins[pos] - times) < 1e-6
        predicted = predicted.copy()
        predicted[match] = merged.predicted[pos[match]]
    if times.size:
        inside = merged.origins >= times[0] - 1e-6
        if known is not None:
            # No forecast from inside a filled gap is honest (:func:`carried_record`).
            at = values.size - 1 - np.round((end - merged.origins) / step).astype(np.int64)
            inside &= known[np.clip(at, 0, values.size - 1)] | (at < 0) | (at >= values.size)
        merged = ForecastRecord(merged.origins[inside], merged.predicted[inside])
    # The record keeps every honest row: a retired origin may count again later.
    kept = calibrating_origins(times, changes, reach=lead * step, step=step)
    if known is not None:
        kept &= known[origins]
        values = np.where(known, values, np.nan)
    origins, predicted = origins[kept], predicted[kept]
    calibration = calibration_from_paths(
        shifted(values, origins, lead),
        predicted,
        floor=floor,
        within=None if within is None else shifted(within, origins, lead),
    )
    return calibration, merged


class SmoothingForecaster(Forecaster):
    """What Holt-Winters and MSTL share: their options and how they prepare a history.

    ``window`` is the history used for estimation; a refit given ``previous`` within
    ``reestimate_every`` of its estimation only advances the state and refreshes the
    calibration, which uses the last ``calibration_window``.
    """

    keeps_record = True
    default_window = 14 * DAY
    #: The fitted class whose records a refit may carry on.
    fitted_type: ClassVar[type[FittedModel]]

    def __init__(
        self,
        *,
        window: float | None = None,
        reestimate_every: float = REESTIMATE_EVERY,
        calibration_window: float = CALIBRATION_WINDOW,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.window = self.default_window if window is None else window
        self.reestimate_every = reestimate_every
        self.calibration_window = calibration_window

    @staticmethod
    def _daily(step: float) -> int:
        """The daily period in samples of ``step`` seconds (at least two)."""
        return max(2, round(DAY / step))

    def least_points(self, step: float) -> int:
        """Two whole days plus a lead: the least that estimates a daily season and checks it."""
        return 2 * self._daily(step) + self.lead_steps(step) + 1

    def _prepare(self, history: LoadSeries) -> tuple[PreparedHistory, int, int]:
        """The estimation window on the model's grid, its daily period and lead, in steps."""
        step = max(self.fit_step, history.step)
        daily = self._daily(step)
        lead = self.lead_steps(step)
        prepared = prepare_history(
            history.last(self.window),
            fit_step=self.fit_step,
            min_points=self.least_points(step),
            what="history",
        )
        return prepared, daily, lead

    @staticmethod
    def _calibrate(
        prepared: PreparedHistory,
        *,
        values: FloatArray,
        known: BoolArray,
        origins: np.ndarray,
        predicted: FloatArray,
        floor: float,
        estimated_until: float,
        record: ForecastRecord | None,
    ) -> tuple[Calibration, ForecastRecord]:
        """:func:`calibrate` on the tail ``values`` of ``prepared``, with its buckets' spread
        and its lasting changes of level."""
        return calibrate(
            end=prepared.end,
            step=prepared.step,
            values=values,
            origins=origins,
            predicted=predicted,
            floor=floor,
            estimated_until=estimated_until,
            record=record,
            within=prepared.within_tail(values),
            changes=level_changes(prepared),
            known=known,
        )

    def _record(
        self, previous: FittedModel | None, prepared: PreparedHistory
    ) -> ForecastRecord | None:
        """The honest forecasts a previous fit of this model can hand on."""
        if not isinstance(previous, self.fitted_type):
            return None
        return carried_record(previous, prepared, self.lead_steps(prepared.step))
