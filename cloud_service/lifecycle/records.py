"""Typed records of the lifecycle: a candidate's metrics and gates, the drift reference, the training report.

A model's metrics, gates and drift reference are stored as JSON in its registry row (the `metrics`,
`gates` and `reference` columns of `models`) and decoded into these structs when the row is read. A row
stored without them (`{}`, the column default, e.g. a model registered by hand) reads as None. The
training report is what a training run returns and `forewarn models train` prints as JSON.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec
from msgspec import Struct

from shared.errors import StorageError

__all__ = [
    "AlarmRates",
    "CandidateMetrics",
    "CandidateOutcome",
    "ChampionGate",
    "DriftReference",
    "Gate",
    "Gates",
    "ModelStatus",
    "RowCounts",
    "TrainingReport",
    "decode_stored",
    "encode_stored",
]

ModelStatus = Literal["candidate", "approved", "deployed", "rejected", "retired"]


class AlarmRates(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Share of rows a model flags at its threshold: validation (healthy) rows, and fault rows if any."""

    validation_alarm_rate: float
    fault_detection_rate: float | None = None


class CandidateMetrics(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a training run measured of one candidate (its int8 model unless named otherwise)."""

    threshold: float
    int8_float_decision_agreement: float
    int8_latency_us: float
    model_bytes_float: float
    model_bytes_int8: float
    healthy_score_p99: float
    validation_alarm_rate: float
    fault_detection_rate: float | None = None

    @property
    def rates(self) -> AlarmRates:
        """The alarm rates alone (what the champion gate compares)."""
        return AlarmRates(
            validation_alarm_rate=self.validation_alarm_rate, fault_detection_rate=self.fault_detection_rate
        )


class Gate(Struct, frozen=True, kw_only=True):
    """One measured gate: the value, the limit it was held to, and whether it passed."""

    value: int | float
    limit: int | float
    passed: bool


class ChampionGate(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The best candidate against the deployed model (the champion) on the same rows.

    Attributes:
        passed: the candidate is no worse (or there was nothing to compare with).
        champion: the deployed version compared with, if any.
        detail: why no comparison was made.
        champion_metrics: the champion's alarm rates on the candidate's rows, when compared.
    """

    passed: bool
    champion: int | None
    detail: str = ""
    champion_metrics: AlarmRates | None = None


class Gates(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A candidate's gates: its own three, and the champion gate if it was the best candidate."""

    agreement: Gate
    latency_us: Gate
    size_bytes: Gate
    champion: ChampionGate | None = None

    def own(self) -> dict[str, Gate]:
        """The candidate's own gates by name, in the order they are reported."""
        return {"agreement": self.agreement, "latency_us": self.latency_us, "size_bytes": self.size_bytes}


class DriftReference(Struct, frozen=True, kw_only=True):
    """Decile bins of each feature and of the scores on a model's training data: the drift baseline.

    Attributes:
        n_rows: training rows the proportions were counted over.
        feature_names: the features, in the order of `edges` and `props`.
        edges: per feature, the 9 decile edges.
        props: per feature, the share of rows in each of the 10 bins.
        score_edges: the decile edges of the model's scores.
        score_props: the share of scores in each bin.
    """

    n_rows: int = 0
    feature_names: list[str] = []
    edges: list[list[float]] = []
    props: list[list[float]] = []
    score_edges: list[float] = []
    score_props: list[float] = []


class RowCounts(Struct, frozen=True, kw_only=True):
    """Rows a training run used: fitted, held out for validation, labelled as faults."""

    fit: int
    validation: int
    faults: int


class CandidateOutcome(Struct, frozen=True, kw_only=True):
    """One registered candidate of a training run and how it fared."""

    version: int
    model_type: str
    status: ModelStatus
    reason: str


class TrainingReport(Struct, frozen=True, kw_only=True):
    """What a training run registered, and which version (if any) won."""

    target: str
    rows: RowCounts
    selected: int | None
    deployed: bool
    seconds: float
    candidates: list[CandidateOutcome]


_Stored = TypeVar("_Stored", CandidateMetrics, Gates, DriftReference)
_DECODERS: dict[type[Struct], msgspec.json.Decoder[object]] = {
    kind: msgspec.json.Decoder(kind) for kind in (CandidateMetrics, Gates, DriftReference)
}
_EMPTY = "{}"


def encode_stored(record: CandidateMetrics | Gates | DriftReference | None) -> str:
    """The JSON stored in the registry for a record (`{}` for None)."""
    return _EMPTY if record is None else msgspec.json.encode(record).decode()


def decode_stored(kind: type[_Stored], text: str, *, column: str) -> _Stored | None:
    """A stored record decoded into `kind`; None for an empty object.

    Raises:
        StorageError: the stored JSON is not a valid `kind` (naming the column and the path).
    """
    if text.strip() == _EMPTY:
        return None
    try:
        record = _DECODERS[kind].decode(text)
    except msgspec.ValidationError as exc:
        raise StorageError(f"models.{column}", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise StorageError(f"models.{column}", "not valid JSON") from exc
    if not isinstance(record, kind):  # the decoder of `kind` returns `kind`: a type guard for mypy
        raise StorageError(f"models.{column}", f"not a {kind.__name__}")
    return record
