"""The model lifecycle: training with gates, registry, Ed25519 signing, push to gateways, drift, scheduling.

Modules: `settings` (the `lifecycle` settings section), `signing` (keys and signatures), `registry` (all
SQL, in the caller's transaction), `records` (the typed metrics, gates, drift reference and training
report), `retraining` (a gated training run from stored data to a registered model: healthy data,
candidates, threshold), `gates` (the gates a candidate must pass), `publisher` (MQTT push), `operations`
(approve, deploy, rollback), `drift` (PSI checks), `scheduler` (APScheduler jobs, once across processes),
`service` (the jobs wired to the cloud settings).
"""

__all__: list[str] = []
