"""MSTL: daily plus weekly seasonal profiles, and a damped-trend level for what remains.

1. statsmodels ``MSTL`` decomposes the history into a daily and a weekly seasonal component.
   The weekly one is only used when the history holds *more* than three weeks: MSTL drops a
   period that is not shorter than half the series, a weekly profile from fewer than two weeks
   is one week's noise, and the band is calibrated on the last week, which must not be one of
   the two (item 5). With the operator's default 14-day history the model is therefore daily
   only; give it ``history: 28d`` (its window) for the weekly cycle: ``auto`` judges it on
   the history less a two-day hold-out, which must hold the three weeks too. LOESS runs with
   jumps of a tenth of the daily period (R's ``stl`` default is a tenth of each window), which
   keeps a 4-week decomposition at 5 minutes under a second.
2. The season used for forecasting is the *last* cycle of each component, repeated: what the
   most recent day (and week) looked like, smoothed within the cycle by a moving average whose
   width (none up to a sixth of the day) is chosen out of sample: the last day is held out and
   forecast with each width, and the lowest multi-step error wins. On a noisy series a profile
   taken from a few cycles is mostly their noise; on a clean one it keeps its detail. A
   re-estimation keeps the width chosen before unless a width with a lower error beats it
   beyond chance (the Diebold-Mariano test by which ``auto`` keeps its model), and then takes
   the lowest error among the widths that do. The history
   is deseasonalised with that same repeated profile, so the fitted state, its calibration
   and every later advance all see the season exactly as a forecast will.
3. The deseasonalised level follows damped-trend exponential smoothing (error-correction form,
   ``e = d - (l + phi*b)``, ``l += phi*b + alpha*e``, ``b = phi*b + alpha*beta*e``) whose
   ``alpha``, ``beta`` and ``phi`` are estimated by a grid search minimising the in-sample
   multi-step MAE over the forecast horizon (what the planner consumes), run with
   ``scipy.signal.lfilter`` so that the whole grid costs milliseconds.
4. The same parameters are then tried with each innovation ``e`` clipped at ``CLIP_SIGMAS``
   robust standard deviations of the in-sample innovations (1.4826 times their median
   absolute deviation): Huber's psi, as in robust exponential smoothing (Gelper, Fried and
   Croux, 2010). The clip is kept when it lowers the same in-sample loss. On a spiky series a
   spike a bucket or two long then moves the level and the trend no more than a three-sigma
   surprise would, instead of lifting the whole horizon for hours after it has passed; a
   lasting shift still moves them, bucket after bucket. On a smooth one whose level moves in
   large steps the loss keeps the plain filter.
5. The band is calibrated on the forecasts from the last ``calibration_window`` (a week). A
   first fit has no honest record of them, so they are made in sample. A daily profile is the
   last of seven days there, but a weekly one is that very week: it knew each forecast's own
   noise, and the band came out as narrow as half the errors that followed. With the weekly
   profile, the forecasts the band is made of use a profile decomposed from the history
   before the week (:meth:`MSTL._profile_held_out`), until honest ones replace them.

A refit with ``previous`` within ``reestimate_every`` (default one day) of its estimation keeps
the profiles and parameters, advances the level over the new samples and refreshes the
calibration.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.signal import lfilter

from forecasts.base import (
    WEEK,
    BoolArray,
    Calibration,
    FittedModel,
    FloatArray,
    PreparedHistory,
    origin_means,
    origins_matrix,
    scale_floor,
    unless_beaten,
    values_after,
)
from forecasts.errors import FitFailed
from forecasts.models.smoothing import (
    ForecastRecord,
    SmoothingForecaster,
    calibration_origins,
    damped_sums,
    merge_records,
)
from forecasts.series import LoadSeries

__all__ = ["CLIP_SIGMAS", "MSTL", "LevelParameters", "robust_parameters"]

_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
_BETAS = (0.05, 0.15)  # fraction of alpha that reaches the trend; 0 is tried as "no trend"
_PHIS = (0.8, 0.9, 0.95)
#: Innovations beyond this many robust standard deviations are clipped (the 3-sigma rule).
CLIP_SIGMAS = 3.0


@dataclass(frozen=True)
class LevelParameters:
    """Damped-trend smoothing of the deseasonalised series (``beta == 0``: no trend), its
    innovations clipped at ``clip`` (none by default)."""

    alpha: float
    beta: float
    phi: float
    clip: float = math.inf


def level_filter(
    params: LevelParameters, deseasonalised: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Level and trend after every sample, starting from the first value with no trend.

    The recursion ``x[t] = A x[t-1] + g d[t]`` is a linear filter; its transfer functions from
    ``d`` to the level and the trend are second order, so ``lfilter`` runs it in C. Starting
    from ``(d[0], 0)`` equals starting from zero on ``d - d[0]`` and adding ``d[0]`` back,
    because a constant with no trend is a fixed point of the recursion.
    """
    if math.isfinite(params.clip):  # not linear: the recursion itself, still O(n)
        level, trend = advance_level(
            params, deseasonalised[1:], level=float(deseasonalised[0]), trend=0.0
        )
        return np.concatenate([deseasonalised[:1], level]), np.concatenate([[0.0], trend])
    a, beta, phi = params.alpha, params.beta, params.phi
    g1, g2 = a, a * beta
    a11, a12, a21, a22 = 1 - g1, phi - g1 * phi, -g2, phi - g2 * phi
    denominator = [1.0, -(a11 + a22), a11 * a22 - a12 * a21]
    offset = float(deseasonalised[0])
    centred = deseasonalised - offset
    level = lfilter([g1, a12 * g2 - a22 * g1], denominator, centred) + offset
    trend = lfilter([g2, a21 * g1 - a11 * g2], denominator, centred)
    return np.asarray(level, dtype=np.float64), np.asarray(trend, dtype=np.float64)


