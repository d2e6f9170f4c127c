"""The one registry of forecasting models: a model is one module plus one line here."""

from __future__ import annotations

from typing import Any

from forecasts.base import Forecaster
from forecasts.errors import UnknownModel
from forecasts.models.auto import Auto
from forecasts.models.holt_winters import HoltWinters
from forecasts.models.mstl import MSTL
from forecasts.models.seasonal_naive import SeasonalNaive

__all__ = ["MODELS", "create", "model_names"]

MODELS: dict[str, type[Forecaster]] = {
    Auto.name: Auto,
    HoltWinters.name: HoltWinters,
    MSTL.name: MSTL,
    SeasonalNaive.name: SeasonalNaive,
}


def model_names() -> list[str]:
    """The registered names, in registration order (the CRD's enum)."""
    return list(MODELS)


def create(name: str, **options: Any) -> Forecaster:
    """A forecaster by registry name; an unknown name raises :class:`UnknownModel` naming it."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise UnknownModel(
            f"unknown forecast model {name!r}; known models: {', '.join(MODELS)}"
        ) from None
    return factory(**options)
