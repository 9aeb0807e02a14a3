"""Failure forecasting: remaining useful life with an interval, and P(failure within a horizon).

A job (or the offline CLI) builds a `History` of telemetry and events, then calls `fit(history)` to get a
`Forecaster` and `predict(model, history)` for forecasts; `save_model`/`load_model` keep a model in a
versioned directory. See docs/forecasting.md.

Importing the package is cheap: scikit-learn loads only when a model is fitted or used, so the cloud's
settings (`settings.ForecastSettings`) can be read by every process.
"""

from __future__ import annotations

from cloud_service.forecasting.data import AssetSeries, Event, EventKind, History, PredictionRow, TimeKind
from cloud_service.forecasting.errors import DataFileError, ForecastDataError, ModelFormatError
from cloud_service.forecasting.model import FORMAT_VERSION, ForecastConfig, Forecaster, fit, predict
from cloud_service.forecasting.store import load_model, save_model

__all__ = [
    "FORMAT_VERSION",
    "AssetSeries",
    "DataFileError",
    "Event",
    "EventKind",
    "ForecastConfig",
    "ForecastDataError",
    "Forecaster",
    "History",
    "ModelFormatError",
    "PredictionRow",
    "TimeKind",
    "fit",
    "load_model",
    "predict",
    "save_model",
]
