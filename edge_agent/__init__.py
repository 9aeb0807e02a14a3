"""The Forewarn edge agent: scores raw sensor streams next to the machines and forwards what matters.

Modules, in data-flow order:

* `intake` (plant broker -> bounded queue), `quarantine` (rejected payloads, counted and sampled);
* `windowing` (stream checks, windows), `pipeline` (the orchestrator: features, scores, alerts, aggregates),
  with `operating_state` (stopped, transient, sensor spikes), `model_compatibility` (does a model fit an
  asset), `alerts`, `snapshots` (raw samples around an alert), `aggregation` and `pipeline_metrics`;
  `scoring` and `model_store` (baseline and ONNX scorers, versioned models, hot swap);
* `disk_queue` (store-and-forward, per-gateway `seq`), `forwarder` (QoS 1 upstream, delete on PUBACK),
  `heartbeat` (retained status, last will);
* `deployment` (signed model deployments from the cloud, when configured);
* `settings` (`EdgeSettings` and all its sections but the deployment receiver's) and `agent` (`EdgeAgent`,
  the threads wiring it all), run by `forewarn edge --config gateway.toml`; `offline` (`forewarn edge score`),
  which reads recordings with `samples_csv`;
* `connectors` (plant connectors: separate processes that publish raw batches from recorded files, Modbus
  TCP, OPC UA, Sparkplug B, `forewarn connect KIND`; see docs/connectors.md).

Import the module you need; nothing is re-exported here, so `import edge_agent` stays cheap.
"""

__all__: list[str] = []
