"""Dashboard users against the real PostgreSQL fixture: hashes, roles, failed-login slowing, the CLI."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cloud_service.users import (
    LoginOutcome,
    Role,
    add_user,
    get_user,
    list_users,
    remove_user,
    set_password,
    verify_login,
)
from forewarn.cli import main
from shared.errors import ContractError

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def test_users_are_stored_with_argon2_hashes_and_roles(db: str) -> None:
    with psycopg.connect(db) as conn:
        add_user(conn, "ana", role="engineer", password="correct horse")
        add_user(conn, "bob", role="viewer", password="battery staple")
        conn.commit()
        stored = conn.execute("SELECT password_hash FROM users WHERE username = 'ana'").fetchone()
        assert stored is not None
        assert stored[0].startswith("$argon2id$")
        assert "correct horse" not in stored[0]
        assert [(u.username, u.role) for u in list_users(conn)] == [("ana", "engineer"), ("bob", "viewer")]
        with pytest.raises(ContractError, match="username"):
            add_user(conn, "ana", role="admin", password="another one")
        conn.rollback()
        with pytest.raises(ContractError, match="role"):
            add_user(conn, "cy", role="root", password="long enough")
        with pytest.raises(ContractError, match="password"):
            add_user(conn, "cy", role="admin", password="short")
        with pytest.raises(ContractError, match="username"):
            add_user(conn, "<script>", role="admin", password="long enough")
        assert remove_user(conn, "bob")
        assert not remove_user(conn, "bob")
        conn.commit()
        assert [u.username for u in list_users(conn)] == ["ana"]


def test_functions_leave_the_transaction_to_the_caller(db: str) -> None:
    with psycopg.connect(db) as conn:
        add_user(conn, "ana", role="admin", password="correct horse")
        conn.rollback()
        assert get_user(conn, "ana") is None


@pytest.mark.slow
def test_verify_login_accepts_the_right_password_only(db: str) -> None:
    with psycopg.connect(db) as conn:
        add_user(conn, "ana", role="admin", password="correct horse")
        ok = verify_login(conn, "ana", "correct horse", now=T0)
        assert ok.outcome is LoginOutcome.OK
        assert ok.user is not None
        assert ok.user.last_login_at == T0
        assert verify_login(conn, "ana", "wrong horse", now=T0).outcome is LoginOutcome.BAD_CREDENTIALS
        assert verify_login(conn, "nobody", "correct horse", now=T0).outcome is LoginOutcome.BAD_CREDENTIALS
        assert set_password(conn, "ana", "new password")
        assert not set_password(conn, "nobody", "new password")
        assert verify_login(conn, "ana", "correct horse", now=T0).outcome is LoginOutcome.BAD_CREDENTIALS
        assert verify_login(conn, "ana", "new password", now=T0).outcome is LoginOutcome.OK


@pytest.mark.slow
def test_repeated_failures_lock_the_account_for_a_doubling_delay(db: str) -> None:
    base = timedelta(seconds=2)
    with psycopg.connect(db) as conn:
        add_user(conn, "ana", role="viewer", password="correct horse")
        for _ in range(2):
            assert (
                verify_login(conn, "ana", "bad", now=T0, base_delay=base).outcome
                is LoginOutcome.BAD_CREDENTIALS
            )
        assert (
            verify_login(conn, "ana", "bad", now=T0, base_delay=base).outcome is LoginOutcome.BAD_CREDENTIALS
        )
        locked = verify_login(conn, "ana", "correct horse", now=T0 + timedelta(seconds=1), base_delay=base)
        assert locked.outcome is LoginOutcome.LOCKED
        assert locked.retry_after == timedelta(seconds=1)
        later = T0 + timedelta(seconds=2)
        assert (
            verify_login(conn, "ana", "bad", now=later, base_delay=base).outcome
            is LoginOutcome.BAD_CREDENTIALS
        )
        user = get_user(conn, "ana")
        assert user is not None
        assert user.failed_logins == 4
        assert user.locked_until == later + 2 * base  # the fourth failure doubles the delay
        after = later + 2 * base
        assert (
            verify_login(conn, "ana", "correct horse", now=after, base_delay=base).outcome is LoginOutcome.OK
        )
        user = get_user(conn, "ana")
        assert user is not None
        assert (user.failed_logins, user.locked_until) == (0, None)


def test_roles_include_the_ones_below() -> None:
    assert Role.ADMIN.allows(Role.ENGINEER)
    assert Role.ENGINEER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.ENGINEER)
    assert not Role.ENGINEER.allows(Role.ADMIN)


def test_users_command_adds_lists_changes_and_removes(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db)
    monkeypatch.setenv("FOREWARN_DASHBOARD_DB__HOST", str(info["host"]))
    monkeypatch.setenv("FOREWARN_DASHBOARD_DB__PORT", str(info["port"]))
    monkeypatch.setenv("FOREWARN_DASHBOARD_DB__DBNAME", str(info["dbname"]))
    monkeypatch.setenv("FOREWARN_DASHBOARD_DB__USER", str(info["user"]))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["users", "add", "ana", "--role", "engineer", "--password-stdin"]) == 0
    assert main(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert "added ana (engineer)" in out
    assert "ana" in out.splitlines()[-1]
    assert "correct horse" not in out
    monkeypatch.setattr("sys.stdin", io.StringIO("new password\n"))
    assert main(["users", "passwd", "ana", "--password-stdin"]) == 0
    with psycopg.connect(db) as conn:
        assert verify_login(conn, "ana", "new password").outcome is LoginOutcome.OK
    assert main(["users", "remove", "ana"]) == 0
    assert main(["users", "remove", "ana"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "bob", "--role", "viewer", "--password-stdin"]) == 2
    assert "password" in capsys.readouterr().err


def test_users_command_sets_each_users_time_zone(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db)
    for name, value in (("HOST", info["host"]), ("PORT", info["port"]), ("DBNAME", info["dbname"])):
        monkeypatch.setenv(f"FOREWARN_DASHBOARD_DB__{name}", str(value))
    monkeypatch.setenv("FOREWARN_DASHBOARD_DB__USER", str(info["user"]))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["users", "add", "kai", "--role", "viewer", "--tz", "Asia/Tokyo", "--password-stdin"]) == 0

    def zone() -> str | None:
        with psycopg.connect(db) as conn:
            user = get_user(conn, "kai")
            assert user is not None
            return user.time_zone

    assert zone() == "Asia/Tokyo"
    assert main(["users", "tz", "kai", "America/New_York"]) == 0
    assert zone() == "America/New_York"
    assert main(["users", "list"]) == 0
    assert "zone America/New_York" in capsys.readouterr().out
    for bad in ("Mars/Olympus", "../../etc/passwd", "<b>UTC</b>"):
        assert main(["users", "tz", "kai", bad]) == 2
        assert "time_zone" in capsys.readouterr().err
    assert zone() == "America/New_York"
    assert main(["users", "tz", "kai", "browser"]) == 0
    assert zone() is None
    assert main(["users", "tz", "nobody", "UTC"]) == 1
