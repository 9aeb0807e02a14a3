"""`forewarn bench fuzz --quick`: mutated payloads of every type through a real broker into a running edge
agent and cloud service; both survive and account for every payload."""

from __future__ import annotations

import pytest

from forewarn.bench.fuzz import run


@pytest.mark.slow
def test_fuzzed_payloads_are_all_received_and_each_decoded_or_kept_with_its_reason() -> None:
    figures = run(quick=True)
    assert figures["edge_alive"]
    assert figures["cloud_alive"]
    assert figures["edge_received"] >= figures["edge_raw_sent"]  # the plant link counts raw batches
    assert figures["edge_rejected"] > 0
    assert figures["cloud_received"] >= figures["cloud_sent"]
    assert figures["cloud_dead_lettered"] == figures["cloud_dead_letter_rows"] > 0
    assert figures["cloud_received"] == figures["cloud_decoded"] + figures["cloud_dead_lettered"]
    assert figures["edge_rss_growth_bytes"] < 200 << 20
    assert figures["cloud_rss_growth_bytes"] < 200 << 20
