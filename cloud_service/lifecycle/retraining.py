"""A gated training run, from stored data to a registered model, for one model target.

1. Data: the stored aggregates of the target's assets over the last `training_days` (per period the
   mean, minimum and maximum of each feature over its windows: see `load_training_data`), without the
   periods near failures and maintenance (`exclude_before_event_h` before, `exclude_after_event_h` after).
   Periods in the hours before a failure are kept apart as labelled fault rows. The most recent
   `validation_fraction` of the healthy periods is held out for validation.
2. Candidates: every `model_types` entry (a key of `BUILDERS`: the PCA detector or the MLP autoencoder of
   `cloud_service.modeling`), trained, converted, quantized to int8.
3. Threshold per candidate from the held-out healthy int8 scores, for the false-alarm budget: the
   budget is a per-row exceedance probability p = alarms per week / rows per week; beyond the 95th
   percentile the tail is taken as exponential (peaks over threshold), so
   `threshold = margin * (q95 + mean excess over q95 * ln(0.05 / p))`.
4. Gates per candidate (`gates`): int8/float decision agreement on validation (and fault) rows, one-row
   int8 latency, artifact size; then the best candidate (fault detection, then held-out alarm rate) is
   compared with the deployed champion on the same rows (no worse on either). Every candidate is
   registered, signed; those that fail a gate or lose are `rejected` with the reason.
5. Approval: `auto` approves the winner, `manual` leaves it a `candidate` for `forewarn models approve`.
   The run writes through the caller's connection and commits nothing; once the caller has committed,
   `deploy_selected` pushes an auto-approved winner.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service import queries
from cloud_service.lifecycle import registry
from cloud_service.lifecycle.gates import (
    alarm_rates,
    candidate_gates,
    champion_gate,
    failed_reason,
    int8_latency_us,
)
from cloud_service.lifecycle.records import (
    CandidateMetrics,
    CandidateOutcome,
    DriftReference,
    Gates,
    ModelStatus,
    RowCounts,
    TrainingReport,
)
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.lifecycle.signing import sign_manifest
from cloud_service.modeling import (
    ModelArtifact,
    build_anomaly_model,
    build_autoencoder_model,
    decision_agreement,
    onnx_scores,
)
from shared.errors import ForewarnError
from shared.messages import ModelManifest, encode
from shared.timebase import datetime_to_ns

__all__ = [
    "BUILDERS",
    "TrainingData",
    "TrainingSkippedError",
    "budget_threshold",
    "deploy_selected",
    "label_rows",
    "load_training_data",
    "reference_histograms",
    "train_on_data",
    "train_target",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Conn = psycopg.Connection[Any]
DeployCallback = Callable[[str, int], None]
_TAIL_QUANTILE = 0.95
_NS_PER_H = 3_600 * 10**9
_DECILES = np.linspace(0.1, 0.9, 9)


class TrainingSkippedError(ForewarnError):
    """A training run could not start (no assets, too few healthy rows); `reason` says why."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"training of {target} skipped: {reason}")
        self.target = target
        self.reason = reason


@dataclass(frozen=True)
class TrainingData:
    """The rows a training run uses, already split."""

    target: str
    assets: list[str]
    feature_spec: str
    feature_names: tuple[str, ...]
    start: datetime
    end: datetime
    fit: F32
    validation: F32
    faults: F32
    n_excluded: int = 0
    reference_rows: F32 | None = None
    reference_validation: F32 | None = None


# --- data ---------------------------------------------------------------------------------------------


