"""Synthetic load series for the forecasting tests (5-minute step unless told)."""

from __future__ import annotations

import numpy as np

from forecasts.base import DAY
from forecasts.series import LoadSeries

__all__ = ["flat", "seasonal", "series", "trend"]

STEP = 300.0
START = 1_700_000_100.0 - (1_700_000_100.0 % DAY)  # midnight UTC, on the 5-minute grid


def series(values: np.ndarray | list[float], *, step: float = STEP) -> LoadSeries:
    return LoadSeries(START, step, np.asarray(values, dtype=np.float64))


def _steps(days: float, step: float) -> np.ndarray:
    return np.arange(round(days * DAY / step), dtype=np.float64)


def flat(days: float = 4, *, level: float = 100.0, step: float = STEP) -> LoadSeries:
    return series(np.full(_steps(days, step).size, level), step=step)


def trend(days: float = 4, *, step: float = STEP, seed: int = 1) -> LoadSeries:
    i = _steps(days, step)
    noise = np.random.default_rng(seed).normal(0, 2.0, i.size)
    return series(100 + 0.05 * i + noise, step=step)


def seasonal(
    days: float = 4, *, step: float = STEP, seed: int = 2, weekly: float = 0.0
) -> LoadSeries:
    t = _steps(days, step) * step
    rng = np.random.default_rng(seed)
    daily = 60 * np.sin(2 * np.pi * t / DAY - 1.0)
    week = weekly * np.sin(2 * np.pi * t / (7 * DAY))
    return series(np.maximum(200 + daily + week + rng.normal(0, 5.0, t.size), 0.0), step=step)
