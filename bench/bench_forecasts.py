"""Fit and forecast cost per model on 14 days of 1-minute history from a real trace.

Prints a table; not a test (a timed assertion flakes on a shared machine). Run from the repo:
``python bench/bench_forecasts.py [TRACE.csv]`` (default: the 1-minute WorldCup 98 trace).

- full fit: parameter estimation on the 14 days (aggregated to 5-minute means by the model);
- cheap refit: ``fit(history + 15 min, previous=fitted)``, what the operator does every
  ``refit`` between daily re-estimations;
- forecast: 30 minutes from a fitted model on a history 10 minutes past the fit, what the
  planner does every loop.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from forecasts.base import DAY
from forecasts.registry import create, model_names
from forecasts.series import load_trace

TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "wc98-requests-per-minute.csv"
HISTORY = 14 * DAY
FULL_REPEATS = 3
REFIT_REPEATS = 40
FORECAST_REPEATS = 200


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        return
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TRACE
    trace = load_trace(path)
    end = trace.end - 2 * DAY
    history = trace.until(end).last(HISTORY)
    print(f"{path.name}: {len(history)} samples at {history.step:.0f}s ({HISTORY / DAY:.0f} days)")
    print(f"{'model':16s} {'full fit s':>11s} {'cheap refit ms':>15s} {'forecast ms':>12s}  chose")
    for name in model_names():
        forecaster = create(name)
        full = []
        for _ in range(FULL_REPEATS):
            fitted = forecaster.fit(history)
            full.append(fitted.fit_seconds)
        refits = []
        previous = fitted
        for i in range(1, REFIT_REPEATS + 1):
            later = trace.until(end + i * 900).last(HISTORY)
            previous = forecaster.fit(later, previous=previous)
            refits.append(previous.fit_seconds)
        recent = trace.until(previous.fitted_until + 600)
        forecasts = []
        for _ in range(FORECAST_REPEATS):
            started = time.perf_counter()
            previous.forecast(recent, horizon=1800)
            forecasts.append(time.perf_counter() - started)
        print(
            f"{name:16s} {statistics.median(full):11.3f} {1000 * statistics.median(refits):15.2f} "
            f"{1000 * statistics.median(forecasts):12.3f}  {fitted.name}"
        )


if __name__ == "__main__":
    main()
