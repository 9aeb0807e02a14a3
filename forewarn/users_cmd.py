"""`forewarn users add|list|remove|passwd|tz`: the dashboard's users, in the cloud database.

Passwords are read from a prompt (twice, not echoed) or, with `--password-stdin`, from the first line of
standard input; never from the command line, where other users of the machine could read them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.users import Role, add_user, list_users, remove_user, set_password, set_time_zone
from dashboard.settings import DashboardSettings
from shared.config import load_settings
from shared.errors import ConfigError, StorageError

__all__ = ["register"]

BROWSER = "browser"  # the zone argument that means: the browser's own zone


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("password", "(hidden)", "the same password twice")
    return password


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    settings = load_settings(DashboardSettings, toml_path=args.config)
    try:
        return psycopg.connect(settings.db.conninfo())
    except psycopg.Error as exc:
        raise StorageError("database", str(exc).strip()) from exc


def _report(username: str, *, found: bool, done: str) -> int:
    if not found:
        print(f"forewarn users: no user {username}", file=sys.stderr)
        return 1
    print(done)
    return 0


def _add(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with _connect(args) as conn:
        user = add_user(conn, args.username, role=args.role, password=password, time_zone=_zone(args.tz))
        conn.commit()
    print(f"added {user.username} ({user.role})")
    return 0


def _zone(text: str | None) -> str | None:
    return None if text in (None, "", BROWSER) else text


def _tz(args: argparse.Namespace) -> int:
    zone = _zone(args.zone)
    with _connect(args) as conn:
        changed = set_time_zone(conn, args.username, zone)
        conn.commit()
    shown = zone or "the browser's zone"
    return _report(args.username, found=changed, done=f"{args.username} sees times in {shown}")


def _list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        users = list_users(conn)
    if not users:
        print("no users yet: forewarn users add NAME --role admin")
    for user in users:
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        zone = user.time_zone or BROWSER
        print(
            f"{user.username:24s} {user.role:9s} last login {last}, failed logins {user.failed_logins}, "
            f"zone {zone}"
        )
    return 0


def _remove(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        removed = remove_user(conn, args.username)
        conn.commit()
    return _report(args.username, found=removed, done=f"removed {args.username}")


def _passwd(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with _connect(args) as conn:
        changed = set_password(conn, args.username, password)
        conn.commit()
    return _report(args.username, found=changed, done=f"password of {args.username} changed")


def register(subparsers: Any) -> None:
    """Add `users` to the command line."""
    parser = subparsers.add_parser("users", help="Add, list or remove dashboard users; set a password.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(
        name: str, help_text: str, handler: Any, *, needs_name: bool = True
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, default=None, help="The dashboard's TOML file.")
        if needs_name:
            sub.add_argument("username", help="The user's login name.")
        sub.set_defaults(handler=handler)
        return sub

    add = action("add", "Create a user with a role (the password is prompted for).", _add)
    add.add_argument(
        "--role", required=True, choices=[role.value for role in Role], help="viewer, engineer or admin."
    )
    add.add_argument(
        "--tz",
        default=None,
        metavar="ZONE",
        help="IANA time zone for the user's times (default: the browser's).",
    )
    action("list", "List users with their roles and last login.", _list, needs_name=False)
    action("remove", "Delete a user.", _remove)
    tz = action("tz", "Set the time zone a user's times are shown in (`browser`: the browser's).", _tz)
    tz.add_argument("zone", help="An IANA zone such as Europe/Berlin, or `browser`.")
    passwd = action("passwd", "Set a user's password (and clear a login lock).", _passwd)
    for sub in (add, passwd):
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password from standard input's first line.",
        )
