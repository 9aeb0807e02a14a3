"""Dead letters: messages that failed validation or storage, kept with their raw bytes and the reason."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.errors import ContractError

__all__ = ["DeadLetter", "from_contract_error", "write_dead_letters"]

MAX_REASON_CHARS = 2000
_BATCH_MEMBER = re.compile(r"^(\$\.)?messages\[\d+\]\.")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message we could not store as data: where it came from, its bytes, and why."""

    topic: str
    payload: bytes
    reason: str
    field: str

    @property
    def label(self) -> str:
        """A short, stable label for counting (the top-level field, or `storage`); for a batch, the
        member's field (`messages[3].seq` counts as `seq`)."""
        field = _BATCH_MEMBER.sub("", self.field)
        return field.removeprefix("$.").split(".", 1)[0].split("[", 1)[0] or "payload"


def from_contract_error(topic: str, payload: bytes, error: ContractError) -> DeadLetter:
    """The dead letter of a payload that broke its contract."""
    return DeadLetter(topic, payload, str(error)[:MAX_REASON_CHARS], error.field)


def write_dead_letters(cur: psycopg.Cursor[Any], letters: Sequence[DeadLetter]) -> int:
    """Insert dead letters (in the caller's transaction); returns how many."""
    if not letters:
        return 0
    cur.executemany(
        "INSERT INTO dead_letters (topic, payload, reason, field) VALUES (%s, %s, %s, %s)",
        [(letter.topic, letter.payload, letter.reason, letter.field) for letter in letters],
    )
    return len(letters)