def advance_level(
    params: LevelParameters, deseasonalised: FloatArray, *, level: float, trend: float
) -> tuple[FloatArray, FloatArray]:
    """The same recursion for a few new samples, in Python (NaN: no correction), the
    innovations clipped at ``params.clip``."""
    a, ab, phi, clip = params.alpha, params.alpha * params.beta, params.phi, params.clip
    levels: list[float] = []
    trends: list[float] = []
    for d in deseasonalised.tolist():
        expected = level + phi * trend
        error = 0.0 if d != d else min(clip, max(-clip, d - expected))
        level = expected + a * error
        trend = phi * trend + ab * error
        levels.append(level)
        trends.append(trend)
    return np.array(levels), np.array(trends)


def level_paths(
    params: LevelParameters, level: FloatArray, trend: FloatArray, origins: np.ndarray, lead: int
) -> FloatArray:
    """Deseasonalised forecasts of ``1..lead`` steps from each origin."""
    paths: FloatArray = (
        level[origins][:, None] + damped_sums(params.phi, lead)[None, :] * trend[origins][:, None]
    )
    return paths


def estimate_level(
    deseasonalised: FloatArray, *, lead: int, burn_in: int
) -> tuple[LevelParameters, float]:
    """The grid point with the lowest multi-step MAE after ``burn_in`` samples, and that loss
    (the MAE summed over leads ``1..lead``)."""
    candidates = [LevelParameters(a, 0.0, 1.0) for a in _ALPHAS]
    candidates += [LevelParameters(a, b, p) for a in _ALPHAS for b in _BETAS for p in _PHIS]
    best, best_loss = candidates[0], math.inf
    for params in candidates:
        loss = level_loss(params, deseasonalised, lead=lead, burn_in=burn_in)
        if loss < best_loss:
            best, best_loss = params, loss
    return best, best_loss


