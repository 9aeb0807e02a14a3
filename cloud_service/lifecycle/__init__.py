"""The model lifecycle: training with gates, registry, Ed25519 signing, push to gateways, drift, scheduling.

Modules: `settings` (the `lifecycle` settings section), `signing` (keys and signatures), `registry` (all
SQL), `training` (healthy data, candidates, threshold, gates), `publisher` (MQTT push), `operations`
(approve, deploy, rollback), `drift` (PSI checks), `scheduler` (APScheduler jobs, once across processes).
"""

__all__: list[str] = []
