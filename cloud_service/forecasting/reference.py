"""The plain reference learner every forecasting figure is measured against.

Gradient-boosted trees with scikit-learn's default settings (no search) on the regime-normalised current
sensor values and their short- and long-window means (`features.REFERENCE_FEATURES`), trained once on RUL
capped by the same rule as the forecaster (`target.choose_cap`: from the training lives' own lengths). It
forecasts RUL only. The bench fits it beside the forecaster on every data set; the forecaster ships only
where it beats it.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs

from cloud_service.forecasting.data import History, TimeKind
from cloud_service.forecasting.features import FeatureSpec
from cloud_service.forecasting.model import (
    ForecastConfig,
    forecast_table,
    new_regressor,
    prepare,
    prepared_table,
)
from cloud_service.forecasting.regimes import RegimeNormalizer
from cloud_service.forecasting.table import subsample
from cloud_service.forecasting.target import target_rows

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

__all__ = ["ReferenceModel", "fit_reference", "predict_reference"]


@dataclass
class ReferenceModel:
    """A fitted reference learner."""

    sensor_columns: tuple[str, ...]
    condition_columns: tuple[str, ...]
    used_sensors: tuple[str, ...]
    time_kind: TimeKind
    rul_cap: float
    normalizer: RegimeNormalizer
    feature_spec: FeatureSpec
    regressor: HistGradientBoostingRegressor
    fit_s: float


def fit_reference(history: History, config: ForecastConfig | None = None) -> ReferenceModel:
    """Fit the reference on a history (columns, regimes and limits as in `config`).

    Raises:
        ForecastDataError: as `fit`.
    """
    config = config or ForecastConfig()
    started = _time.monotonic()
    with threadpool_limits(limits=config.threads):
        prepared = prepare(history, config)
        table = prepared_table(prepared, reference=True)
        rows = subsample(
            target_rows(table.time_left, table.failed, prepared.cap), config.max_fit_rows, config.seed
        )
        regressor = new_regressor(config.seed).fit(
            table.x[rows], np.minimum(table.time_left[rows], prepared.cap)
        )
    return ReferenceModel(
        sensor_columns=tuple(prepared.sensors),
        condition_columns=tuple(prepared.conditions),
        used_sensors=tuple(prepared.used_sensors),
        time_kind=history.time_kind,
        rul_cap=prepared.cap,
        normalizer=prepared.normalizer,
        feature_spec=prepared.spec,
        regressor=regressor,
        fit_s=_time.monotonic() - started,
    )


def predict_reference(
    model: ReferenceModel, history: History, *, all_times: bool = False
) -> tuple[list[str], npt.NDArray[np.float64]]:
    """Asset id and forecast RUL of each asset's last row (or of every row, in the history's order).

    Raises:
        ForecastDataError: as `predict`.
    """
    with threadpool_limits(limits=1):
        trimmed, table, rows = forecast_table(model, history, all_times=all_times, reference=True)
        rul = np.clip(model.regressor.predict(table.x[rows]), 0.0, model.rul_cap)
    ids = [trimmed.assets[i].asset_id for i in table.asset[rows]]
    return ids, np.asarray(rul, dtype=np.float64)
