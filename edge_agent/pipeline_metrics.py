"""The counters of the edge data pipeline: what came in, what was scored, rejected, raised and sent."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PipelineMetrics"]


@dataclass
class PipelineMetrics:
    """Counters of one pipeline, updated in place by the pipeline's thread; read them from any thread.

    `rejected` counts batches per reason; `stream_rejected` the same per `asset/sensor` (known streams
    only, so a flood of made-up names cannot grow it). `windows_unscored` counts windows cut but not
    scored: `incomplete` (a joined sensor had no usable data), `nonfinite_features`, `feature_mismatch`,
    `scorer_error` (the model raised; logged with its traceback), and, when the baseline scores, `stopped`,
    `transient` (the machine's operating state), `sensor_spikes` (isolated spikes: a sensor fault) and
    `warmup` (the baseline was still learning its warm-up). `baseline_learned` counts windows the
    baselines learned, `baseline_shifts` the level shifts that paused their learning
    (`edge_agent.baseline_learning`).
    """

    batches_in: int = 0
    samples_in: int = 0
    samples_used: int = 0
    samples_nonfinite: int = 0
    windows_cut: int = 0
    windows_scored: int = 0
    windows_unscored: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    stream_rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    alerts_raised: int = 0
    alerts_cleared: int = 0
    alert_updates: int = 0  # re-diagnoses of raised alerts sent (`AlertUpdate`)
    snapshots: int = 0
    aggregates: int = 0
    model_versions: dict[str, str] = field(default_factory=dict)
    baseline_learned: int = 0
    baseline_shifts: int = 0

    def as_dict(self) -> dict[str, float]:
        """Flat `pipeline.*` counters, for a heartbeat's metrics or a bench report."""
        flat: dict[str, float] = {
            f"pipeline.{name}": float(getattr(self, name))
            for name in (
                "batches_in",
                "samples_in",
                "samples_used",
                "samples_nonfinite",
                "windows_cut",
                "windows_scored",
                "alerts_raised",
                "alerts_cleared",
                "alert_updates",
                "snapshots",
                "aggregates",
                "baseline_learned",
                "baseline_shifts",
            )
        }
        for reason, count in dict(self.rejected).items():
            flat[f"pipeline.rejected.{reason}"] = float(count)
        for reason, count in dict(self.windows_unscored).items():
            flat[f"pipeline.windows_unscored.{reason}"] = float(count)
        return flat
