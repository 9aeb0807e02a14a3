"""What every part of Forewarn agrees on: contracts, topics, features, time, configuration.

`shared` imports only the standard library, numpy and the validation libraries (msgspec, pydantic); no other
Forewarn package imports into it (an import-linter contract). Modules, in data-flow order:

* `raw_batch` (raw sensor sample batches, binary hot path and JSON), `timebase` (UTC epoch ns, datetime and
  ISO conversions, a recording's time column, plausibility window);
* `features` (feature extraction over batches of windows, named and versioned `FeatureSpec`s);
* `messages` (every JSON message, typed once, one `decode_*` per topic family), `aggregate_block`
  (aggregates column by column), `topics` (the MQTT topic tree, built and parsed only there);
* `model_transfer` (signed deployment text and chunk format, cloud to gateway);
* `mqtt` (paho MQTT 5 clients from settings), `config` (layered settings: defaults < TOML < `FOREWARN_*`
  < CLI; sections shared by components), `atomic_files` (durable atomic writes), `errors` (the exception
  hierarchy rooted at `ForewarnError`).

Import the module you need; nothing is re-exported here, so `import shared` stays cheap.
"""

__all__: list[str] = []
