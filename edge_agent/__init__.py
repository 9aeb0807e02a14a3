"""The Forewarn edge agent: scores raw sensor streams next to the machines and forwards what matters.

Modules, in data-flow order:

* `intake` (plant broker -> bounded queue), `quarantine` (rejected payloads, counted and sampled);
* `pipeline_settings`, `windowing`, `pipeline`, `alerts`, `aggregation` (windows, features, scores, alerts,
  aggregates), `scoring` and `model_store` (baseline and ONNX scorers, versioned models, hot swap);
* `disk_queue` (store-and-forward, per-gateway `seq`), `forwarder` (QoS 1 upstream, delete on PUBACK),
  `heartbeat` (retained status, last will);
* `deployment` (signed model deployments from the cloud, when configured);
* `settings` (`EdgeSettings`) and `agent` (`EdgeAgent`, the threads wiring it all), run by
  `forewarn edge --config gateway.toml`; `offline` (`forewarn edge score`).

Import the module you need; nothing is re-exported here, so `import edge_agent` stays cheap.
"""

__all__: list[str] = []
