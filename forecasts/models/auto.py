"""``auto``: pick the model per series by a rolling-origin backtest on its own recent past.

A full fit:

1. holds out the last ``holdout`` of the history (default 2 days; at most a quarter of the
   history, so that short histories still leave most of it for fitting). When that would
   leave a candidate too little to fit on, though the whole history is enough for it, the
   hold-out is what the history can spare beyond that candidate's need, if that is at least a
   quarter of a day (and a lead): otherwise a history of two and a half days would be judged
   without MSTL and Holt-Winters, which need two days of the three-quarters left;
2. fits every candidate (seasonal-naive, holt-winters, mstl) on the history before the
   hold-out; a candidate that cannot fit that much history is left out;
3. advances each fitted candidate through the hold-out, forecasting ``1..lead`` steps (up to
   ``max_horizon``) from every step: forecasts only use data before their origin;
4. chooses the lowest mean absolute error of those point forecasts (MAE: the planner sizes
   capacity from the point plus a calibrated band, so the point error is what the choice can
   improve; the band is calibrated afterwards on the winner's own errors either way). A model
   chosen before against the same candidates keeps its place unless one of them is better by
   more than chance: a one-sided Diebold-Mariano test at 5% of the per-origin errors, with
   Newey-West standard errors for the overlapping leads; then the place goes to the lowest
   error among the candidates that are, not to a lower one that is not. Two models a hold-out
   cannot tell apart would otherwise swap on its noise, and each swap changes the plan's band
   at once.
   Without such a model (the first choice, or one made before a candidate could be scored),
   the richest candidate scored holds the place on the same terms: seasonal naive repeats a
   noisy day, noise and all, where the smoothing models average it away, and a short hold-out
   seldom tells them apart;
5. fits the winner on the whole history, and calibrates its band with the honest hold-out
   forecasts in place of its in-sample ones for the hold-out days (in-sample errors of a model
   fitted on the very data are optimistic; MSTL's much more than the others'). Before the
   hold-out, the winner's own record stands: an earlier fit's honest forecasts, and a weekly
   MSTL's forecasts by a profile that did not see the calibration week.

When no candidate can be scored (a history too short for a hold-out), ``auto`` uses the first
candidate, in the order above, that fits the whole history. A choice made while the history was
too short to score some candidate is made again as soon as it is long enough, not a day later;
so is one where a candidate the history was long enough for could not be scored (a gap left
its training part too few samples).

The fitted model is the winner's, under the winner's name: ``fitted.name == "mstl"``, with
``fitted.chosen_by == "auto"`` and ``fitted.holdout_mae`` holding every candidate's score, so a
status can say both what forecast and why. A refit with ``previous`` within
``reestimate_every`` of the choice reuses the choice and refits the winner cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecasts.base import (
    DAY,
    Calibration,
    FittedModel,
    FloatArray,
    Forecaster,
    new_observations,
    origin_means,
    prepare_history,
    unless_beaten,
)
from forecasts.errors import InsufficientHistory
from forecasts.models.holt_winters import HoltWinters
from forecasts.models.mstl import MSTL
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.models.smoothing import (
    REESTIMATE_EVERY,
    ForecastRecord,
    carried_record,
    merge_records,
)
from forecasts.series import LoadSeries

__all__ = ["Auto"]

CANDIDATES: tuple[type[Forecaster], ...] = (SeasonalNaive, HoltWinters, MSTL)


@dataclass(eq=False)
class _FittedAuto(FittedModel):
    """The winner's fitted model, named after it, remembering that ``auto`` chose it."""

    name: str
    step: float
    fitted_until: float
    estimated_until: float
    calibration: Calibration
    fit_seconds: float
    chosen: FittedModel
    chosen_at: float  # end of the history the choice was made on
    holdout_mae: dict[str, float] = field(default_factory=dict)
    #: The candidates scored when the choice was made.
    scorable: frozenset[str] = frozenset()
    chosen_by: str = "auto"
    #: The winner's hold-out MAE relative to the mean load there (None without a hold-out).
    error: float | None = None

    def _project(self, observed: FloatArray, steps: int) -> FloatArray:
        return self.chosen._project(observed, steps)

    def backtest_paths(self, observed: FloatArray, lead: int) -> FloatArray:
        return self.chosen.backtest_paths(observed, lead)


