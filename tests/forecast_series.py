"""Synthetic load series for the forecasting tests (5-minute step unless told)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from forecasts.base import DAY
from forecasts.series import LoadSeries

__all__ = ["flat", "local_clock_trace", "seasonal", "series", "trend"]

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


def local_clock_trace(path: Path, *, first_load: int = 1) -> Path:
    """Four days of a local clock (no offsets) every 5 minutes, 2024-11-01 to 11-04, whose
    01:00 to 01:55 of 11-03 is written twice, as summer time's end writes it; the loads count
    the rows from ``first_load``."""
    stamps: list[datetime] = []
    day, five = datetime(2024, 11, 1), timedelta(minutes=5)
    for i in range(4 * 288):
        stamps.append(day + i * five)
        if stamps[-1] == datetime(2024, 11, 3, 1, 55):
            stamps.extend(datetime(2024, 11, 3, 1) + j * five for j in range(12))
    body = "".join(f"{s.isoformat()},{first_load + i}\n" for i, s in enumerate(stamps))
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path
