"""The forecaster interface, the forecast it returns, and the calibration of its bands.

A :class:`Forecaster` is fitted on a history and returns a :class:`FittedModel`. A fitted model
forecasts again from any later history without refitting: it advances its state over the
observations that arrived after the fit (cheap) and projects the horizon. Fitting (parameter
estimation, model choice, calibration) is the expensive part and happens at most every
``refit``.

Prediction bands are empirical: every model measures its own multi-step errors on the history
it was fitted on (forecasts from many origins, each compared with what happened next), scaled
by the forecast level, and the upper quantile at level ``q`` is the point plus the ``q``-th
quantile of those errors at the same lead time. Nothing assumes Gaussian errors. A model fits
bucket means (5 minutes of a 1-minute history), but capacity serves every sample: each sample
inside the bucket a forecast is for counts as an error of its own, so that the band covers the
load sample by sample, not only the bucket's mean (buckets older than the history a refit is
given count their mean alone). After a lasting change of the load's level, the errors of the
forecasts that reached across it, or were made before the model saw a day of the new level,
are retired (:func:`calibrating_origins`).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

import numpy as np
import numpy.typing as npt

from forecasts.errors import FitFailed, InsufficientHistory, InvalidHistory
from forecasts.series import LoadSeries

__all__ = [
    "DAY",
    "WEEK",
    "Calibration",
    "FittedModel",
    "Forecast",
    "Forecaster",
    "PreparedHistory",
    "calibrating_origins",
    "level_changes",
    "new_observations",
    "origin_means",
    "origins_matrix",
    "prepare_history",
    "scale_floor",
    "significantly_lower",
    "unless_beaten",
    "values_after",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
DAY = 86400.0
WEEK = 7 * DAY


#: Forecasts per level bin below which the bins are merged: a 0.95 quantile needs a tail of a
#: few dozen errors to be stable.
MIN_BIN_SAMPLES = 400
MAX_BINS = 4
#: Errors kept per row (one lead, one bin). A longer row is thinned to this many order
#: statistics at evenly spaced ranks, so that a quantile or an exceedance read from it is off
#: by at most ``1 / MAX_ROW_ERRORS`` in probability: the 0.95 quantile keeps a tail of about
#: 200 of them. Without it the memory grows with the samples per bucket: a 15 s load step
#: keeps 20 errors per forecast, about 46 MB per model over a 6-hour horizon.
MAX_ROW_ERRORS = 4096
#: A lead with more errors than this has its rows sorted as the calibration is built; up to
#: it, each row is sorted when first read (:class:`_Rows`). Until then a lead keeps at most
#: twice this many errors (its pooled row and its bins'), against ``MAX_BINS + 1`` thinned
#: rows sorted at once: 256 KiB against 160 KiB at the most.
LAZY_ROW_ERRORS = 4 * MAX_ROW_ERRORS


@dataclass(frozen=True, eq=False)
class Calibration:
    """Sorted, level-scaled errors per lead time and per forecast level.

    An error is ``(actual - point) / (point + scale_floor)``. Errors are also split into up to
    :data:`MAX_BINS` bins by the level of the forecast that made them (Mondrian, or
    conditional, calibration): the band of a forecast at night comes from the errors of past
    forecasts at night-time levels, and the band at the peak from errors at the peak. A single
    relative scale would widen every peak band by the noise of the quietest hours, where
    relative errors are largest; a single absolute one would do the reverse. ``errors`` holds
    the pooled rows (row ``h``: errors of ``h+1``-step forecasts, one per sample inside the
    bucket forecast when the history was aggregated; rows longer than :data:`MAX_ROW_ERRORS`
    are thinned to that many order statistics). ``point_errors[h]`` is the mean absolute
    error of those forecasts against their buckets' means: how good the point is.
    """

    errors: Sequence[FloatArray]
    scale_floor: float
    bin_edges: FloatArray = field(default_factory=lambda: np.empty(0))
    bin_errors: Sequence[Sequence[FloatArray]] = ()
    #: Each bin's middle level (the median of the forecasts it holds). Between two bins'
    #: middles a forecast reads both, weighted by how near it is to each, so that its band
    #: does not jump at an edge. Empty: each level reads its own bin alone.
    bin_levels: FloatArray = field(default_factory=lambda: np.empty(0))
    point_errors: FloatArray = field(default_factory=lambda: np.empty(0))
    _cache: dict[float, FloatArray] = field(default_factory=dict, repr=False, compare=False)
    _bin_cache: dict[float, FloatArray] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_forecasts(
        cls,
        actual: FloatArray,
        predicted: FloatArray,
        *,
        scale_floor: float,
        within: FloatArray | None = None,
    ) -> Calibration:
        """Build from ``predicted[i, h]``, the forecast of ``actual[i, h]`` ``h+1`` steps ahead.

        ``within[i, h, :]``, when given, holds the deviations of the samples inside the bucket
        of ``actual[i, h]`` from its mean (NaN where none): each sample then counts as an
        error of its own, so that the band covers the load sample by sample, as capacity must
        serve it, and not only the bucket's mean. Bins still count forecasts, not samples.
        """
        scale = np.maximum(predicted, 0.0) + scale_floor
        with np.errstate(invalid="ignore"):
            point = np.abs(actual - predicted) / scale
        known_points = np.isfinite(point)
        point_errors = np.where(known_points, point, 0.0).sum(axis=0) / np.maximum(
            known_points.sum(axis=0), 1
        )
        if within is None:
            within = np.zeros((*actual.shape, 1))

        def lead_errors(h: int) -> FloatArray:
            # One lead at a time: the errors of every sample at every lead at once would be
            # forecasts x leads x samples per bucket in memory.
            return np.asarray(
                (actual[:, h, None] + within[:, h, :] - predicted[:, h, None]) / scale[:, h, None]
            )

        leads = range(actual.shape[1])
        finite_within = np.isfinite(within)
        # Forecasts with a known sample. (An ``or`` over the samples one at a time: at five
        # samples a bucket, ``any`` along the last axis takes several times as long, and this
        # runs at every refit.)
        sampled = np.zeros(actual.shape, dtype=bool)
        for k in range(within.shape[2]):
            sampled |= finite_within[..., k]
        counted = np.isfinite(actual) & np.isfinite(scale) & sampled
        samples = int(counted.sum(axis=0).min()) if counted.size else 0
        bins = max(1, min(MAX_BINS, samples // MIN_BIN_SAMPLES))
        edges = levels = np.empty(0)
        which = np.zeros(actual.shape, dtype=np.int64)
        thick: list[BoolArray] = []
        if bins > 1:
            # The edges (quantiles k / bins) and the middles ((2k + 1) / (2 bins)), in one
            # pass over the forecasts: every (2k) / (2 bins) is an edge, every odd one a middle.
            cuts = np.quantile(
                predicted[np.isfinite(predicted)], np.arange(1, 2 * bins) / (2 * bins)
            )
            edges, levels = cuts[1::2], cuts[0::2]
            which = np.searchsorted(edges, predicted, side="right")
            # Per bin, the leads where it is thick enough; a thin one borrows the pooled row.
            thick = [
                ((which == b) & counted).sum(axis=0) >= MIN_BIN_SAMPLES // 4 for b in range(bins)
            ]
        # Sorting is most of a refit's calibration, and the plans until the next refit read
        # only the rows of the bins their forecast passes through: up to LAZY_ROW_ERRORS errors
        # a lead, each row is sorted when first read.
        pooled: list[_Row] = []
        binned: list[list[_Row]] = [[] for _ in range(bins)] if bins > 1 else []
        for h in leads:
            column = lead_errors(h)
            finite = np.isfinite(column)
            # ``+ 0.0`` makes a -0.0 error 0.0: two sorts (or sorting algorithms) may place
            # equal zeros of either sign differently, and a row's bytes should not depend on it.
            errors = column[finite] + 0.0
            lazy = errors.size <= LAZY_ROW_ERRORS
            if not binned:
                pooled.append(_Row(errors) if lazy else _Row.of(errors))
                continue
            # Each finite error's bin, in the order of ``errors`` (forecast by forecast).
            labels = np.broadcast_to(which[:, h, None], column.shape)[finite]
            parts = [errors[labels == b] for b in range(bins)]
            if lazy:
                pooled.append(_Row(errors))
                rows = [_Row(part) for part in parts]
            else:
                # Each bin sorted, then the pooled row from the bins' sorted runs: a stable sort
                # (timsort) merges runs, at about half the cost of sorting all again.
                runs = [np.sort(part) for part in parts]
                pooled.append(_Row.of(np.sort(np.concatenate(runs), kind="stable"), ordered=True))
                rows = [_Row.of(run, ordered=True) for run in runs]
            for b, lead_rows in enumerate(binned):
                lead_rows.append(rows[b] if thick[b][h] else pooled[h])
        if not binned:
            return cls(_Rows(pooled), float(scale_floor), point_errors=point_errors)
        return cls(
            _Rows(pooled),
            float(scale_floor),
            np.asarray(edges, dtype=np.float64),
            tuple(_Rows(lead_rows) for lead_rows in binned),
            np.asarray(levels, dtype=np.float64),
            point_errors=point_errors,
        )

    @property
    def lead_steps(self) -> int:
        return len(self.errors)

    @property
    def samples(self) -> int:
        """The fewest errors kept at any lead (one per sample inside a bucket, when aggregated,
        up to :data:`MAX_ROW_ERRORS`)."""
        return min(len(row) for row in self.errors)

    def after(self, steps: int) -> Calibration:
        """The calibration of forecasts made ``steps`` steps after their last observation.

        A forecast advanced over missing samples (a metrics outage) starts from an older state
        than its origin says: its first step is ``steps + 1`` steps from what it last saw, and
        is as uncertain as a forecast that far ahead. Rows beyond the last stay the last.
        """
        shift = min(max(0, steps), self.lead_steps - 1)
        if not shift:
            return self
        return Calibration(
            errors=self.errors[shift:],
            scale_floor=self.scale_floor,
            bin_edges=self.bin_edges,
            bin_errors=tuple(rows[shift:] for rows in self.bin_errors),
            bin_levels=self.bin_levels,
            point_errors=self.point_errors[shift:],
        )

    def quantile(self, q: float, steps: int) -> FloatArray:
        """The pooled ``q``-th error quantile for lead times ``1..steps`` (the last row beyond)."""
        cached = self._cache.get(q)
        if cached is None:
            cached = np.array([float(np.quantile(row, q)) for row in self.errors])
            self._cache[q] = cached
        return _extend(cached, steps)

    def _bins_of(
        self, level: FloatArray
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
        """For each level, the two bins it reads and the weight of the second.

        A level between two bins' middle levels reads both, weighted linearly by its distance
        to each; one below the first middle or above the last reads that bin alone (weight
        0), and so does every level of a calibration built without middles.
        """
        if not self.bin_levels.size:
            which = np.searchsorted(self.bin_edges, level, side="right")
            return which, which, np.zeros(np.shape(level))
        # Cheap on the few levels a plan reads at a time (clip and nan_to_num cost more than
        # the rest together). Inside the middles, ``0 <= level - middles[low] < span``; outside
        # them, or at a NaN level (sorted last), ``low == high``: a span of 0, and weight 0.
        middles = self.bin_levels
        above = middles.searchsorted(level, side="right")
        low = np.maximum(above - 1, 0)
        high = np.minimum(above, middles.size - 1)
        span = middles[high] - middles[low]
        weight = np.zeros(span.shape)
        np.divide(level - middles[low], span, out=weight, where=span > 0.0)
        return low, high, weight

    def spread(self, q: float, point: FloatArray) -> FloatArray:
        """The ``q``-th error quantile for each step of ``point``, from the bins of its level:
        its bin's, or between two bins' middle levels, both bins' weighted by its distance
        to each (the band is continuous in the level)."""
        if not self.bin_errors:
            return self.quantile(q, point.size)
        table = self._bin_cache.get(q)
        if table is None:
            # Filled in as forecasts ask: a forecast reads one or two bins at each lead, and a
            # fit's forecasts seldom reach every bin, so most of a table would never be read.
            table = np.full((len(self.bin_errors), len(self.bin_errors[0])), np.nan)
            self._bin_cache[q] = table
        low, high, weight = self._bins_of(point)
        lead = np.minimum(np.arange(point.size), table.shape[1] - 1)
        first, second = table[low, lead], table[high, lead]
        if np.isnan(first + second).any():  # a row's quantile is never NaN: one not read yet
            for which in (low, high):
                unread = np.isnan(table[which, lead])
                for b, h in set(zip(which[unread].tolist(), lead[unread].tolist(), strict=True)):
                    table[b, h] = float(np.quantile(self.bin_errors[b][h], q))
            first, second = table[low, lead], table[high, lead]
        # At weight 0 exactly ``first``: ``second`` is finite.
        return np.asarray(first + weight * (second - first), dtype=np.float64)

    def exceedance(
        self, point: FloatArray, thresholds: FloatArray, steps: npt.NDArray[np.int64]
    ) -> FloatArray:
        """``P(actual > threshold)`` for each threshold (rows) and each of ``steps`` (columns,
        indices into ``point``), from the errors of the step's lead time and of its level's bins
        (weighted as :meth:`spread` weighs them)."""
        limits = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        out = np.empty((limits.size, steps.size), dtype=np.float64)
        levels = np.asarray(point, dtype=np.float64)[steps]
        low, high, weight = self._bins_of(levels) if self.bin_errors else (steps, steps, levels)
        for column, i in enumerate(steps.tolist()):
            level = float(levels[column])
            lead = min(i, self.lead_steps - 1)
            scale = max(max(level, 0.0) + self.scale_floor, 1e-12)
            z = (limits - level) / scale
            if not self.bin_errors:
                row = self.errors[lead]
                out[:, column] = 1.0 - np.searchsorted(row, z, side="right") / row.size
                continue
            row = self.bin_errors[int(low[column])][lead]
            below = 1.0 - np.searchsorted(row, z, side="right") / row.size
            share = float(weight[column])
            if share > 0.0:
                row = self.bin_errors[int(high[column])][lead]
                above = 1.0 - np.searchsorted(row, z, side="right") / row.size
                below = below + share * (above - below)
            out[:, column] = below
        return out


class _Row:
    """One row of a calibration: its errors, sorted and thinned (:func:`_sorted_row`) when
    first read. The errors and whether they are sorted are one attribute, read and written
    at once: readers in several threads may each sort a row, and get equal values (in arrays
    that may be distinct), never a row half made. A row pickles sorted."""

    __slots__ = ("_state",)

    def __init__(self, errors: FloatArray, ordered: bool = False) -> None:
        self._state = (errors, ordered)

    @classmethod
    def of(cls, errors: FloatArray, *, ordered: bool = False) -> _Row:
        """A row sorted now. ``ordered``: ``errors`` are sorted already."""
        return cls(_sorted_row(errors, ordered=ordered), True)

    def read(self) -> FloatArray:
        values, ordered = self._state
        if not ordered:
            values = _sorted_row(values)
            self._state = (values, True)
        return values

    def __reduce__(self) -> tuple[type[_Row], tuple[FloatArray, bool]]:
        return (_Row, (self.read(), True))


class _Rows(Sequence[FloatArray]):
    """A calibration's rows, one per lead time, each sorted when first read (:class:`_Row`).
    A slice shares the rows: a row it sorts is sorted for the whole."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[_Row]) -> None:
        self._rows = tuple(rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> FloatArray: ...

    @overload
    def __getitem__(self, index: slice) -> _Rows: ...

    def __getitem__(self, index: int | slice) -> FloatArray | _Rows:
        if isinstance(index, slice):
            return _Rows(self._rows[index])
        return self._rows[index].read()

    def __iter__(self) -> Iterator[FloatArray]:
        return (row.read() for row in self._rows)

    def __repr__(self) -> str:
        return f"_Rows({len(self._rows)} rows)"

    def __reduce__(self) -> tuple[type[_Rows], tuple[tuple[_Row, ...]]]:
        return (_Rows, (self._rows,))

    def __eq__(self, other: object) -> bool:
        """Rows equal row by row, value by value (another :class:`_Rows` or a sequence)."""
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(np.array_equal(mine, theirs) for mine, theirs in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


def _sorted_row(errors: FloatArray, *, ordered: bool = False) -> FloatArray:
    """``errors`` sorted, thinned to :data:`MAX_ROW_ERRORS` order statistics when longer.
    ``ordered``: they are sorted already.

    The order statistic kept for each of the evenly spaced ranks ``(k + 0.5) / n`` stands for
    the errors around it, so the row's empirical distribution stays within ``1 / n``.
    """
    if not errors.size:
        return np.zeros(1)
    row = errors if ordered else np.sort(errors)
    if row.size <= MAX_ROW_ERRORS:
        return row
    ranks = ((np.arange(MAX_ROW_ERRORS) + 0.5) * (row.size / MAX_ROW_ERRORS)).astype(np.int64)
    return row[ranks]


def _extend(values: FloatArray, steps: int) -> FloatArray:
    if steps <= values.size:
        return values[:steps]
    return np.concatenate([values, np.full(steps - values.size, values[-1])])


@dataclass(frozen=True, eq=False)
class Forecast:
    """A point path and calibrated upper quantiles; ``point[i]`` is at ``origin + (i+1)*step``."""

    model: str
    origin: float
    step: float
    point: FloatArray
    calibration: Calibration

    def times(self) -> FloatArray:
        return self.origin + self.step * np.arange(1, self.point.size + 1, dtype=np.float64)

    @property
    def end(self) -> float:
        return self.origin + self.step * self.point.size

    def upper(self, q: float) -> FloatArray:
        """The ``q`` quantile path (``0.5 <= q < 1``): never negative, never below the point."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        spread = self.calibration.spread(q, self.point)
        scale = self.point + self.calibration.scale_floor
        return np.maximum(
            np.maximum(self.point + spread * scale, 0.0), self.point if q >= 0.5 else 0.0
        )

    def exceedance(self, thresholds: FloatArray, steps: npt.NDArray[np.int64]) -> FloatArray:
        """``P(load > threshold)`` for each threshold (rows) at each of ``steps`` (columns)."""
        return self.calibration.exceedance(self.point, thresholds, steps)

    def path(self, q: float | None = None) -> FloatArray:
        return self.point if q is None else self.upper(q)

    def value_at(self, when: float, q: float | None = None) -> float:
        """Linear interpolation of the point (or the ``q`` quantile) at ``when``."""
        return float(np.interp(when, self.times(), self.path(q)))

    def max_between(self, start: float, end: float, q: float | None = None) -> float:
        """The highest value of the point (or the ``q`` quantile) path over ``[start, end]``.

        Each step's value covers the bucket that ends at its time, so a bucket that overlaps
        the window counts.
        """
        times = self.times()
        values = self.path(q)
        inside = (times > start) & (times - self.step < end)
        if inside.any():
            return float(values[inside].max())
        return float(np.interp(start, times, values))


@dataclass(frozen=True, eq=False)
class PreparedHistory:
    """A history on the model's grid: validated, gaps filled, trailing gap trimmed."""

    start: float
    step: float
    values: FloatArray
    missing_fraction: float
    #: Per bucket (rows aligned with ``values``), the samples it was averaged from, NaN where
    #: a sample is missing: the load within a bucket, which capacity serves sample by sample.
    #: None when the history was not aggregated (one sample per bucket).
    samples: FloatArray | None = None
    #: Which ``values`` were filled in over a gap, from the samples on both sides of it. None
    #: when none was.
    filled: BoolArray | None = None

    @property
    def end(self) -> float:
        return self.start + self.step * (self.values.size - 1)

    @property
    def known(self) -> BoolArray:
        """Which ``values`` were observed: a filled one is no load anyone saw, and a forecast
        made inside its gap would have used the first sample after the gap."""
        return np.ones(self.values.size, dtype=bool) if self.filled is None else ~self.filled

    def within_tail(self, values: FloatArray) -> FloatArray | None:
        """Each sample's deviation from ``values`` (the last buckets' values, as a model keeps
        them), one row per value. A bucket without a known sample, or older than the history,
        holds one deviation of 0: its value alone."""
        if self.samples is None:
            return None
        size = values.size
        tail = self.samples[max(0, self.samples.shape[0] - size) :]
        out = np.full((size, tail.shape[1]), np.nan)
        out[size - tail.shape[0] :] = tail - values[size - tail.shape[0] :, None]
        empty = ~np.isfinite(out).any(axis=1)
        out[empty, 0] = 0.0
        return out

    def season_steps(self, period: float) -> int:
        return max(1, round(period / self.step))


def prepare_history(
    history: LoadSeries, *, fit_step: float, min_points: int, what: str = "history"
) -> PreparedHistory:
    """Aggregate to ``fit_step``, validate and fill gaps; raise when too little is left.

    - negative values count as missing samples (no load is below zero: a glitch, or a query
      that subtracts); when they leave too little, :class:`InvalidHistory` names the first;
    - infinities count as missing samples;
    - interior gaps are filled by linear interpolation, a trailing gap is trimmed (the model's
      origin is then the last known sample and the caller sees its age);
    - fewer than ``min_points`` known samples, or less than half the span known, raise
      :class:`InsufficientHistory`.
    """
    values = np.array(history.values, dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    negative = np.flatnonzero(values < 0)
    refused = None
    if negative.size:
        when = history.start + history.step * float(negative[0])
        refused = InvalidHistory(
            f"{what} holds {negative.size} negative loads (the first {values[negative[0]]:g} "
            f"at t={when:.0f}), too many to read as missing samples; load must be a count or "
            "a rate, never below zero: the query is wrong"
        )
    series = LoadSeries(history.start, history.step, _loads_only(values))
    block = None
    if fit_step > history.step:
        _, block = series.buckets(fit_step)  # the samples each mean below is taken over
        series = series.aggregate(fit_step)
    # The negatives are blamed only where they make the difference: read as loads, they would
    # have left enough (else the history is short, negatives or not).
    blamed = refused if refused is not None and _enough(history, fit_step, min_points) else None
    known = np.flatnonzero(~np.isnan(series.values))
    if known.size < min_points:
        raise blamed or InsufficientHistory(
            f"{what} has {known.size} usable samples at a {series.step:.0f}s step, "
            f"{min_points} are needed"
        )
    first, last = int(known[0]), int(known[-1])
    span = series.values[first : last + 1]
    missing = float(np.isnan(span).mean())
    if missing > 0.5:
        raise blamed or InsufficientHistory(f"{what} is {missing:.0%} missing samples")
    filled = None
    if missing:
        idx = np.arange(span.size)
        filled = np.isnan(span)
        span = np.interp(idx, idx[~filled], span[~filled])
    samples = None if block is None else block[first : last + 1]
    return PreparedHistory(
        series.start + first * series.step, series.step, span, missing, samples, filled
    )


def _enough(history: LoadSeries, fit_step: float, min_points: int) -> bool:
    """Whether ``history`` would be long and whole enough with its negatives read as loads."""
    values = np.where(np.isfinite(history.values), history.values, np.nan)
    series = LoadSeries(history.start, history.step, values)
    if fit_step > history.step:
        series = series.aggregate(fit_step)
    known = np.flatnonzero(~np.isnan(series.values))
    if known.size < min_points:
        return False
    return float(np.isnan(series.values[known[0] : known[-1] + 1]).mean()) <= 0.5


def _loads_only(values: FloatArray) -> FloatArray:
    """``values`` with every negative one missing (NaN): no load is below zero."""
    return np.where(values < 0, np.nan, values)


def new_observations(fitted_until: float, history: LoadSeries, fit_step: float) -> FloatArray:
    """Aggregated samples of ``history`` strictly after ``fitted_until`` (NaN: missing).

    A negative sample is missing, as in :func:`prepare_history`: no load is below zero.
    """
    recent = history.since(fitted_until - fit_step)
    recent = LoadSeries(recent.start, recent.step, _loads_only(recent.values))
    if fit_step > history.step:
        recent = recent.aggregate(fit_step)
    later = recent.times() > fitted_until + 1e-6
    return np.asarray(recent.values[later], dtype=np.float64)


class FittedModel(ABC):
    """A model fitted up to ``fitted_until``; forecasts from any later history.

    ``estimated_until`` is the end of the history its parameters were estimated on: equal to
    ``fitted_until`` after a full fit, older after a cheap refit that only advanced the state.
    """

    name: str
    step: float
    fitted_until: float
    estimated_until: float
    calibration: Calibration
    fit_seconds: float
    #: Honest forecasts kept for calibration across refits (see ``models.smoothing``); models
    #: whose in-sample errors are already honest (seasonal naive) keep none.
    record: Any = None

    @property
    def cheaply_refitted(self) -> bool:
        """True when this fit reused older parameters instead of estimating them."""
        return self.estimated_until < self.fitted_until

    def forecast(self, history: LoadSeries, *, horizon: float) -> Forecast:
        """Advance over samples after the fit; forecast ``horizon`` seconds past the history.

        The band counts its lead times from the last bucket observed: after a gap at the end
        of the history, the first step is as far from what the model saw as the gap is long
        (:meth:`Calibration.after`).
        """
        observed = new_observations(self.fitted_until, history, self.step)
        origin = self.fitted_until + self.step * observed.size
        steps = max(1, math.ceil((history.end + horizon - origin) / self.step - 1e-9))
        point = np.asarray(self._project(observed, steps), dtype=np.float64)
        if not np.isfinite(point).all():
            # Non-finite is a numerical failure; turning it into 0 would be a silent zero.
            raise FitFailed(f"model {self.name} produced a non-finite forecast")
        known = np.flatnonzero(np.isfinite(observed))
        unseen = observed.size - (int(known[-1]) + 1 if known.size else 0)
        calibration = self.calibration.after(unseen)
        return Forecast(self.name, origin, self.step, np.maximum(point, 0.0), calibration)

    def backtest_paths(self, observed: FloatArray, lead: int) -> FloatArray:
        """Forecasts made honestly through ``observed``: row ``i`` holds the ``lead`` steps after
        ``observed[:i]`` (each row only uses what came before its origin).

        Models override this with a vectorised version; the default re-advances from the fit for
        every origin.
        """
        rows = [self._project(observed[:i], lead) for i in range(observed.size)]
        return np.array(rows, dtype=np.float64).reshape(observed.size, lead)

    @abstractmethod
    def _project(self, observed: FloatArray, steps: int) -> FloatArray:
        """Advance the state over ``observed`` (NaN = missing) and return ``steps`` point values.

        Must not change the fitted model: it forecasts again from later histories.
        """


class Forecaster(ABC):
    """A forecasting model: one module plus one line in :mod:`forecasts.registry`."""

    name: ClassVar[str]
    #: Whether its fitted models keep an honest forecast record for calibration.
    keeps_record: ClassVar[bool] = False

    def __init__(
        self, *, fit_step: float = 300.0, max_horizon: float = 2 * 3600.0, **_: object
    ) -> None:
        if fit_step <= 0 or max_horizon <= 0:
            raise ValueError("fit_step and max_horizon must be positive")
        self.fit_step = fit_step
        self.max_horizon = max_horizon

    def lead_steps(self, step: float) -> int:
        return max(1, math.ceil(self.max_horizon / step))

    def least_points(self, step: float) -> int:
        """The fewest known samples at ``step`` that this model fits on."""
        return self.lead_steps(step) + 2

    def fit(self, history: LoadSeries, *, previous: FittedModel | None = None) -> FittedModel:
        """Fit on ``history``; ``previous`` (a fit of the same model) may make it cheap."""
        started = time.perf_counter()
        fitted = self._fit(history, previous=previous)
        fitted.fit_seconds = time.perf_counter() - started
        return fitted

    @abstractmethod
    def _fit(self, history: LoadSeries, *, previous: FittedModel | None) -> FittedModel: ...


def values_after(
    prepared: PreparedHistory, fitted_until: float
) -> tuple[FloatArray, BoolArray] | None:
    """The prepared values strictly after ``fitted_until``, and which of them were observed
    (False: filled in over a gap); None when ``prepared`` does not reach back to
    ``fitted_until`` (then a cheap refit cannot continue the earlier state)."""
    position = (fitted_until - prepared.start) / prepared.step
    index = round(position)
    if abs(position - index) > 1e-6 or index < 0 or index >= prepared.values.size:
        return None
    return prepared.values[index + 1 :], prepared.known[index + 1 :]


def scale_floor(values: FloatArray) -> float:
    """Absolute error scale near zero load: a tenth of the typical level (never 0)."""
    typical = float(np.median(values)) if values.size else 0.0
    return max(0.1 * typical, 1e-9 + 0.01 * float(np.max(values, initial=0.0)), 1e-9)


#: A lasting change of level: the median load over a day at least this many times the median
#: over the day before, or at most its inverse. A median ignores a spike of a few hours, and a
#: day holds a whole daily cycle, so neither a spike nor the time of day reads as a change; a
#: weekend, a holiday or a snowstorm moves a day's load by well under half (New York taxi's
#: daily means move by at most 1.8 times from one day to the next).
LEVEL_CHANGE = 2.0


def level_changes(prepared: PreparedHistory) -> tuple[float, ...]:
    """When the load's level changed lastingly (:data:`LEVEL_CHANGE`) with a whole day of the
    new level seen, oldest first: the time of the first value at the new level.

    A day's median flags a change, on the hour: a spike does not move it. A median moves once
    half the day has changed, so each run of flagged hours is one change, placed at the step
    within it, give or take an hour, where the day's mean moves most, as it does at a step of
    the level. A run in which the same change, up or down, was also made a week before (where
    the history holds the two days then) is a weekly cycle, not a change: weekends off, and
    back on Mondays. A history with fewer than two steps a day has no daily cycle to compare,
    and no change.
    """
    values = prepared.values
    day = round(DAY / prepared.step)
    hour = max(1, round(3600.0 / prepared.step))
    week = 7 * day
    if day < 2 or values.size < 2 * day:
        return ()
    # A change at t compares the median of the day from t with that of the day before it.
    at = np.arange(day, values.size - day + 1, hour)
    days = np.lib.stride_tricks.sliding_window_view(values, day)
    if day % hour == 0:  # every day compared starts on the hour: one median each
        medians = np.median(days[::hour], axis=1)

        def median(starts: npt.NDArray[np.int64]) -> FloatArray:
            return np.asarray(medians[starts // hour])
    else:

        def median(starts: npt.NDArray[np.int64]) -> FloatArray:
            return np.asarray(np.median(days[starts], axis=1))

    moved = _moved(median(at), median(at - day))
    flagged = np.abs(moved) >= math.log(LEVEL_CHANGE)
    # The same change a week before, where the history holds it: a weekly cycle.
    weekly = np.zeros(at.size, dtype=bool)
    known = at >= week + day
    before = _moved(median(at[known] - week), median(at[known] - week - day))
    weekly[known] = (np.abs(before) >= math.log(LEVEL_CHANGE)) & (
        np.sign(before) == np.sign(moved[known])
    )
    edges = np.diff(np.concatenate([[0], flagged.astype(np.int8), [0]]))
    sums = np.concatenate([[0.0], np.cumsum(values)])
    changes = []
    for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if weekly[first:end].any():
            continue
        # Every step from an hour before the run to an hour after it, where a day on each side
        # exists; the largest move of the mean, in load (a day of no load has no ratio).
        steps = np.arange(
            max(day, at[first] - hour), min(values.size - day, at[end - 1] + hour) + 1
        )
        moves = np.abs((sums[steps + day] - sums[steps]) - (sums[steps] - sums[steps - day]))
        change = int(steps[int(np.argmax(moves))])
        changes.append(prepared.start + prepared.step * float(change))
    return tuple(changes)


def _moved(after: FloatArray, before: FloatArray) -> FloatArray:
    """``log(after / before)`` (no load on both: 0; load after none: infinite)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(
            np.nan_to_num(np.log(after / before), nan=0.0, posinf=np.inf, neginf=-np.inf)
        )


def calibrating_origins(
    times: FloatArray, changes: tuple[float, ...], *, reach: float, step: float
) -> npt.NDArray[np.bool_]:
    """Which forecasts, made at ``times``, calibrate a band after lasting ``changes`` of level
    (:func:`level_changes`).

    The errors of forecasts that reach across a change (made less than ``reach`` before it,
    and an hour more, as a change is placed give or take a step or two) and of those made
    before the model had seen a day of the new level are errors it would no longer make: the
    jump, and the hours its level and profile took to follow. Kept for the calibration's week,
    they would widen the band at every hour whose level they share, for days after the
    forecast has settled. Errors from before, relative to the level the model then forecast,
    still say how far its forecasts stray, and stay. When fewer than a day's worth of
    forecasts would be left, all are kept: a band of a few errors is no band.
    """
    settled = np.ones(times.size, dtype=bool)
    for change in changes:
        settled &= (times < change - reach - 3600.0 - 1e-6) | (times >= change + DAY - 1e-6)
    return settled if int(settled.sum()) >= round(DAY / step) else np.ones_like(settled)


def origins_matrix(
    values: FloatArray, first_origin: int, lead: int
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Origins ``first_origin..n-2`` and actuals ``values[o+1 .. o+lead]`` (NaN past the end)."""
    n = values.size
    origins = np.arange(first_origin, n - 1, dtype=np.int64)
    idx = origins[:, None] + np.arange(1, lead + 1)[None, :]
    actual = np.where(idx < n, values[np.minimum(idx, n - 1)], np.nan)
    return origins, actual


def origin_means(errors: FloatArray) -> FloatArray:
    """The mean of each row's known (finite) ``errors``, one row per origin (NaN where none is
    known)."""
    known = np.isfinite(errors)
    counts = known.sum(axis=1)
    sums = np.where(known, errors, 0.0).sum(axis=1)
    means: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means


#: The one-sided level at which a rival must beat a choice made before to replace it (a
#: model in ``auto``, a profile width in MSTL).
SIGNIFICANCE = 0.05


def significantly_lower(challenger: FloatArray, held: FloatArray, *, lead: int) -> bool:
    """Whether ``challenger``'s per-origin losses are lower than ``held``'s beyond chance.

    The Diebold-Mariano test (Diebold and Mariano, "Comparing predictive accuracy", Journal of
    Business & Economic Statistics 13(3), 1995): the mean of the loss differences over its
    standard error, here Newey and West's (1987) with ``lead`` lags (forecasts from neighbouring
    origins share their errors up to a lead apart), one-sided at :data:`SIGNIFICANCE`.
    Origins where either loss is unknown are left out; with too few origins to estimate the
    error, the answer is no.
    """
    if challenger.shape != held.shape:
        return False
    diff = challenger - held
    diff = diff[np.isfinite(diff)]
    if diff.size <= 2 * lead + 1:
        return False
    if np.ptp(diff) == 0.0:  # no spread: the t statistic is not a number, the answer plain
        return bool(diff[0] < 0)
    # Imported here: statsmodels takes a second to import, and only a full choice needs it.
    import statsmodels.api as sm

    fitted = sm.OLS(diff, np.ones((diff.size, 1))).fit(cov_type="HAC", cov_kwds={"maxlags": lead})
    t = float(fitted.tvalues[0])
    # The p-value is two-sided, from the normal distribution (HAC leaves ``use_t`` off): half
    # of it is the one-sided p-value of a negative mean.
    return math.isfinite(t) and t < 0 and float(fitted.pvalues[0]) / 2 < SIGNIFICANCE


Choice = TypeVar("Choice")


def unless_beaten(
    held: Choice,
    scores: Mapping[Choice, float],
    losses: Mapping[Choice, FloatArray],
    *,
    lead: int,
) -> Choice:
    """``held``, unless a rival beats it beyond chance: then the rival with the lowest score
    among those that do.

    A rival beats it when its score is lower and its per-origin ``losses`` are lower beyond
    chance (:func:`significantly_lower`). The lowest score of all does not win by itself: a
    rival lower than ``held`` by no more than chance is no reason to swap, whatever another
    rival did.
    """
    beaters = [
        rival
        for rival, score in scores.items()
        if rival != held
        and score < scores[held]
        and significantly_lower(losses[rival], losses[held], lead=lead)
    ]
    return min(beaters, key=scores.__getitem__) if beaters else held