def level_loss(
    params: LevelParameters, deseasonalised: FloatArray, *, lead: int, burn_in: int
) -> float:
    """The in-sample MAE of ``params``' forecasts after ``burn_in``, summed over ``1..lead``."""
    n = deseasonalised.size
    level, trend = level_filter(params, deseasonalised)
    sums = damped_sums(params.phi, lead)
    loss = 0.0
    for h in range(1, lead + 1):
        errors = (
            deseasonalised[burn_in + h :]
            - level[burn_in : n - h]
            - sums[h - 1] * trend[burn_in : n - h]
        )
        loss += float(np.abs(errors).mean()) if errors.size else 0.0
    return loss


def level_errors(
    params: LevelParameters, deseasonalised: FloatArray, *, lead: int, burn_in: int
) -> FloatArray:
    """The mean absolute error over leads ``1..lead`` of ``params``' forecast from each origin
    after ``burn_in`` (over the leads the series still holds; NaN where it holds none)."""
    level, trend = level_filter(params, deseasonalised)
    origins, actual = origins_matrix(deseasonalised, burn_in, lead)
    return origin_means(np.abs(actual - level_paths(params, level, trend, origins, lead)))


def robust_parameters(params: LevelParameters, deseasonalised: FloatArray) -> LevelParameters:
    """``params`` with innovations clipped at ``CLIP_SIGMAS`` robust standard deviations of
    its in-sample one-step innovations (unclipped when they have no spread)."""
    level, trend = level_filter(params, deseasonalised)
    errors = deseasonalised[1:] - (level[:-1] + params.phi * trend[:-1])
    errors = errors[np.isfinite(errors)]
    if not errors.size:
        return params
    spread = 1.4826 * float(np.median(np.abs(errors - np.median(errors))))
    if not spread > 0.0:
        return params
    return replace(params, clip=CLIP_SIGMAS * spread)


#: Widths tried for smoothing the profile within its cycle, as fractions of the cycle (for a
#: daily cycle: none, 15 minutes, 30 minutes, an hour, two, four).
PROFILE_WIDTHS = (0.0, 1 / 96, 1 / 48, 1 / 24, 1 / 12, 1 / 6)


def smooth_cycle(cycle: FloatArray, width: int) -> FloatArray:
    """A circular centred moving average of ``width`` samples (odd; 1 leaves it as it is)."""
    if width <= 1:
        return cycle
    half = width // 2
    padded = np.concatenate([cycle[-half:], cycle, cycle[:half]])
    smoothed: FloatArray = np.convolve(padded, np.ones(width) / width, mode="valid")
    return smoothed


def profile_widths(period: int) -> tuple[int, ...]:
    """Odd sample counts for :data:`PROFILE_WIDTHS` of a ``period``-sample cycle, no repeats."""
    widths: list[int] = []
    for fraction in PROFILE_WIDTHS:
        width = 2 * math.floor(fraction * period / 2) + 1
        if width not in widths:
            widths.append(width)
    return tuple(widths)


@dataclass(eq=False)
class _FittedMSTL(FittedModel):
    name: str
    step: float
    fitted_until: float
    estimated_until: float
    calibration: Calibration
    fit_seconds: float
    params: LevelParameters
    floor: float
    profile: FloatArray  # the season, starting at the step after the estimation's last sample
    advanced: int  # samples since the estimation's last sample (phase into ``profile``)
    periods: tuple[int, ...]
    profile_width: int  # samples the profile was smoothed over within its cycle (1: not)
    # The last samples of the fit, their deseasonalised values, and the level and trend after each.
    values: FloatArray
    deseasonalised: FloatArray
    level: FloatArray
    trend: FloatArray
    # Which of ``values`` were observed (False: filled in over a gap).
    known: BoolArray
    record: ForecastRecord | None = None

    def season(self, start: int, count: int) -> FloatArray:
        """The seasonal profile for ``count`` steps from ``start`` steps after the estimation."""
        season: FloatArray = self.profile[(start + np.arange(count)) % self.profile.size]
        return season

    def _advanced(self, observed: FloatArray) -> tuple[FloatArray, FloatArray]:
        deseasonalised = observed - self.season(self.advanced, observed.size)
        level, trend = advance_level(
            self.params, deseasonalised, level=float(self.level[-1]), trend=float(self.trend[-1])
        )
        return np.concatenate([self.level[-1:], level]), np.concatenate([self.trend[-1:], trend])

    def _project(self, observed: FloatArray, steps: int) -> FloatArray:
        level, trend = self._advanced(observed)
        path: FloatArray = level_paths(
            self.params, level, trend, np.array([level.size - 1]), steps
        )[0]
        return path + self.season(self.advanced + observed.size, steps)

    def backtest_paths(self, observed: FloatArray, lead: int) -> FloatArray:
        level, trend = self._advanced(observed)
        origins = np.arange(observed.size, dtype=np.int64)
        paths = level_paths(self.params, level, trend, origins, lead)
        phases = self.advanced + origins[:, None] + np.arange(lead)[None, :]
        result: FloatArray = paths + self.profile[phases % self.profile.size]
        return result


