"""A training run for one model target: healthy data, candidates, threshold, gates, signing, registration.

1. Data: the stored aggregates of the target's assets over the last `training_days` (per period the
   mean, minimum and maximum of each feature over its windows: see `load_training_data`), without the
   periods near failures and maintenance (`exclude_before_event_h` before, `exclude_after_event_h` after).
   Periods in the hours before a failure are kept apart as labelled fault rows. The most recent
   `validation_fraction` of the healthy periods is held out for validation.
2. Candidates: every `model_types` entry (`candidates.BUILDERS`), trained, converted, quantized to int8.
3. Threshold per candidate from the held-out healthy int8 scores, for the false-alarm budget: the
   budget is a per-row exceedance probability p = alarms per week / rows per week; beyond the 95th
   percentile the tail is taken as exponential (peaks over threshold), so
   `threshold = margin * (q95 + mean excess over q95 * ln(0.05 / p))`.
4. Gates per candidate: int8/float decision agreement on validation (and fault) rows, one-row int8
   latency, artifact size; then the best candidate (fault detection, then held-out alarm rate) is compared
   with the deployed champion on the same rows (no worse on either). Every candidate is registered,
   signed; those that fail a gate or lose are `rejected` with the reason.
5. Approval: `auto` approves and deploys the winner (through the `deploy` callback); `manual` leaves it a
   `candidate` for `forewarn models approve`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service import queries
from cloud_service.lifecycle import registry
from cloud_service.lifecycle.candidates import Candidate, build_candidate
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.lifecycle.signing import sign_manifest
from cloud_service.modeling import decision_agreement, onnx_scores
from shared.errors import ForewarnError
from shared.messages import encode
from shared.timebase import datetime_to_ns

__all__ = [
    "CandidateResult",
    "TrainingData",
    "TrainingReport",
    "TrainingSkippedError",
    "budget_threshold",
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
_LATENCY_RUNS = 200
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


@dataclass
class CandidateResult:
    """One registered candidate and how it fared."""

    version: int
    model_type: str
    status: registry.ModelStatus
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingReport:
    """What a training run registered, and which version (if any) won."""

    target: str
    n_fit_rows: int
    n_validation_rows: int
    n_fault_rows: int
    candidates: list[CandidateResult]
    selected: int | None
    deployed: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the CLI."""
        return {
            "target": self.target,
            "rows": {
                "fit": self.n_fit_rows,
                "validation": self.n_validation_rows,
                "faults": self.n_fault_rows,
            },
            "selected": self.selected,
            "deployed": self.deployed,
            "seconds": round(self.seconds, 3),
            "candidates": [
                {"version": c.version, "model_type": c.model_type, "status": c.status, "reason": c.reason}
                for c in self.candidates
            ],
        }


# --- data ---------------------------------------------------------------------------------------------


