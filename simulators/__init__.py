"""Simulators: a deterministic fleet of machines that degrade and fail, live over MQTT or offline to CSV.

Public API:

- `load_scenario(name_or_path)` -> `Scenario` (bundled: `bundled_scenarios()`); `parse_scenario(dict)`.
- `simulate(scenario)` -> iterator of `Step` (every asset's signals per step, events, ground truth).
- `iter_batches(scenario)` -> `RawBatch` objects in time order; `iter_items` adds `MaintenanceEvent`s;
  `iter_messages` gives MQTT `Message`s with the scenario's transport faults injected.
- `export_scenario(scenario, out_dir)` -> CSV files (features, events, ground truth, raw subset).
- `read_recording(path)` / `messages_from_recording(path)`: CSV recordings back to batches/messages.
- `Publisher` and `publish_stream(messages, publisher, speed=...)`: paced publishing to a broker.
- `SimSettings`: the component's settings (`forewarn config show sim`).
"""

from simulators.engine import Step, TruthRecord, fleet_units, simulate
from simulators.export import ExportResult, export_scenario, feature_columns
from simulators.publisher import BrokerUnavailableError, Publisher, PublishStats, publish_stream
from simulators.replay import ReplayStats, messages_from_recording, read_recording
from simulators.scenario import Scenario, bundled_scenarios, load_scenario, parse_scenario
from simulators.settings import SimSettings
from simulators.stream import Message, iter_batches, iter_items, iter_messages

__all__ = [
    "BrokerUnavailableError",
    "ExportResult",
    "Message",
    "PublishStats",
    "Publisher",
    "ReplayStats",
    "Scenario",
    "SimSettings",
    "Step",
    "TruthRecord",
    "bundled_scenarios",
    "export_scenario",
    "feature_columns",
    "fleet_units",
    "iter_batches",
    "iter_items",
    "iter_messages",
    "load_scenario",
    "messages_from_recording",
    "parse_scenario",
    "publish_stream",
    "read_recording",
    "simulate",
]
