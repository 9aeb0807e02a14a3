"""Durable atomic file writes (`shared.atomic_files`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shared.atomic_files import write_atomically


def test_write_replaces_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_parents_are_made_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    with pytest.raises(FileNotFoundError):
        write_atomically(target, b"x")
    write_atomically(target, b"x", make_parents=True)
    assert target.read_bytes() == b"x"


def test_concurrent_writers_never_mix_their_bytes(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    payloads = [bytes([n]) * 65_536 for n in range(8)]
    threads = [threading.Thread(target=write_atomically, args=(target, p)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, b"old")
    with pytest.raises(TypeError):
        write_atomically(target, "not bytes")  # type: ignore[arg-type]  # the wrong type under test
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