def label_rows(
    asset_ids: Sequence[str],
    times_ns: npt.NDArray[np.int64],
    events: Sequence[tuple[str, datetime, str]],
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
    for asset_id, ts, kind in events:
        event_ns = datetime_to_ns(ts)
        on_asset = assets == asset_id
        near = (
            on_asset
            & (times_ns >= event_ns - before_h * _NS_PER_H)
            & (times_ns <= event_ns + after_h * _NS_PER_H)
        )
        healthy &= ~near
        if kind == "failure":
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


# --- thresholds, references, gates --------------------------------------------------------------------


def budget_threshold(
    scores: npt.NDArray[np.floating[Any]], *, alarms_per_week: float, rows_per_week: float, margin: float
) -> float:
    """The score threshold that healthy rows exceed with probability about alarms/rows per week.

    >>> round(budget_threshold(np.arange(1000.0), alarms_per_week=100, rows_per_week=1000, margin=1.0))
    900
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
) -> dict[str, Any]:
    """Decile bins of each feature and of the scores on training data: the baseline of drift checks."""
    edges = np.quantile(rows.astype(np.float64), _DECILES, axis=0).T  # (F, 9)
    score_edges = np.quantile(np.asarray(scores, dtype=np.float64), _DECILES)
    return {
        "n_rows": len(rows),
        "feature_names": list(names),
        "edges": edges.tolist(),
        "props": [_proportions(rows[:, i], edges[i]) for i in range(len(names))],
        "score_edges": score_edges.tolist(),
        "score_props": _proportions(np.asarray(scores, dtype=np.float64), score_edges),
    }


def _latency_us(model: bytes, row: F32) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(row[:1], dtype=np.float32)}
    session.run(None, feed)
    timings = []
    for _ in range(_LATENCY_RUNS):
        started = time.perf_counter_ns()
        session.run(["score"], feed)
        timings.append(time.perf_counter_ns() - started)
    return float(np.median(timings) / 1e3)


def _rates(model: bytes, threshold: float, data: TrainingData) -> dict[str, float]:
    rates = {"validation_alarm_rate": float(np.mean(onnx_scores(model, data.validation) > threshold))}
    if len(data.faults):
        rates["fault_detection_rate"] = float(np.mean(onnx_scores(model, data.faults) > threshold))
    return rates


def _evaluate(
    candidate: Candidate, data: TrainingData, settings: LifecycleSettings
) -> tuple[Candidate, dict[str, Any]]:
    """Set the candidate's threshold and run its own gates (agreement, latency, size)."""
    healthy_scores = onnx_scores(candidate.onnx_int8, data.validation)
    threshold = budget_threshold(
        healthy_scores,
        alarms_per_week=settings.false_alarms_per_asset_per_week,
        rows_per_week=settings.windows_per_asset_per_week,
        margin=settings.threshold_margin,
    )
    manifest = msgspec.structs.replace(candidate.manifest, threshold=threshold)
    checked = np.vstack([data.validation, data.faults]) if len(data.faults) else data.validation
    agreement = decision_agreement(
        onnx_scores(candidate.onnx_float, checked), onnx_scores(candidate.onnx_int8, checked), threshold
    )
    latency = _latency_us(candidate.onnx_int8, data.validation)
    metrics = {
        "threshold": threshold,
        "int8_float_decision_agreement": agreement,
        "int8_latency_us": latency,
        "model_bytes_float": float(len(candidate.onnx_float)),
        "model_bytes_int8": float(len(candidate.onnx_int8)),
        "healthy_score_p99": float(np.quantile(healthy_scores, 0.99)),
        **_rates(candidate.onnx_int8, threshold, data),
    }
    gates = {
        "agreement": {
            "value": agreement,
            "limit": settings.min_agreement,
            "passed": agreement >= settings.min_agreement,
        },
        "latency_us": {
            "value": latency,
            "limit": settings.max_latency_us,
            "passed": latency <= settings.max_latency_us,
        },
        "size_bytes": {
            "value": len(candidate.onnx_int8),
            "limit": settings.max_model_bytes,
            "passed": len(candidate.onnx_int8) <= settings.max_model_bytes,
        },
    }
    return Candidate(
        candidate.model_type, manifest, candidate.onnx_float, candidate.onnx_int8, metrics
    ), gates


def _failed(gates: dict[str, Any]) -> str:
    failed = [
        f"{name} {g['value']:.6g} vs limit {g['limit']:.6g}" for name, g in gates.items() if not g["passed"]
    ]
    return "gate failed: " + "; ".join(failed) if failed else ""


def _rank(metrics: dict[str, float]) -> tuple[float, float, float]:
    return (
        -metrics.get("fault_detection_rate", 0.0),
        metrics["validation_alarm_rate"],
        metrics["int8_latency_us"],
    )


def _champion_gate(
    conn: Conn, data: TrainingData, metrics: dict[str, float], settings: LifecycleSettings
) -> dict[str, Any]:
    champion = registry.deployed_model(conn, data.target, with_artifact=True)
    if champion is None:
        return {"passed": True, "champion": None, "detail": "no deployed model"}
    if tuple(champion.feature_names) != tuple(data.feature_names):
        return {"passed": True, "champion": champion.version, "detail": "champion uses other features"}
    theirs = _rates(champion.artifact, champion.threshold, data)
    tolerance = settings.champion_tolerance
    worse = metrics["validation_alarm_rate"] > theirs["validation_alarm_rate"] + tolerance
    if "fault_detection_rate" in theirs:
        worse |= metrics["fault_detection_rate"] < theirs["fault_detection_rate"] - tolerance
    return {"passed": not worse, "champion": champion.version, "champion_metrics": theirs}


# --- the run --------------------------------------------------------------------------------------------


def _register(
    conn: Conn,
    data: TrainingData,
    candidate: Candidate,
    result: CandidateResult,
    *,
    reference: dict[str, Any],
    private_key: Ed25519PrivateKey,
) -> None:
    manifest_json = encode(candidate.manifest).decode()
    registry.insert_model(
        conn,
        target=data.target,
        version=result.version,
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
        metrics=result.metrics,
        gates=result.gates,
        reference=reference,
        status=result.status,
        reason=result.reason,
    )


def train_on_data(
    conn: Conn,
    settings: LifecycleSettings,
    data: TrainingData,
    *,
    private_key: Ed25519PrivateKey,
    deploy: DeployCallback | None = None,
) -> TrainingReport:
    """Train every candidate type on `data`, gate, sign, register, and (auto approval) deploy the winner."""
    started = time.monotonic()
    built: list[tuple[Candidate, CandidateResult]] = []
    for model_type in settings.model_types:
        version = registry.allocate_version(conn, data.target)
        raw = build_candidate(
            model_type,
            data.fit,
            data.validation,
            data.feature_names,
            feature_spec=data.feature_spec,
            target=data.target,
            version=version,
            seed=settings.seed,
        )
        candidate, gates = _evaluate(raw, data, settings)
        reason = _failed(gates)
        status: registry.ModelStatus = "rejected" if reason else "candidate"
        built.append(
            (candidate, CandidateResult(version, model_type, status, reason, candidate.metrics, gates))
        )
    passing = sorted((c for c in built if c[1].status == "candidate"), key=lambda c: _rank(c[0].metrics))
    selected: int | None = None
    if passing:
        best, result = passing[0]
        champion = _champion_gate(conn, data, best.metrics, settings)
        result.gates["champion"] = champion
        if champion["passed"]:
            selected = result.version
        else:
            result.status, result.reason = (
                "rejected",
                f"gate failed: worse than the deployed v{champion['champion']}",
            )
        for _, other in passing[1:]:
            other.status, other.reason = (
                "rejected",
                f"not selected: v{result.version} ({result.model_type}) ranked higher",
            )
    if selected is not None and settings.approval == "auto":
        next(r for _, r in built if r.version == selected).status = "approved"
    for candidate, result in built:
        means = data.fit if data.reference_rows is None else data.reference_rows
        held_out = data.validation if data.reference_validation is None else data.reference_validation
        reference = reference_histograms(
            means, data.feature_names, onnx_scores(candidate.onnx_int8, held_out)
        )
        _register(conn, data, candidate, result, reference=reference, private_key=private_key)
    deployed = False
    if selected is not None and settings.approval == "auto" and deploy is not None:
        deploy(data.target, selected)
        deployed = True
    report = TrainingReport(
        target=data.target,
        n_fit_rows=len(data.fit),
        n_validation_rows=len(data.validation),
        n_fault_rows=len(data.faults),
        candidates=[result for _, result in built],
        selected=selected,
        deployed=deployed,
        seconds=time.monotonic() - started,
    )
    logger.info("training of %s: %s", data.target, report.as_dict())
    return report


def train_target(
    conn: Conn,
    settings: LifecycleSettings,
    target: str,
    *,
    private_key: Ed25519PrivateKey,
    deploy: DeployCallback | None = None,
    now: datetime | None = None,
) -> TrainingReport:
    """Load `target`'s healthy data from the database and run `train_on_data`.

    Raises:
        TrainingSkippedError: not enough usable data.
    """
    data = load_training_data(conn, settings, target, now=now)
    return train_on_data(conn, settings, data, private_key=private_key, deploy=deploy)
