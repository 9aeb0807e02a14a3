"""Property tests of the simulator's two parsers: scenario files and CSV recordings."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ConfigError, ContractError
from simulators import ReplayStats, parse_scenario, read_recording

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_KEYS = st.sampled_from(
    [
        "name", "seed", "time", "signals", "assets", "failures", "sensor_faults", "transport_faults",
        "type", "count", "asset", "mode", "onset_h", "time_to_failure_h", "duration_h", "step_s", "start",
        "burst_samples", "kind", "sensor", "start_h", "export", "raw_assets", "bogus",
    ]
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_any_scenario_content_is_accepted_or_rejected_with_a_config_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        parse_scenario(data)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet="ab1.-:TZ 0e9n", max_size=10), min_size=0, max_size=5),
        max_size=20,
    ),
    st.sampled_from(["asset_id,time,vibration", "asset_id,time,event", "asset_id,time,a,b", "x,y"]),
)
def test_any_recording_yields_batches_or_counts_rejections(rows: list[list[str]], header: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rec.csv"
        path.write_text(header + "\n" + "\n".join(",".join(row) for row in rows) + "\n")
        stats = ReplayStats()
        if not header.startswith("asset_id,time,"):
            with pytest.raises(ContractError, match="header"):
                list(read_recording(path, stats=stats))
            return
        items = list(read_recording(path, stats=stats))
        assert stats.batches + stats.events == len(items)
        assert sum(stats.rejected.values()) <= stats.rows + len(rows) * 4
