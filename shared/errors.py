"""The Forewarn exception hierarchy.

Every error builds its message from structured arguments and keeps them as attributes, so callers can count
by `field` or `key` without parsing text.
"""

from __future__ import annotations

import re
from typing import Self

import msgspec

__all__ = ["ConfigError", "ContractError", "ForewarnError", "ModelVerificationError", "StorageError"]

_MAX_VALUE_REPR = 80


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_REPR else text[: _MAX_VALUE_REPR - 3] + "..."


_PATH = re.compile(r" - at (?:`key` in )?`(\$[^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _value_at(payload: bytes, path: str) -> object:
    """The value at a msgspec error path (`$.a.b[0]`) in a JSON payload, or `?` if it cannot be found."""
    try:
        node: object = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return "?"
    for key, index in _STEP.findall(path):
        if key and isinstance(node, dict) and key in node:
            node = node[key]
        elif index and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return "?"
    return node


class ForewarnError(Exception):
    """Root of every error Forewarn raises on purpose."""


class ContractError(ForewarnError, ValueError):
    """A payload broke its contract; `field` and `value` say where, `expected` says what the rule is.

    Args:
        field: the path of the offending field (`seq`, `$.features.rms`, `payload`).
        value: the offending value (shortened in the message).
        expected: the rule it broke, phrased as what was expected.
    """

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(f"{field}={_short_repr(value)}: expected {expected}")
        self.field = field
        self.value = value
        self.expected = expected

    @classmethod
    def from_validation(cls, exc: msgspec.ValidationError, payload: bytes | None = None) -> Self:
        """Build from a msgspec validation error: its path, and the value there if `payload` is given."""
        text = str(exc)
        match = _PATH.search(text)
        path = match.group(1) if match else "$"
        rule = _PATH.sub("", text)
        value: object = "?"
        if payload is not None:
            value = _value_at(payload, path)
        field = path.removeprefix("$").removeprefix(".")
        missing = _MISSING.search(rule)
        if missing:
            field = f"{field}.{missing.group(1)}" if field else missing.group(1)
            return cls(field, "<missing>", "a value (required field)")
        if rule.startswith("Invalid value") and field.endswith("kind"):
            rule = "a known message kind and schema version"
        rule = rule.removeprefix("Expected ")
        return cls(field or "payload", value, rule[:1].lower() + rule[1:])

    @property
    def reason(self) -> str:
        """A short, stable label for counting rejections: the top-level field name."""
        name = self.field.removeprefix("$.").split(".", 1)[0].split("[", 1)[0]
        return name or "payload"


class ConfigError(ForewarnError, ValueError):
    """A setting has a bad value.

    Args:
        key: the dotted setting key (`edge.queue.max_bytes`).
        value: the bad value.
        expected: what is allowed.
        source: where the value came from (a file, an environment variable, the command line).
    """

    def __init__(self, key: str, value: object, expected: str, source: str = "") -> None:
        where = f" (from {source})" if source else ""
        super().__init__(f"{key} = {_short_repr(value)}: {expected}{where}")
        self.key = key
        self.value = value
        self.expected = expected
        self.source = source


class ModelVerificationError(ForewarnError):
    """A model artifact failed verification (signature, digest, version, features or golden pairs)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"model verification failed at {check}: {detail}")
        self.check = check
        self.detail = detail


class StorageError(ForewarnError):
    """A durable store (disk queue, database) could not do what was asked."""

    def __init__(self, store: str, detail: str) -> None:
        super().__init__(f"{store}: {detail}")
        self.store = store
        self.detail = detail