def label_rows(
    asset_ids: Sequence[str],
    times_ns: npt.NDArray[np.int64],
    events: Sequence[queries.EventRecord],
    *,
    before_h: float,
    after_h: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which rows are healthy (far from every event) and which are faults (shortly before a failure).

    Returns:
        `(healthy, fault)` boolean masks over the rows.
    """
    assets = np.asarray(asset_ids)
    healthy = np.ones(len(times_ns), dtype=bool)
    fault = np.zeros(len(times_ns), dtype=bool)
    for event in events:
        event_ns = datetime_to_ns(event.ts)
        on_asset = assets == event.asset_id
        near = (
            on_asset
            & (times_ns >= event_ns - before_h * _NS_PER_H)
            & (times_ns <= event_ns + after_h * _NS_PER_H)
        )
        healthy &= ~near
        if event.event == "failure":
            fault |= on_asset & (times_ns >= event_ns - before_h * _NS_PER_H) & (times_ns < event_ns)
    return healthy, fault


def _subsample_index(index: npt.NDArray[np.int64], limit: int) -> npt.NDArray[np.int64]:
    if len(index) <= limit:
        return index
    picked: npt.NDArray[np.int64] = index[np.linspace(0, len(index) - 1, limit).astype(int)]
    return picked


def load_training_data(
    conn: Conn, settings: LifecycleSettings, target: str, *, now: datetime | None = None
) -> TrainingData:
    """Healthy, validation and fault rows of `target`'s assets, from the stored aggregates.

    Gateways score single windows, but the cloud stores per-period summaries: a model trained on period
    means alone learns a distribution far narrower than single windows (on synthetic data, nearly every
    healthy window then scored above its threshold). So each healthy period gives three rows: the mean,
    the minimum and the maximum of its windows' features, which span the window-to-window spread. Fault
    rows (before a failure) are period means; drift references are built from the means.

    Raises:
        TrainingSkippedError: no assets, several feature sets, or too few healthy rows.
    """
    end = now or datetime.now(UTC)
    start = end - timedelta(days=settings.training_days)
    assets = registry.assets_of_target(conn, target)
    if not assets:
        raise TrainingSkippedError(target, "no asset has this id or type")
    try:
        spread = queries.window_spread(conn, assets, start=start, end=end)
    except ForewarnError as exc:
        raise TrainingSkippedError(target, str(exc)) from exc
    events = queries.maintenance_events(
        conn,
        asset_ids=assets,
        start=start - timedelta(hours=settings.exclude_after_event_h),
        end=end + timedelta(hours=settings.exclude_before_event_h),
    )
    healthy, fault = label_rows(
        spread.asset_ids,
        spread.period_start_ns,
        events,
        before_h=settings.exclude_before_event_h,
        after_h=settings.exclude_after_event_h,
    )
    finite = np.isfinite(spread.mean).all(axis=1) & np.isfinite(spread.min).all(axis=1)
    finite &= np.isfinite(spread.max).all(axis=1)
    periods = np.flatnonzero(healthy & finite)
    periods = periods[np.argsort(spread.period_start_ns[periods], kind="stable")]
    if 3 * len(periods) < settings.min_training_rows:
        raise TrainingSkippedError(
            target,
            f"{3 * len(periods)} healthy rows in {settings.training_days} days "
            f"(< {settings.min_training_rows})",
        )
    periods = _subsample_index(periods, settings.max_training_rows // 3)
    n_validation = max(1, round(len(periods) * settings.validation_fraction))
    fit, validation = periods[:-n_validation], periods[-n_validation:]

    def rows(index: npt.NDArray[np.int64]) -> F32:
        return np.ascontiguousarray(np.vstack([spread.mean[index], spread.min[index], spread.max[index]]))

    fault_periods = _subsample_index(np.flatnonzero(fault & finite), settings.max_training_rows)
    return TrainingData(
        target=target,
        assets=sorted(set(spread.asset_ids)),
        feature_spec=spread.feature_spec,
        feature_names=spread.feature_names,
        start=start,
        end=end,
        fit=rows(fit),
        validation=rows(validation),
        faults=np.ascontiguousarray(spread.mean[fault_periods]),
        n_excluded=int((~healthy).sum()),
        reference_rows=np.ascontiguousarray(spread.mean[fit]),
        reference_validation=np.ascontiguousarray(spread.mean[validation]),
    )


# --- candidates -----------------------------------------------------------------------------------------


def _build_mlp(data: TrainingData, *, version: int, seed: int) -> ModelArtifact:
    return build_autoencoder_model(
        data.fit,
        data.validation,
        data.feature_names,
        feature_spec=data.feature_spec,
        target=data.target,
        version=version,
        seed=seed,
    )


def _build_pca(data: TrainingData, *, version: int, seed: int) -> ModelArtifact:
    rows = np.vstack([data.fit, data.validation])
    return build_anomaly_model(
        rows,
        list(data.feature_names),
        feature_spec=data.feature_spec,
        target=data.target,
        version=version,
        seed=seed,
        holdout_fraction=max(len(data.validation) / len(rows), 0.05),
    )


BUILDERS: dict[str, Callable[..., ModelArtifact]] = {"mlp_autoencoder": _build_mlp, "pca": _build_pca}
"""The candidate model types of `LifecycleSettings.model_types`, each built from a run's data."""


@dataclass
class _Candidate:
    """One trained, measured candidate and its standing in the run (changed while the winner is chosen)."""

    model_type: str
    version: int
    manifest: ModelManifest
    onnx_float: bytes
    onnx_int8: bytes
    metrics: CandidateMetrics
    gates: Gates
    status: ModelStatus
    reason: str

    def outcome(self) -> CandidateOutcome:
        return CandidateOutcome(
            version=self.version, model_type=self.model_type, status=self.status, reason=self.reason
        )


# --- thresholds, references -----------------------------------------------------------------------------


def budget_threshold(
    scores: npt.NDArray[np.floating[Any]], *, alarms_per_week: float, rows_per_week: float, margin: float
) -> float:
    """The score threshold that healthy rows exceed with probability about alarms/rows per week.

    A budget of 1 row in 10 is the 90th percentile:

    >>> round(budget_threshold(np.arange(1000.0), alarms_per_week=100, rows_per_week=1000, margin=1.0), 1)
    899.1
    """
    values = np.asarray(scores, dtype=np.float64)
    p = min(alarms_per_week / rows_per_week, 1.0)
    if p >= 1.0 - _TAIL_QUANTILE:
        return float(margin * np.quantile(values, 1.0 - p))
    base = float(np.quantile(values, _TAIL_QUANTILE))
    excess = values[values > base] - base
    mean_excess = float(excess.mean()) if len(excess) else 0.0
    return float(margin * (base + mean_excess * math.log((1.0 - _TAIL_QUANTILE) / p)))


def _proportions(values: npt.NDArray[np.floating[Any]], edges: npt.NDArray[np.float64]) -> list[float]:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return [float(c) for c in counts / max(len(values), 1)]


def reference_histograms(
    rows: F32, names: Sequence[str], scores: npt.NDArray[np.floating[Any]]
) -> DriftReference:
    """Decile bins of each feature and of the scores on training data: the baseline of drift checks."""
    edges = np.quantile(rows.astype(np.float64), _DECILES, axis=0).T  # (F, 9)
    score_edges = np.quantile(np.asarray(scores, dtype=np.float64), _DECILES)
    return DriftReference(
        n_rows=len(rows),
        feature_names=list(names),
        edges=edges.tolist(),
        props=[_proportions(rows[:, i], edges[i]) for i in range(len(names))],
        score_edges=score_edges.tolist(),
        score_props=_proportions(np.asarray(scores, dtype=np.float64), score_edges),
    )


# --- the run --------------------------------------------------------------------------------------------


def _evaluate(
    model_type: str, version: int, artifact: ModelArtifact, data: TrainingData, settings: LifecycleSettings
) -> _Candidate:
    """Set the candidate's threshold, measure it and run its own gates (agreement, latency, size)."""
    healthy_scores = onnx_scores(artifact.onnx_int8, data.validation)
    threshold = budget_threshold(
        healthy_scores,
        alarms_per_week=settings.false_alarms_per_asset_per_week,
        rows_per_week=settings.windows_per_asset_per_week,
        margin=settings.threshold_margin,
    )
    checked = np.vstack([data.validation, data.faults]) if len(data.faults) else data.validation
    agreement = decision_agreement(
        onnx_scores(artifact.onnx_float, checked), onnx_scores(artifact.onnx_int8, checked), threshold
    )
    latency = int8_latency_us(artifact.onnx_int8, data.validation)
    rates = alarm_rates(artifact.onnx_int8, threshold, validation=data.validation, faults=data.faults)
    metrics = CandidateMetrics(
        threshold=threshold,
        int8_float_decision_agreement=agreement,
        int8_latency_us=latency,
        model_bytes_float=float(len(artifact.onnx_float)),
        model_bytes_int8=float(len(artifact.onnx_int8)),
        healthy_score_p99=float(np.quantile(healthy_scores, 0.99)),
        validation_alarm_rate=rates.validation_alarm_rate,
        fault_detection_rate=rates.fault_detection_rate,
    )
    gates = candidate_gates(
        agreement=agreement, latency_us=latency, size_bytes=len(artifact.onnx_int8), settings=settings
    )
    reason = failed_reason(gates)
    return _Candidate(
        model_type=model_type,
        version=version,
        manifest=msgspec.structs.replace(artifact.manifest, threshold=threshold),
        onnx_float=artifact.onnx_float,
        onnx_int8=artifact.onnx_int8,
        metrics=metrics,
        gates=gates,
        status="rejected" if reason else "candidate",
        reason=reason,
    )


def _rank(candidate: _Candidate) -> tuple[float, float, float]:
    metrics = candidate.metrics
    return (-(metrics.fault_detection_rate or 0.0), metrics.validation_alarm_rate, metrics.int8_latency_us)


def _select(
    conn: Conn, data: TrainingData, built: list[_Candidate], settings: LifecycleSettings
) -> int | None:
    """Rank the passing candidates, hold the best to the champion gate; the others are not selected."""
    passing = sorted((c for c in built if c.status == "candidate"), key=_rank)
    if not passing:
        return None
    best = passing[0]
    champion = champion_gate(
        conn,
        settings,
        target=data.target,
        feature_names=data.feature_names,
        rates=best.metrics.rates,
        validation=data.validation,
        faults=data.faults,
    )
    best.gates = msgspec.structs.replace(best.gates, champion=champion)
    selected: int | None = best.version
    if not champion.passed:
        selected = None
        best.status, best.reason = "rejected", f"gate failed: worse than the deployed v{champion.champion}"
    for other in passing[1:]:
        other.status, other.reason = (
            "rejected",
            f"not selected: v{best.version} ({best.model_type}) ranked higher",
        )
    if selected is not None and settings.approval == "auto":
        best.status = "approved"
    return selected


def _register(
    conn: Conn, data: TrainingData, candidate: _Candidate, *, private_key: Ed25519PrivateKey
) -> None:
    means = data.fit if data.reference_rows is None else data.reference_rows
    held_out = data.validation if data.reference_validation is None else data.reference_validation
    reference = reference_histograms(means, data.feature_names, onnx_scores(candidate.onnx_int8, held_out))
    manifest_json = encode(candidate.manifest).decode()
    registry.insert_model(
        conn,
        target=data.target,
        version=candidate.version,
        model_type=candidate.model_type,
        sha256=candidate.manifest.artifact_sha256,
        artifact=candidate.onnx_int8,
        manifest_json=manifest_json,
        signature_b64=sign_manifest(private_key, manifest_json),
        feature_spec=data.feature_spec,
        feature_names=data.feature_names,
        threshold=candidate.manifest.threshold,
        assets=data.assets,
        train_start=data.start,
        train_end=data.end,
        n_train_rows=len(data.fit),
        metrics=candidate.metrics,
        gates=candidate.gates,
        reference=reference,
        status=candidate.status,
        reason=candidate.reason,
    )


def train_on_data(
    conn: Conn, settings: LifecycleSettings, data: TrainingData, *, private_key: Ed25519PrivateKey
) -> TrainingReport:
    """Train every candidate type on `data`, gate, sign and register them (nothing is committed).

    With auto approval the winner is registered `approved`; `deploy_selected` pushes it once the caller
    has committed.
    """
    started = time.monotonic()
    built: list[_Candidate] = []
    for model_type in settings.model_types:
        version = registry.allocate_version(conn, data.target)
        artifact = BUILDERS[model_type](data, version=version, seed=settings.seed)
        built.append(_evaluate(model_type, version, artifact, data, settings))
    selected = _select(conn, data, built, settings)
    for candidate in built:
        _register(conn, data, candidate, private_key=private_key)
    report = TrainingReport(
        target=data.target,
        rows=RowCounts(fit=len(data.fit), validation=len(data.validation), faults=len(data.faults)),
        selected=selected,
        deployed=False,
        seconds=round(time.monotonic() - started, 3),
        candidates=[candidate.outcome() for candidate in built],
    )
    logger.info("training of %s: %s", data.target, msgspec.json.encode(report).decode())
    return report


def train_target(
    conn: Conn,
    settings: LifecycleSettings,
    target: str,
    *,
    private_key: Ed25519PrivateKey,
    now: datetime | None = None,
) -> TrainingReport:
    """Load `target`'s healthy data from the database and run `train_on_data` (nothing is committed).

    Raises:
        TrainingSkippedError: not enough usable data.
    """
    data = load_training_data(conn, settings, target, now=now)
    return train_on_data(conn, settings, data, private_key=private_key)


def deploy_selected(
    report: TrainingReport, settings: LifecycleSettings, deploy: DeployCallback
) -> TrainingReport:
    """With auto approval, push the run's winner through `deploy` (call it after committing the run).

    Returns:
        The report, `deployed` once the winner was pushed.

    Raises:
        StorageError: the push failed (from `deploy`; the model stays approved).
    """
    if report.selected is None or settings.approval != "auto":
        return report
    deploy(report.target, report.selected)
    return msgspec.structs.replace(report, deployed=True)
