"""Errors of the forecaster: a bad input file, a bad model directory, data that cannot be learned from."""

from __future__ import annotations

from pathlib import Path

from shared.errors import ForewarnError

__all__ = ["DataFileError", "ForecastDataError", "ModelFormatError"]


class DataFileError(ForewarnError, ValueError):
    """A CSV file broke its contract; `path`, `row` (1-based, the header is row 1) and `column` say where.

    Args:
        path: the file.
        row: the 1-based line number of the offending row (the header is row 1), or 0 for the whole file.
        column: the offending column name, or "" when the row as a whole is wrong.
        detail: what was wrong, phrased for the user.
    """

    def __init__(self, path: str | Path, row: int, column: str, detail: str) -> None:
        where = f"{path}"
        if row > 0:
            where += f", row {row}"
        if column:
            where += f", column {column!r}"
        super().__init__(f"{where}: {detail}")
        self.path = str(path)
        self.row = row
        self.column = column
        self.detail = detail


class ForecastDataError(ForewarnError, ValueError):
    """The data is well formed but cannot be learned from (for example no run-to-failure asset)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ModelFormatError(ForewarnError):
    """A model directory is missing, damaged, or written by an incompatible format version."""

    def __init__(self, path: str | Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = str(path)
        self.detail = detail
