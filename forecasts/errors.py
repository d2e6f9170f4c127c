"""The forecasting errors. Callers decide what is transient; these only say what went wrong."""

from __future__ import annotations

__all__ = [
    "FitFailed",
    "ForecastError",
    "InsufficientHistory",
    "InvalidHistory",
    "TraceFormatError",
    "TraceWarning",
    "UnknownModel",
]


class ForecastError(Exception):
    """Base of every error raised by :mod:`forecasts`."""


class InsufficientHistory(ForecastError):
    """Too little usable history to fit a model (short, or mostly missing)."""


class InvalidHistory(ForecastError):
    """The history holds values no load can take (negative), so a fit would be meaningless."""


class FitFailed(ForecastError):
    """The numerical fit failed; the cause is chained."""


class UnknownModel(ForecastError, LookupError):
    """A model name that is not in the registry."""


class TraceFormatError(ForecastError, ValueError):
    """A trace file that does not follow the ``timestamp,load`` format; names file and line."""


class TraceWarning(UserWarning):
    """A trace was read, but not exactly as written (a local clock's repeated hour)."""