def _wrap(
    chosen: FittedModel,
    *,
    chosen_at: float,
    scores: dict[str, float],
    error: float | None,
    scorable: frozenset[str],
) -> _FittedAuto:
    return _FittedAuto(
        name=chosen.name,
        step=chosen.step,
        fitted_until=chosen.fitted_until,
        estimated_until=chosen.estimated_until,
        calibration=chosen.calibration,
        fit_seconds=0.0,
        chosen=chosen,
        chosen_at=chosen_at,
        holdout_mae=scores,
        error=error,
        scorable=scorable,
    )


class Auto(Forecaster):
    """The candidate with the lowest hold-out MAE, refitted on the whole history.

    Options: ``holdout`` (default 2 days), ``reestimate_every`` (default 1 day); other options
    (``fit_step``, ``max_horizon``, ...) are passed to every candidate.
    """

    name = "auto"

    def __init__(
        self,
        *,
        holdout: float = 2 * DAY,
        reestimate_every: float = REESTIMATE_EVERY,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.holdout = holdout
        self.reestimate_every = reestimate_every
        options: dict[str, Any] = dict(kwargs, reestimate_every=reestimate_every)
        self.candidates: dict[str, Forecaster] = {
            model.name: model(**options) for model in CANDIDATES
        }

    def least_points(self, step: float) -> int:
        """The fewest known samples any candidate fits on: with fewer, none can be chosen."""
        return min(candidate.least_points(step) for candidate in self.candidates.values())

    def _fit(self, history: LoadSeries, *, previous: FittedModel | None) -> FittedModel:
        step = max(self.fit_step, history.step)
        lead = self.lead_steps(step)
        # Validates the whole history (negative, missing, too short for every candidate) before
        # anything is fitted: a short history names the least need, not the last candidate's.
        prepared = prepare_history(
            history, fit_step=self.fit_step, min_points=self.least_points(step), what="history"
        )
        span = prepared.end - prepared.start
        scorable = self._scorable(span, prepared.step)
        if (
            isinstance(previous, _FittedAuto)
            and previous.step == prepared.step
            and prepared.end - previous.chosen_at < self.reestimate_every
            and prepared.end >= previous.fitted_until
            and scorable <= previous.scorable
        ):
            forecaster = self.candidates[previous.chosen.name]
            refitted = forecaster.fit(history, previous=previous.chosen)
            return _wrap(
                refitted,
                chosen_at=previous.chosen_at,
                scores=previous.holdout_mae,
                error=previous.error,
                scorable=previous.scorable,
            )
        scores, records, levels, losses = self._scores(
            history, prepared.end, self._holdout(span, prepared.step), lead
        )
        order = sorted(scores, key=scores.__getitem__) if scores else list(self.candidates)
        preferred = _preferred(previous, scores, losses, lead=lead)
        if preferred is not None:
            order = [preferred, *(name for name in order if name != preferred)]
        for name in order:
            forecaster = self.candidates[name]
            # The same model chosen again is re-estimated from its earlier fit, as it would be
            # on its own: choices it made within (MSTL's profile width) are kept the same way.
            earlier = None
            if (
                isinstance(previous, _FittedAuto)
                and previous.chosen.name == name
                and name in records
                and prepared.end - previous.chosen.estimated_until >= self.reestimate_every
            ):
                earlier = previous.chosen
            try:
                chosen = forecaster.fit(history, previous=earlier)
            except InsufficientHistory:
                if name == order[-1]:
                    raise
                continue
            if forecaster.keeps_record and name in records:
                older = None
                if isinstance(previous, _FittedAuto) and previous.chosen.name == name:
                    older = carried_record(previous.chosen, prepared, lead)
                # Honest rows first: the hold-out's, then the earlier fit's; before them, the
                # rows the fit made itself (weekly MSTL's forecasts by a profile that did not
                # see them), which stand in for in-sample ones.
                made = merge_records(chosen.record, older) if older is not None else chosen.record
                chosen.record = merge_records(made, records[name])
                # A refit with nothing new only recalibrates, now on the honest hold-out errors.
                chosen = forecaster.fit(history, previous=chosen)
            error = scores[name] / levels[name] if name in scores and levels[name] > 0 else None
            # What was scored, not what the span allowed: a candidate a gap kept from its score
            # makes the next refit choose again, once the gap lets it fit.
            return _wrap(
                chosen,
                chosen_at=prepared.end,
                scores=scores,
                error=error,
                scorable=frozenset(scores),
            )
        raise InsufficientHistory("no forecasting model can fit this history")  # pragma: no cover

    def _holdout(self, span: float, step: float) -> float:
        """The hold-out for a history of ``span`` seconds on a grid of ``step`` seconds (item 1
        of the module's docstring)."""
        holdout = min(self.holdout, 0.25 * span)
        # One step more than the most points any candidate needs: the training part ends on
        # a sample, and its last bucket may be incomplete.
        spare = span - step * max(c.least_points(step) for c in self.candidates.values())
        if max(DAY / 4, step * self.lead_steps(step)) <= spare < holdout:
            holdout = spare
        return holdout

    def _scorable(self, span: float, step: float) -> frozenset[str]:
        """The candidates whose need fits what the hold-out leaves of ``span``."""
        left = span - self._holdout(span, step)
        return frozenset(
            name
            for name, candidate in self.candidates.items()
            if step * candidate.least_points(step) <= left
        )

    def _scores(
        self, history: LoadSeries, end: float, holdout: float, lead: int
    ) -> tuple[
        dict[str, float], dict[str, ForecastRecord], dict[str, float], dict[str, FloatArray]
    ]:
        """Hold-out MAE of every candidate that fits the history before the hold-out, the
        honest forecasts it made there, the mean load they were scored against, and the mean
        absolute error of the forecasts from each origin (NaN where nothing was known)."""
        training = history.until(end - holdout)
        scores: dict[str, float] = {}
        records: dict[str, ForecastRecord] = {}
        levels: dict[str, float] = {}
        losses: dict[str, FloatArray] = {}
        for name, forecaster in self.candidates.items():
            try:
                fitted = forecaster.fit(training)
            except InsufficientHistory:
                continue
            observed = new_observations(fitted.fitted_until, history.until(end), fitted.step)
            if observed.size == 0:
                continue
            paths = fitted.backtest_paths(observed, lead)
            idx = np.arange(observed.size)[:, None] + np.arange(lead)[None, :]
            inside = idx < observed.size
            actual = np.where(inside, observed[np.minimum(idx, observed.size - 1)], np.nan)
            errors = np.abs(actual - np.maximum(paths, 0.0))
            known = np.isfinite(errors)
            if known.any() and math.isfinite(score := float(errors[known].mean())):
                scores[name] = score
                times = fitted.fitted_until + fitted.step * np.arange(observed.size, dtype=float)
                records[name] = ForecastRecord(times, paths)
                levels[name] = float(np.abs(actual[known]).mean())
                losses[name] = origin_means(errors)
        return scores, records, levels, losses


def _preferred(
    previous: FittedModel | None,
    scores: dict[str, float],
    losses: dict[str, FloatArray],
    *,
    lead: int,
) -> str | None:
    """The model to fit first: the one that holds the place, unless a candidate beats it
    beyond chance, and then the lowest score among the candidates that do
    (:func:`~forecasts.base.unless_beaten`).

    The place is held by the model chosen before, when it is scored now and faced, at that
    choice, every candidate scored now: a model chosen without facing a candidate (too short a
    history to score it) holds no place against it. Otherwise it is held by the richest
    candidate scored, the last of :data:`CANDIDATES`: seasonal naive repeats one noisy day, so
    its errors carry that day's noise on top of the next one's where the smoothing models
    average it away, and a hold-out of a few hours rarely tells them apart. None when nothing
    is scored.
    """
    held: str | None
    if (
        isinstance(previous, _FittedAuto)
        and previous.chosen.name in losses
        and all(name in previous.holdout_mae for name in scores)
    ):
        held = previous.chosen.name
    else:
        held = next((model.name for model in reversed(CANDIDATES) if model.name in losses), None)
    if held is None:
        return None
    return unless_beaten(held, scores, losses, lead=lead)
