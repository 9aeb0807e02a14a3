"""Drift checks: per asset, recent features (and the deployed model's scores) against its training data.

The deployed model's registry row keeps decile bins of every feature and of its scores on the training
data (`reference`). A check bins each asset's recent feature means the same way and computes the
population stability index (PSI) per feature and for the scores; the asset has drifted when the largest
PSI exceeds `drift_psi_threshold` (0.1 is a small shift, 0.25 a large one, by the usual rule of thumb).
Each PSI is corrected for sampling noise first: with k bins, n recent and m reference rows, an unchanged
distribution still shows a PSI of about (k - 1)(1/n + 1/m), which is subtracted (a max over 25 features
of 100 rows would otherwise flag healthy assets).
Results go to the `drift` table, where the dashboard reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cloud_service import queries
from cloud_service.lifecycle import registry
from cloud_service.lifecycle.records import DriftReference
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.modeling import onnx_scores
from shared.errors import ForewarnError

__all__ = ["DriftResult", "check_drift", "psi"]

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
MIN_ROWS = 30
_EPS = 1e-4


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index of two binned distributions (proportions per bin).

    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), _EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _proportions(values: npt.NDArray[np.floating[Any]], edges: Sequence[float]) -> npt.NDArray[np.float64]:
    bins = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bins, values, side="right"), minlength=len(bins) + 1)
    result: npt.NDArray[np.float64] = counts / max(len(values), 1)
    return result


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One asset's drift check."""

    asset_id: str
    target: str
    version: int
    n_recent: int
    feature_psi: dict[str, float]
    score_psi: float | None
    is_drifted: bool

    @property
    def max_psi(self) -> float:
        """The largest feature PSI."""
        return max(self.feature_psi.values(), default=0.0)


def _check_asset(
    model: registry.ModelRecord,
    reference: DriftReference,
    asset_id: str,
    rows: npt.NDArray[np.float32],
    threshold: float,
) -> DriftResult:
    noise = (len(reference.props[0]) - 1) * (1.0 / len(rows) + 1.0 / max(reference.n_rows, 1))
    feature_psi = {
        name: max(0.0, psi(reference.props[i], _proportions(rows[:, i], reference.edges[i])) - noise)
        for i, name in enumerate(reference.feature_names)
    }
    score_psi: float | None = None
    if reference.score_edges:
        scores = onnx_scores(model.artifact, rows)
        raw = psi(reference.score_props, _proportions(scores, reference.score_edges))
        score_psi = max(0.0, raw - noise)
    worst = max([*feature_psi.values(), score_psi or 0.0])
    return DriftResult(
        asset_id, model.target, model.version, len(rows), feature_psi, score_psi, worst > threshold
    )


def check_drift(
    conn: Conn, settings: LifecycleSettings, target: str, *, now: datetime | None = None
) -> list[DriftResult]:
    """Check every asset of `target` against the deployed model's training data, and store the results.

    Assets with fewer than `MIN_ROWS` recent rows are skipped. The results are written through `conn`
    and not committed. Returns the stored results.
    """
    now = now or datetime.now(UTC)
    model = registry.deployed_model(conn, target, with_artifact=True)
    if model is None or model.reference is None or not model.reference.edges:
        return []
    reference = model.reference
    assets = registry.assets_of_target(conn, target)
    try:
        matrix = queries.feature_matrix(
            conn,
            assets,
            start=now - timedelta(hours=settings.drift_recent_h),
            end=now,
            feature_spec=model.feature_spec,
        )
    except ForewarnError as exc:
        logger.warning("drift check of %s skipped: %s", target, exc)
        return []
    if tuple(matrix.feature_names) != tuple(reference.feature_names) and len(matrix.asset_ids):
        logger.warning("drift check of %s skipped: recent features differ from the model's", target)
        return []
    ids = np.asarray(matrix.asset_ids)
    results = []
    for asset_id in sorted(set(matrix.asset_ids)):
        rows = matrix.values[ids == asset_id]
        rows = rows[np.isfinite(rows).all(axis=1)]
        if len(rows) < MIN_ROWS:
            continue
        result = _check_asset(model, reference, asset_id, rows, settings.drift_psi_threshold)
        registry.record_drift(
            conn,
            asset_id=asset_id,
            checked_at=now,
            target=target,
            version=model.version,
            n_recent=result.n_recent,
            feature_psi=result.feature_psi,
            score_psi=result.score_psi,
            is_drifted=result.is_drifted,
        )
        results.append(result)
    drifted = [r.asset_id for r in results if r.is_drifted]
    if drifted:
        logger.warning("drift on %d asset(s) of %s: %s", len(drifted), target, ", ".join(drifted[:10]))
    return results
