"""Pure time-series forecasting of regional load: no Kubernetes, no HTTP, no clock."""

from forecasts.base import Calibration, FittedModel, Forecast, Forecaster, prepare_history
from forecasts.errors import (
    FitFailed,
    ForecastError,
    InsufficientHistory,
    InvalidHistory,
    TraceFormatError,
    UnknownModel,
)
from forecasts.registry import MODELS, create, model_names
from forecasts.series import LoadSeries, load_trace, parse_timestamp

__all__ = [
    "MODELS",
    "Calibration",
    "FitFailed",
    "FittedModel",
    "Forecast",
    "ForecastError",
    "Forecaster",
    "InsufficientHistory",
    "InvalidHistory",
    "LoadSeries",
    "TraceFormatError",
    "UnknownModel",
    "create",
    "load_trace",
    "model_names",
    "parse_timestamp",
    "prepare_history",
]
