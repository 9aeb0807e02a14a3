"""The model directory: `model.joblib` (the fitted estimators) plus `metadata.json` (documented format).

`metadata.json` holds `format` ("forewarn-forecaster"), `format_version`, the columns (and the sensors
used), time kind, horizon, interval, the RUL cap and why, the regimes, the conformal bins, the failure
probability's calibration (`failure`: Platt intercept and slope, base rate, fold base rates), the feature
windows (`feature_spec`), the training summary (with the cross-conformal and failure-probability reports)
and the SHA-256 of `model.joblib` (the regime normaliser, the fold regressors and the fold classifiers).
Loading checks the format, the version and the digest before unpickling.
Unpickling runs code: load only model directories you trust (ones you or your own job wrote).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]  # no stubs

from cloud_service.forecasting.conformal import ConformalBins
from cloud_service.forecasting.data import TimeKind
from cloud_service.forecasting.errors import ModelFormatError
from cloud_service.forecasting.failprob import FailureProbability
from cloud_service.forecasting.features import FeatureSpec
from cloud_service.forecasting.model import FORMAT_VERSION, Forecaster

__all__ = ["FORMAT_NAME", "load_model", "save_model"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "forewarn-forecaster"
_ESTIMATORS = "model.joblib"
_METADATA = "metadata.json"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def save_model(model: Forecaster, directory: str | Path) -> Path:
    """Write `model` into `directory` (created if needed); returns the metadata file's path."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        estimators = directory / _ESTIMATORS
        joblib.dump(
            {
                "normalizer": model.normalizer,
                "regressors": model.regressors,
                "classifiers": model.failure.classifiers,
            },
            estimators,
            compress=3,
        )
        metadata = {
            "format": FORMAT_NAME,
            "format_version": model.format_version,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "sensor_columns": list(model.sensor_columns),
            "condition_columns": list(model.condition_columns),
            "used_sensors": list(model.used_sensors),
            "time_kind": model.time_kind.value,
            "horizon": model.horizon,
            "interval": list(model.interval),
            "rul_cap": model.rul_cap,
            "rul_cap_reason": model.cap_reason,
            "min_history_rows": model.min_history_rows,
            "conformal": dataclasses.asdict(model.conformal),
            "failure": {
                "intercept": model.failure.intercept,
                "slope": model.failure.slope,
                "base_rate": model.failure.base_rate,
                "fold_rates": model.failure.fold_rates,
                "report": model.failure.report,
            },
            "max_life": model.max_life,
            "feature_names": model.feature_names,
            "feature_spec": dataclasses.asdict(model.feature_spec),
            "regimes": model.normalizer.describe(model.condition_columns),
            "summary": model.summary,
            "estimators_sha256": _digest(estimators),
        }
        path = directory / _METADATA
        path.write_text(json.dumps(metadata, indent=2) + "\n")
    except OSError as exc:
        raise ModelFormatError(directory, f"cannot write the model ({exc.strerror})") from exc
    logger.info("saved forecaster to %s", directory)
    return path


def load_model(directory: str | Path) -> Forecaster:
    """Read a model directory written by `save_model`.

    Raises:
        ModelFormatError: if a file is missing or damaged, the format or version is not this one, or the
            estimators' digest does not match the metadata.
    """
    directory = Path(directory)
    metadata = _read_metadata(directory)
    estimators_path = directory / _ESTIMATORS
    if not estimators_path.is_file():
        raise ModelFormatError(directory, f"{_ESTIMATORS} is missing")
    if _digest(estimators_path) != metadata.get("estimators_sha256"):
        raise ModelFormatError(directory, f"{_ESTIMATORS} does not match the digest in {_METADATA}")
    try:
        estimators = joblib.load(estimators_path)
        return Forecaster(
            sensor_columns=tuple(metadata["sensor_columns"]),
            condition_columns=tuple(metadata["condition_columns"]),
            used_sensors=tuple(metadata["used_sensors"]),
            time_kind=TimeKind(metadata["time_kind"]),
            horizon=float(metadata["horizon"]),
            interval=(float(metadata["interval"][0]), float(metadata["interval"][1])),
            rul_cap=float(metadata["rul_cap"]),
            cap_reason=str(metadata["rul_cap_reason"]),
            min_history_rows=int(metadata["min_history_rows"]),
            normalizer=estimators["normalizer"],
            regressors=list(estimators["regressors"]),
            conformal=_conformal(metadata["conformal"]),
            failure=_failure(metadata["failure"], estimators["classifiers"]),
            max_life=float(metadata["max_life"]),
            feature_names=list(metadata["feature_names"]),
            feature_spec=_feature_spec(metadata["feature_spec"]),
            summary=dict(metadata["summary"]),
            format_version=int(metadata["format_version"]),
        )
    except (KeyError, TypeError, ValueError, EOFError) as exc:
        raise ModelFormatError(directory, f"damaged model ({type(exc).__name__}: {exc})") from exc


def _feature_spec(value: Any) -> FeatureSpec:
    return FeatureSpec(
        short_rows=int(value["short_rows"]),
        long_rows=int(value["long_rows"]),
        baseline_rows=int(value["baseline_rows"]),
    )


def _conformal(value: Any) -> ConformalBins:
    return ConformalBins(
        edges=tuple(float(v) for v in value["edges"]),
        low=tuple(float(v) for v in value["low"]),
        high=tuple(float(v) for v in value["high"]),
        grid=tuple(tuple(float(v) for v in row) for row in value["grid"]),
        lives=tuple(int(v) for v in value["lives"]),
    )


def _failure(value: Any, classifiers: Any) -> FailureProbability:
    rates = [float(v) for v in value["fold_rates"]]
    if len(classifiers) != len(rates):
        raise ValueError(f"{len(classifiers)} fold classifiers but {len(rates)} fold base rates")
    return FailureProbability(
        classifiers=list(classifiers),
        fold_rates=rates,
        intercept=float(value["intercept"]),
        slope=float(value["slope"]),
        base_rate=float(value["base_rate"]),
        report=dict(value["report"]),
    )


def _read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / _METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelFormatError(directory, f"not a model directory ({_METADATA} is missing)") from exc
    except (OSError, ValueError) as exc:
        raise ModelFormatError(directory, f"{_METADATA} is unreadable ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFormatError(directory, f"{_METADATA} is not a {FORMAT_NAME} model")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            directory, f"model format version {version!r}; this Forewarn reads version {FORMAT_VERSION}"
        )
    return metadata
