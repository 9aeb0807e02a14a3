"""Plant connectors: producers that read a plant source and publish raw batches on the plant broker.

Each connector runs as its own process on the gateway (`forewarn connect KIND --config FILE`), like the
simulator, and needs only `shared`; the edge agent's intake reads what they publish as it reads any raw
batch. Modules:

* `settings` (one settings component per connector, on `ConnectorSettings`), `health` (counters and the
  retained `ConnectorStatus` heartbeat), `publishing` (`SamplePublisher`: values -> raw batches) and
  `runtime` (`ConnectorRuntime`: the three wired together around a connector's source loop);
* the connectors: `files` (recorded WAV, CSV and TDMS files), `modbus` (Modbus TCP polling), `opcua`
  (OPC UA subscriptions or polling, asyncua), `sparkplug` (a Sparkplug B host application) with
  `sparkplug_alerts` (Forewarn's alerts back to SCADA as a Sparkplug B edge node).

A connector module exposes `run(settings, stop)`, which runs until `stop` is set.

Import the module you need; nothing is re-exported here.
"""

__all__: list[str] = []
