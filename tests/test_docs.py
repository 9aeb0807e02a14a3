"""The docs cannot rot: every internal link resolves and every quoted `forewarn ...` command exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from forewarn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]
)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_internal_link_resolves(doc: Path) -> None:
    text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (doc.parent / path_part).resolve() if path_part else doc
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)
        ):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_exists(words: list[str], parser: argparse.ArgumentParser) -> bool:
    for word in words:
        choices = _subcommands(parser)
        if not choices:
            return True  # the rest are the leaf's arguments
        if word not in choices:
            return not re.fullmatch(r"[a-z][a-z0-9-]*", word)  # a placeholder such as NAME or <x>
        parser = choices[word]
    return True


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_quoted_forewarn_command_exists(doc: Path) -> None:
    parser = build_parser()
    text = doc.read_text(encoding="utf-8")
    quoted = [span for span in _CODE.findall(text) if span.startswith("forewarn ")]
    quoted += [line.strip() for line in text.splitlines() if line.strip().startswith("forewarn ")]
    missing = []
    for command in quoted:
        if command.split()[1].endswith(":"):
            continue  # an error message the command prints, `forewarn edge: error: ...`
        words = [w for w in command.split()[1:] if not w.startswith("-")]
        words = [w.strip("`.,;:)") for w in words[:3]]
        if words and not _command_exists(words, parser):
            missing.append(command)
    assert not missing, f"{doc.name}: commands that do not exist: {missing}"
