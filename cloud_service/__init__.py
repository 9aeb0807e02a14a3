"""The Forewarn cloud service: ingests what the gateways send, stores it once, and serves its readers.

Modules, in data-flow order:

* `ingest` (paho thread -> bounded queue, bytes -> validated messages), `deadletter` (what failed, kept
  with its bytes and reason);
* `copy_encoding` (aggregate blocks -> PostgreSQL's binary COPY stream, a pure function), `writer`
  (`BatchWriter`: one batch, one transaction, idempotent; it commits, then the worker acknowledges);
* `service` (`IngestWorker`s, `run_service`: workers, upkeep timer), `database` (the process's connection
  pool, shared by the scheduled jobs, the upkeep timer and the dashboard's requests);
* `schema` (plain PostgreSQL or TimescaleDB), `migrate` and `migrations/` (the schema), `rollups` and
  `upkeep` (partitions, rollups, retention, TimescaleDB policies);
* `queries` (every read and the few edits: aggregates, alerts and events, assets, ingest stats; callers
  commit);
* `lifecycle` (training, registry, signing, deployment, drift, scheduled jobs), `modeling` (anomaly models
  to ONNX), `forecasting` (remaining useful life and failure probability);
* `settings` (`CloudSettings`, with the forecasting section from `forecasting.settings`), loaded by
  `forewarn cloud --config cloud.toml`.

Import the module you need; nothing is re-exported here, so `import cloud_service` stays cheap.
"""

__all__: list[str] = []
