"""The forecasting models; each is registered in :mod:`forecasts.registry`."""

__all__: list[str] = []
