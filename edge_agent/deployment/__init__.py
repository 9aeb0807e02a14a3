"""Signed model deployments from the cloud: verify, hot-swap, keep on probation, roll back, acknowledge.

Modules, in the order a deployment passes through them:

* `settings` (`DeploymentSettings`, section `deployment` of the edge settings);
* `client` (`DeploymentClient`: the receiver's own upstream MQTT connection; orders and chunks in,
  acknowledged to the broker after handling);
* `receiver` (`DeploymentReceiver`, the orchestrator on its `edge-deploy` thread, and its
  `DeploymentMetrics`; acknowledgements go to its ack listeners, and the edge agent commits them to the
  disk queue, from which the forwarder sends them upstream);
* `assembly` (`ChunkAssembly`: retained chunks back into the artifact);
* `verification` (`load_public_key`, the Ed25519 signature and the order's own checks, `RefusedError`);
* `probation` (`Probation`, `RollbackRequest` and `PendingRollbacks`: a flooding model's rollback);
* `rollback_state` (`RollbackState`: versions rolled back, kept in `state_file` across restarts).

The names below are re-exported for the edge agent, the CLI and the tests.
"""

from edge_agent.deployment.client import DeploymentClient
from edge_agent.deployment.probation import Probation, RollbackRequest
from edge_agent.deployment.receiver import AckListener, DeploymentMetrics, DeploymentReceiver
from edge_agent.deployment.settings import DeploymentSettings
from edge_agent.deployment.verification import load_public_key

__all__ = [
    "AckListener",
    "DeploymentClient",
    "DeploymentMetrics",
    "DeploymentReceiver",
    "DeploymentSettings",
    "Probation",
    "RollbackRequest",
    "load_public_key",
]
