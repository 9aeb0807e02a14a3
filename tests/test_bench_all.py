"""`forewarn bench all`: one JSON document over the suites, and the figure table in docs/benchmarks.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forewarn.bench import SUITES
from forewarn.bench.all_suites import BEGIN_MARK, END_MARK, flatten, render_table, update_document
from forewarn.bench.targets import TARGETS
from forewarn.cli import main


def test_bench_all_runs_the_chosen_suites_and_writes_their_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\nHand-written text stays.\n\n{BEGIN_MARK}\nold table\n{END_MARK}\n\nAfter.\n"
    )
    assert main(["bench", "all", "--quick", "--json", "--suites", "contracts", "--markdown", str(doc)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["suite"] == "all"
    assert set(document["suites"]) == {"contracts"}
    figures = document["suites"]["contracts"]
    assert figures["raw_batch_binary_decode_samples_per_s"] > 0
    text = doc.read_text()
    assert "Hand-written text stays." in text
    assert "After." in text
    assert "old table" not in text
    assert "`contracts.features_windows_per_s`" in text
    assert text.count(BEGIN_MARK) == 1


def test_an_unknown_suite_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "all", "--suites", "contracts,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_the_table_marks_a_missed_target() -> None:
    results = {"dashboard": {"fleet_page_ms": 1500.0, "asset_page_90d_ms": 20.0, "nested": {"x": 1}}}
    table = render_table(results, "test machine")
    assert "| `dashboard.fleet_page_ms` | 1500 | < 1000 | **no** |" in table
    assert "| `dashboard.asset_page_90d_ms` | 20 | < 1000 | yes |" in table
    assert "`dashboard.nested.x`" in table
    assert flatten({"a": {"b": {"c": 1}}}) == {"a.b.c": 1}


def test_every_target_names_a_suite() -> None:
    assert {key.partition(".")[0] for key in TARGETS} <= set(SUITES)


def test_a_document_without_the_marks_gains_the_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    update_document(doc, "| t |\n")
    update_document(doc, "| u |\n")
    text = doc.read_text()
    assert text.count(BEGIN_MARK) == 1
    assert "| u |" in text
    assert "| t |" not in text
