"""Versioned schema migrations: SQL files applied in order, each once, recorded in `schema_migrations`.

Files in `cloud_service/migrations/` are named `NNNN_name.sql` (every backend) or `NNNN_name.plain.sql`
and `NNNN_name.timescale.sql` (one per backend). A session advisory lock serialises concurrent runs (several
ingest processes starting at once); each migration runs in its own transaction with its record, so a run
that fails half-way leaves every applied migration recorded and the failed one absent. Running again is
harmless: applied versions are skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.schema import Backend, detect_backend
from shared.errors import StorageError

__all__ = ["MIGRATIONS_DIR", "Migration", "MigrationReport", "discover", "migrate"]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x466F_7265_7761_726E  # "Forewarn" in ASCII: the advisory lock of the migration runner
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_BACKEND_SUFFIX = {"plain": Backend.POSTGRES, "timescale": Backend.TIMESCALE}

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    backend     text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS forewarn_meta (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its SQL file for every backend."""

    version: int
    name: str
    files: dict[Backend, Path]


@dataclass(slots=True)
class MigrationReport:
    """What a `migrate` run found and did."""

    backend: Backend
    applied: list[str] = field(default_factory=list)
    already_applied: int = 0


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in `directory`, in version order.

    Raises:
        StorageError: a file is misnamed, or a version lacks the file for one backend.
    """
    found: dict[int, tuple[str, dict[Backend, Path]]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise StorageError("migrations", f"{path.name}: expected NNNN_name[.plain|.timescale].sql")
        version, name, suffix = int(match.group(1)), match.group(2), match.group(3)
        _, files = found.setdefault(version, (name, {}))
        backends = [_BACKEND_SUFFIX[suffix]] if suffix else list(Backend)
        for backend in backends:
            files[backend] = path
    migrations = [Migration(version, name, files) for version, (name, files) in sorted(found.items())]
    for migration in migrations:
        if set(migration.files) != set(Backend):
            raise StorageError("migrations", f"version {migration.version} lacks a file for a backend")
    return migrations


def _choose_backend(conn: psycopg.Connection[Any], *, allow_timescale: bool) -> Backend:
    row = conn.execute("SELECT value FROM forewarn_meta WHERE key = 'storage_backend'").fetchone()
    if row is not None:
        return Backend(row[0])
    backend = detect_backend(conn, allow_timescale=allow_timescale)
    with conn.transaction():
        if backend is Backend.TIMESCALE:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(
            "INSERT INTO forewarn_meta (key, value) VALUES ('storage_backend', %s) ON CONFLICT DO NOTHING",
            (backend.value,),
        )
    logger.info("storage backend chosen: %s", backend.value)
    return backend


def migrate(
    conninfo: str, *, allow_timescale: bool = True, directory: Path = MIGRATIONS_DIR
) -> MigrationReport:
    """Apply every migration the database lacks, in order.

    Args:
        conninfo: libpq connection string of the database.
        allow_timescale: use TimescaleDB if the server has it preloaded (only at the first migration).
        directory: where the SQL files are.

    Raises:
        StorageError: a migration failed (the database keeps every migration before it).
    """
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_BOOTSTRAP)
            backend = _choose_backend(conn, allow_timescale=allow_timescale)
            report = MigrationReport(backend)
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in applied:
                    report.already_applied += 1
                    continue
                _apply(conn, migration, backend)
                report.applied.append(f"{migration.version:04d}_{migration.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return report


def _apply(conn: psycopg.Connection[Any], migration: Migration, backend: Backend) -> None:
    path = migration.files[backend]
    sql = path.read_text(encoding="utf-8")
    try:
        with conn.transaction():
            conn.execute(sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, backend) VALUES (%s, %s, %s)",
                (migration.version, migration.name, backend.value),
            )
    except psycopg.Error as exc:
        raise StorageError("migrations", f"{path.name} failed: {exc}") from exc
    logger.info("applied migration %s", path.name)