class MSTL(SmoothingForecaster):
    """Daily (+ weekly beyond three weeks of history) MSTL profiles plus a damped-trend level.

    Options: ``window`` (history decomposed, default 28 days: four weekly cycles),
    ``reestimate_every`` (default 1 day), ``calibration_window`` (default 7 days).
    """

    name = "mstl"
    default_window = 4 * WEEK
    fitted_type = _FittedMSTL

    def _fit(self, history: LoadSeries, *, previous: FittedModel | None) -> FittedModel:
        prepared, daily, lead = self._prepare(history)
        if isinstance(previous, _FittedMSTL):
            continued = self._continue(previous, prepared)
            if continued is not None:
                return continued
        values = prepared.values
        periods = self._periods(values.size, prepared.step, daily)
        earlier = (
            previous.profile_width
            if isinstance(previous, _FittedMSTL) and previous.step == prepared.step
            else None
        )
        width = self._profile_width(values, daily, lead, prepared.step, earlier=earlier)
        components = self._decompose(values, periods)
        # The profile starts at the step after the last sample: the last cycle, repeated.
        profile = self._profile(components, periods, width)
        total = profile.size
        # Deseasonalise the history with that same profile, extended backwards.
        phases = (np.arange(values.size) - values.size) % total
        deseasonalised = values - profile[phases]
        burn_in = min(daily, values.size // 4)
        params, loss = estimate_level(deseasonalised, lead=lead, burn_in=burn_in)
        robust = robust_parameters(params, deseasonalised)
        if level_loss(robust, deseasonalised, lead=lead, burn_in=burn_in) < loss:
            params = robust
        level, trend = level_filter(params, deseasonalised)
        record = self._record(previous, prepared)
        held_out = self._profile_held_out(values, prepared, params, periods, width, lead)
        if held_out is not None:
            # Forecasts the profile did not see stand in for the in-sample ones, until honest
            # ones (a previous fit's) replace them.
            record = held_out if record is None else merge_records(held_out, record)
        return self._fitted(
            params,
            prepared,
            estimated_until=prepared.end,
            record=record,
            floor=scale_floor(values),
            profile=profile,
            advanced=0,
            periods=periods,
            profile_width=width,
            values=values,
            known=prepared.known,
            deseasonalised=deseasonalised,
            level=level,
            trend=trend,
        )

    def _continue(self, previous: _FittedMSTL, prepared: PreparedHistory) -> FittedModel | None:
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
        deseasonalised = new - previous.season(previous.advanced, new.size)
        level, trend = advance_level(
            previous.params,
            deseasonalised,
            level=float(previous.level[-1]),
            trend=float(previous.trend[-1]),
        )
        return self._fitted(
            previous.params,
            prepared,
            estimated_until=previous.estimated_until,
            record=self._record(previous, prepared),
            floor=previous.floor,
            profile=previous.profile,
            advanced=previous.advanced + new.size,
            periods=previous.periods,
            profile_width=previous.profile_width,
            values=np.concatenate([previous.values, new]),
            known=np.concatenate([previous.known, known]),
            deseasonalised=np.concatenate([previous.deseasonalised, deseasonalised]),
            level=np.concatenate([previous.level, level]),
            trend=np.concatenate([previous.trend, trend]),
        )

    def _fitted(
        self,
        params: LevelParameters,
        prepared: PreparedHistory,
        *,
        estimated_until: float,
        record: ForecastRecord | None,
        floor: float,
        profile: FloatArray,
        advanced: int,
        periods: tuple[int, ...],
        profile_width: int,
        values: FloatArray,
        known: BoolArray,
        deseasonalised: FloatArray,
        level: FloatArray,
        trend: FloatArray,
    ) -> _FittedMSTL:
        lead = self.lead_steps(prepared.step)
        keep = math.ceil(self.calibration_window / prepared.step) + lead + 2
        values, deseasonalised, known = values[-keep:], deseasonalised[-keep:], known[-keep:]
        level, trend = level[-keep:], trend[-keep:]
        origins = calibration_origins(
            values.size, step=prepared.step, first=0, window=self.calibration_window
        )
        # The season repeats: a forecast reaching past the last sample reads the profile on, so
        # the record keeps it whole until its actuals come (sample ``j`` is at the profile's
        # phase ``advanced - size + j``).
        ahead = origins[:, None] + np.arange(1, lead + 1)[None, :]
        season = profile[(advanced - values.size + ahead) % profile.size]
        predicted = level_paths(params, level, trend, origins, lead) + season
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
        return _FittedMSTL(
            name=self.name,
            step=prepared.step,
            fitted_until=prepared.end,
            estimated_until=estimated_until,
            calibration=calibration,
            fit_seconds=0.0,
            params=params,
            floor=floor,
            profile=profile,
            advanced=advanced,
            periods=periods,
            profile_width=profile_width,
            values=values,
            known=known,
            deseasonalised=deseasonalised,
            level=level,
            trend=trend,
            record=record,
        )

    def _profile_held_out(
        self,
        values: FloatArray,
        prepared: PreparedHistory,
        params: LevelParameters,
        periods: tuple[int, ...],
        width: int,
        lead: int,
    ) -> ForecastRecord | None:
        """Forecasts from the calibration's origins by a profile decomposed without them, when
        the profile's cycle spans the calibration window (the weekly one); None otherwise.

        The profile is the last cycle of each component. A daily one is a day of a week of
        origins, but a weekly one is made of the very week the band is calibrated on: its
        in-sample forecasts carry their own noise, and the band came out half as wide as the
        errors that followed. So the history before the window is decomposed on its own, with
        the fit's periods (STL needs two cycles of each, which the three weeks the weekly cycle
        waits for leave it), and the level run through it with the fit's parameters.
        """
        step = prepared.step
        if max(periods) * step < self.calibration_window:
            return None
        origins = calibration_origins(
            values.size, step=step, first=0, window=self.calibration_window
        )
        head = values[: int(origins[0]) + 1]
        if head.size < self.least_points(step):
            return None
        # The fit's periods, as far as STL can estimate them (two cycles) from the head.
        head_periods = tuple(period for period in periods if head.size > 2 * period)
        try:
            profile = self._profile(self._decompose(head, head_periods), head_periods, width)
        except FitFailed:
            return None
        phases = (np.arange(values.size) - head.size) % profile.size
        deseasonalised = values - profile[phases]
        level, trend = level_filter(params, deseasonalised)
        # The season at each step forecast, past the history's end too (the profile repeats).
        ahead = origins[:, None] + np.arange(1, lead + 1)[None, :] - head.size
        predicted = level_paths(params, level, trend, origins, lead) + profile[ahead % profile.size]
        times = prepared.end - step * (values.size - 1 - origins.astype(np.float64))
        return ForecastRecord(times, predicted)

    @staticmethod
    def _profile(components: list[FloatArray], periods: tuple[int, ...], width: int) -> FloatArray:
        """The last cycle of each component, smoothed over ``width`` samples, summed."""
        total = math.lcm(*periods)
        profile = np.zeros(total)
        for period, component in zip(periods, components, strict=True):
            profile += np.tile(smooth_cycle(component[-period:], width), total // period)
        return profile

    @staticmethod
    def _periods(size: int, step: float, daily: int) -> tuple[int, ...]:
        """The daily period, and the weekly one when the history holds more than three weeks.

        STL needs two cycles of a period; the third is the week the band is calibrated on,
        which the profile must not have seen (:meth:`_profile_held_out`).
        """
        weekly = round(WEEK / step)
        return (daily, weekly) if size > 3 * weekly else (daily,)

    def _profile_width(
        self, values: FloatArray, daily: int, lead: int, step: float, *, earlier: int | None = None
    ) -> int:
        """How far to smooth the profile within its cycle, judged out of sample.

        A profile estimated from a few noisy cycles carries their noise at every step. The last
        day is held out (less when the history cannot spare it beyond the two cycles STL needs)
        and the rest decomposed; each width of :func:`profile_widths` smooths that profile,
        which then forecasts the held-out samples with the level's best parameters; the width
        with the lowest multi-step error wins. When ``earlier`` (the width chosen before) is
        one of them, it stays unless a width with a lower error beats it beyond chance (the
        one-sided Diebold-Mariano test :func:`~forecasts.base.significantly_lower`, as
        ``auto`` keeps its model), and then the lowest error among the widths that do wins
        (:func:`~forecasts.base.unless_beaten`): a day's errors rarely tell neighbouring widths
        apart, and each swap moves the profile, and so the plan, at once. When too little can
        be held out to judge, the profile is left as it is.
        """
        widths = profile_widths(daily)
        # A day held out, or what the history can spare beyond the two cycles STL needs.
        held = min(daily, values.size - self.least_points(step))
        if len(widths) == 1 or held < max(lead, daily // 4):
            return 1
        head = values[:-held]
        periods = self._periods(head.size, step, daily)
        try:
            components = self._decompose(head, periods)
        except FitFailed:
            return 1  # the trial could not run; the fit on the whole history decides
        losses: dict[int, float] = {}
        errors: dict[int, FloatArray] = {}
        for width in widths:
            profile = self._profile(components, periods, width)
            phases = (np.arange(values.size) - head.size) % profile.size
            deseasonalised = values - profile[phases]
            params, losses[width] = estimate_level(deseasonalised, lead=lead, burn_in=head.size - 1)
            errors[width] = level_errors(params, deseasonalised, lead=lead, burn_in=head.size - 1)
        if earlier is None or earlier not in losses:
            return min(widths, key=losses.__getitem__)
        return unless_beaten(earlier, losses, errors, lead=lead)

    @staticmethod
    def _decompose(values: FloatArray, periods: tuple[int, ...]) -> list[FloatArray]:
        """One seasonal component per period (all zero for a constant history)."""
        if np.ptp(values) <= 1e-9 * max(1.0, abs(float(values.mean()))):
            return [np.zeros(values.size) for _ in periods]
        # Imported here: statsmodels takes a second to import, and only a full fit needs it.
        from statsmodels.tsa.seasonal import MSTL as StatsmodelsMSTL

        jump = max(1, math.ceil(periods[0] / 10))
        stl_kwargs = {"seasonal_jump": jump, "trend_jump": jump, "low_pass_jump": jump}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = StatsmodelsMSTL(values, periods=periods, stl_kwargs=stl_kwargs).fit()
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise FitFailed(f"MSTL decomposition failed: {exc}") from exc
        seasonal = np.asarray(result.seasonal, dtype=np.float64).reshape(values.size, -1)
        if seasonal.shape[1] != len(periods) or not np.isfinite(seasonal).all():
            raise FitFailed("MSTL decomposition returned an unexpected seasonal component")
        return [seasonal[:, i] for i in range(len(periods))]
