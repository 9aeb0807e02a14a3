"""Probation of a freshly swapped model: its alert rate and its share of anomalous windows, and the rollback
it asks for if it floods alerts or holds an alert raised on nearly every window."""

from __future__ import annotations

import dataclasses
import threading

from edge_agent.deployment.settings import DeploymentSettings

__all__ = ["PendingRollbacks", "Probation", "RollbackRequest", "allowed_alerts"]


def allowed_alerts(settings: DeploymentSettings, *, assets: int) -> int:
    """The most alerts a new model may raise within `probation_s` on `assets` assets.

    max(`probation_min_alerts`, `probation_alert_multiple` x `expected_alerts_per_asset_per_h` x assets x
    `probation_s` / 3600).
    """
    per_h = settings.probation_alert_multiple * settings.expected_alerts_per_asset_per_h * assets
    return max(settings.probation_min_alerts, int(per_h * settings.probation_s / 3600.0))


class Probation:
    """Watches a freshly swapped model; `observe` and `observe_windows` say when it must be rolled back.

    Two checks, either of which trips it once within the period: more raised alerts than
    `allowed_alerts`, or, once `min_windows` windows were scored, more than `max_anomalous_fraction` of
    them above the threshold. The second catches a model that scores everything as anomalous: the
    debouncer raises one alert per asset and holds it, so on a target with few assets the alert count
    alone never exceeds the allowance.

    Args:
        target: the model target.
        version: the version on probation.
        started_s: when it was swapped in (monotonic seconds).
        period_s: how long probation lasts.
        allowed_alerts: the most alerts tolerated within the period.
        min_windows: scored windows needed before their anomalous share is judged.
        max_anomalous_fraction: the largest share of anomalous windows tolerated (1.0: never trips).
    """

    def __init__(
        self,
        *,
        target: str,
        version: int,
        started_s: float,
        period_s: float,
        allowed_alerts: int,
        min_windows: int = 1000,
        max_anomalous_fraction: float = 1.0,
    ) -> None:
        self.target = target
        self.version = version
        self.started_s = started_s
        self.period_s = period_s
        self.allowed_alerts = allowed_alerts
        self.min_windows = min_windows
        self.max_anomalous_fraction = max_anomalous_fraction
        self._alerts = 0
        self._windows = 0
        self._anomalous = 0
        self._tripped = False
        self._reason = ""

    @property
    def alerts(self) -> int:
        """Alerts raised by the model since it was swapped in (within the period)."""
        return self._alerts

    @property
    def windows(self) -> tuple[int, int]:
        """(windows scored, of which above the threshold) by the model since it was swapped in."""
        return self._windows, self._anomalous

    @property
    def is_tripped(self) -> bool:
        """Whether the model exceeded its allowance (reported once)."""
        return self._tripped

    def is_over(self, now_s: float) -> bool:
        """Whether probation has ended (passed or tripped)."""
        return self._tripped or now_s - self.started_s > self.period_s

    def observe(self, alert_raised: bool, now_s: float) -> bool:
        """Count one scored decision; True exactly once, when the alerts exceed the allowance in time."""
        if self.is_over(now_s) or not alert_raised:
            return False
        self._alerts += 1
        if self._alerts > self.allowed_alerts:
            elapsed_s = now_s - self.started_s
            self._trip(f"{self._alerts} alerts in {elapsed_s:.0f} s (allowed {self.allowed_alerts})")
            return True
        return False

    def observe_windows(self, scored: int, anomalous: int, now_s: float) -> bool:
        """Count windows the model scored, `anomalous` of them above its threshold; True exactly once,
        when enough were scored and too large a share of them was anomalous."""
        if self.is_over(now_s) or scored <= 0:
            return False
        self._windows += scored
        self._anomalous += min(max(anomalous, 0), scored)
        if self._windows < self.min_windows:
            return False
        share = self._anomalous / self._windows
        if share <= self.max_anomalous_fraction:
            return False
        self._trip(
            f"{share:.0%} of {self._windows} windows anomalous in {now_s - self.started_s:.0f} s "
            f"(allowed {self.max_anomalous_fraction:.0%})"
        )
        return True

    def _trip(self, why: str) -> None:
        self._tripped = True
        self._reason = f"probation: {why}"

    def rollback_request(self, now_s: float) -> RollbackRequest:
        """The request to roll this model back, with the reason its acknowledgement carries."""
        del now_s  # the reason was fixed when probation tripped
        return RollbackRequest(target=self.target, version=self.version, reason=self._reason)


@dataclasses.dataclass(frozen=True, slots=True)
class RollbackRequest:
    """A tripped probation's request: roll `target` back from `version`, acknowledging `reason`."""

    target: str
    version: int
    reason: str


class PendingRollbacks:
    """Rollback requests waiting for the deployment worker: at most one per target, never dropped.

    Not the worker's bounded message queue: a probation trips exactly once, so a request dropped there
    because the queue is full would never be made again and the flooding model would keep serving. This
    slot is unbounded in principle but deduplicated by target, so it never holds more requests than the
    gateway serves targets (a later request for a target replaces the earlier one: the worker checks
    that the version is still the one serving before it rolls back). It owns the one lock it needs, as
    requests come from the pipeline's thread and are taken by the worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, RollbackRequest] = {}

    def put(self, request: RollbackRequest) -> None:
        """Keep `request` until the worker takes it (replacing one for the same target)."""
        with self._lock:
            self._requests[request.target] = request

    def take_all(self) -> list[RollbackRequest]:
        """Every waiting request, removed from the slot."""
        with self._lock:
            requests, self._requests = list(self._requests.values()), {}
        return requests

    def __len__(self) -> int:
        """Requests waiting."""
        with self._lock:
            return len(self._requests)
