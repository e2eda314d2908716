"""Access-review commands: ``access-at`` (who held what at a time) and ``export`` (files).

Both only read the analysts' database (``LANGSMITH_ACCESS_DUCKDB``), read-only and the way an
analyst would: they never take the writer lease and never block a sync. ``cli.py`` adds them with
``add_commands`` and hands every parsed command to ``run`` first.

Exit codes: 0 done; 1 the database is missing or unreadable; 2 bad arguments (a time that is not
ISO 8601, an unknown user or workspace, a workspace name shared by several workspaces).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

EXPORT_FORMATS = ("parquet", "csv")  # the formats of langsmith_access.store.export


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says why (exit 2)."""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    access_at = subparsers.add_parser(
        "access-at",
        help="who held which role at a point in time (from grant_history)",
        description=(
            "List the grants held at time T: each user's organization role and every workspace "
            "role, as the syncs recorded them in grant_history (valid_from <= T < valid_to). "
            "Reads the analysts' database read-only."
        ),
    )
    access_at.add_argument(
        "--time",
        required=True,
        metavar="T",
        help="ISO 8601 date or date-time, e.g. 2026-11-01, 2026-11-01T12:00, "
        "2026-11-01T12:00:00+02:00; without an offset it is UTC ('now' for the latest state)",
    )
    access_at.add_argument("--user", metavar="U", help="only this user: email (any case) or user id")
    access_at.add_argument(
        "--workspace",
        metavar="W",
        help="only the grants in this workspace: its name or id (organization roles are left out)",
    )
    access_at.add_argument("--json", action="store_true", help="print a JSON list of grants")

    export = subparsers.add_parser(
        "export",
        help="write every analysts' table (schema main) to Parquet or CSV files",
        description=(
            "Write each table of schema main of the analysts' database (the marts, grant_history, "
            "the report_* tables, sync_runs, the provisioning tables) to DIR/<table>.<format>, "
            "read-only. Raw and staging tables are never exported."
        ),
    )
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="file_format")
    export.add_argument("--out", required=True, metavar="DIR", type=Path, help="directory to write into")


def run(args: argparse.Namespace) -> int | None:
    """Run ``args.command`` if it is one of this module's; None when it is not."""
    if args.command == "access-at":
        return _guarded(_access_at, args)
    if args.command == "export":
        return _guarded(_export, args)
    return None


def _guarded(command, args: argparse.Namespace) -> int:
    from langsmith_access.store.database import DatabaseBusyError, DatabaseNotReadyError

    import duckdb

    try:
        return command(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatabaseNotReadyError:
        print(
            f"error: the analysts' database {_database_path()} does not exist yet: "
            "run langsmith-access sync first.",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:
        # The reader stopped early (`... | head`): not an error. Silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (DatabaseBusyError, duckdb.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _database_path() -> Path:
    from langsmith_access.settings import Settings

    return Settings.from_env().duckdb_path


def _database():
    from langsmith_access.store.database import AccessDatabase

    return AccessDatabase(_database_path())


# ------------------------------------------------------------------------------------ access-at


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime; naive values are UTC."""
    value = text.strip()
    if value.lower() == "now":
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--time {text!r} is not an ISO 8601 date or date-time; use e.g. 2026-11-01, "
            "2026-11-01T12:00 (UTC) or 2026-11-01T12:00:00+02:00."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True)
class HeldGrant:
    grant_id: str
    entitlement_type: str
    user_id: str
    email: str | None
    workspace_id: str | None
    workspace_name: str | None
    role_id: str
    role_name: str | None
    valid_from: datetime
    valid_to: datetime | None

    @property
    def scope(self) -> str:
        return "organization" if self.entitlement_type == "organization_role" else "workspace"

    def to_json(self) -> dict:
        return {
            "grant_id": self.grant_id,
            "entitlement_type": self.entitlement_type,
            "scope": self.scope,
            "user_id": self.user_id,
            "email": self.email,
            "workspace_id": self.workspace_id,
            "workspace_name": self.workspace_name,
            "role_id": self.role_id,
            "role_name": self.role_name,
            "valid_from": _iso(self.valid_from),
            "valid_to": _iso(self.valid_to),
        }


HELD_AT_SQL = """
SELECT
    history.grant_id,
    history.entitlement_type,
    history.user_id,
    coalesce(users.email, history.email) AS email,
    history.workspace_id,
    workspaces.display_name AS workspace_name,
    history.role_id,
    coalesce(roles.display_name, history.role_name) AS role_name,
    history.valid_from,
    history.valid_to
FROM main.grant_history AS history
LEFT JOIN main.users AS users ON users.user_id = history.user_id
LEFT JOIN main.workspaces AS workspaces ON workspaces.workspace_id = history.workspace_id
LEFT JOIN main.roles AS roles ON roles.role_id = history.role_id
WHERE history.valid_from <= $at
    AND (history.valid_to IS NULL OR history.valid_to > $at)
"""


def grants_held_at(conn, at: datetime, *, user_ids=None, workspace_id=None) -> list[HeldGrant]:
    """The grants held at ``at`` (DESIGN.md: valid_from <= T and (valid_to null or > T))."""
    sql = HELD_AT_SQL
    params: dict = {"at": at}
    if user_ids is not None:
        sql += "    AND list_contains($user_ids, history.user_id)\n"
        params["user_ids"] = list(user_ids)
    if workspace_id is not None:
        sql += "    AND history.workspace_id = $workspace_id\n"
        params["workspace_id"] = workspace_id
    sql += (
        "ORDER BY lower(coalesce(users.email, history.email)), history.user_id, "
        "history.entitlement_type, workspaces.display_name, history.workspace_id"
    )
    return [HeldGrant(*row) for row in conn.execute(sql, params).fetchall()]


def resolve_user(conn, text: str) -> list[str]:
    """User ids for an email (case-insensitive) or a user id, current members and past ones."""
    wanted = text.strip()
    known = """
        SELECT user_id, email FROM main.users
        UNION ALL
        SELECT user_id, email FROM main.grant_history
    """
    by_id = conn.execute(f"SELECT DISTINCT user_id FROM ({known}) WHERE user_id = ?", [wanted]).fetchall()
    if by_id:
        return [by_id[0][0]]
    by_email = conn.execute(
        f"SELECT DISTINCT user_id FROM ({known}) WHERE lower(trim(email)) = lower(?) ORDER BY 1",
        [wanted],
    ).fetchall()
    if not by_email:
        raise UsageError(f"no user with the email or user id {text!r} in the analysts' database.")
    return [user_id for (user_id,) in by_email]


def resolve_workspace(conn, text: str) -> str:
    """A workspace id from an id or a display name (exact, then case-insensitive)."""
    wanted = text.strip()
    by_id = conn.execute(
        "SELECT workspace_id FROM main.workspaces WHERE workspace_id = $w "
        "UNION SELECT workspace_id FROM main.grant_history WHERE workspace_id = $w",
        {"w": wanted},
    ).fetchall()
    if by_id:
        return by_id[0][0]
    for condition in ("display_name = ?", "lower(display_name) = lower(?)"):
        named = conn.execute(
            "SELECT workspace_id, display_name, tenant_handle FROM main.workspaces "
            f"WHERE {condition} ORDER BY created_at, workspace_id",
            [wanted],
        ).fetchall()
        if len(named) == 1:
            return named[0][0]
        if len(named) > 1:
            listing = "\n".join(
                f"  {workspace_id}  {name}" + (f" ({handle})" if handle else "")
                for workspace_id, name, handle in named
            )
            raise UsageError(
                f"{len(named)} workspaces are named {text!r}; pass one of their ids with "
                f"--workspace:\n{listing}"
            )
    raise UsageError(f"no workspace with the name or id {text!r} in the analysts' database.")


def _access_at(args: argparse.Namespace) -> int:
    at = parse_time(args.time)
    with _database().read_published() as conn:
        user_ids = resolve_user(conn, args.user) if args.user else None
        workspace_id = resolve_workspace(conn, args.workspace) if args.workspace else None
        held = grants_held_at(conn, at, user_ids=user_ids, workspace_id=workspace_id)
        first_recorded = conn.execute("SELECT min(valid_from) FROM main.grant_history").fetchone()[0]
    if first_recorded is None or at < first_recorded:
        since = f"since {_iso(first_recorded)}" if first_recorded else "no history yet"
        print(
            f"note: {_iso(at)} is before the first recorded sync ({since}): nothing is known "
            "about that time.",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps([grant.to_json() for grant in held], ensure_ascii=False, indent=2))
        return 0
    _print_held(held, at, args)
    return 0


def _print_held(held: list[HeldGrant], at: datetime, args: argparse.Namespace) -> None:
    filters = []
    if args.user:
        filters.append(f"user {args.user}")
    if args.workspace:
        filters.append(f"workspace {args.workspace}")
    users = len({grant.user_id for grant in held})
    print(
        f"Access at {at:%Y-%m-%d %H:%M:%S} UTC"
        + (f" ({', '.join(filters)})" if filters else "")
        + f": {len(held)} grant{'s' * (len(held) != 1)}, {users} user{'s' * (users != 1)}"
    )
    if not held:
        return
    header = ("EMAIL", "SCOPE", "WORKSPACE ID", "ROLE", "SINCE", "UNTIL")
    rows = [
        (
            grant.email or grant.user_id,
            "organization" if grant.scope == "organization" else (grant.workspace_name or "(not listed now)"),
            grant.workspace_id or "",
            grant.role_name or grant.role_id,
            f"{grant.valid_from.astimezone(timezone.utc):%Y-%m-%d %H:%M}",
            f"{grant.valid_to.astimezone(timezone.utc):%Y-%m-%d %H:%M}" if grant.valid_to else "-",
        )
        for grant in held
    ]
    widths = [max(_width(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(_pad(cell, width) for cell, width in zip(row, widths)).rstrip())


def _width(text: str) -> int:
    """Terminal columns: wide (CJK, emoji) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------- export


def _export(args: argparse.Namespace) -> int:
    from langsmith_access.store.export import export_tables

    out_dir: Path = args.out.expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory.")
    database = _database()
    with database.read_published() as conn:
        written = export_tables(conn, out_dir, args.file_format)
    width = max((len(table) for table in written), default=0)
    for table, rows in written.items():
        print(f"  {table.ljust(width)}  {rows:>9} rows  {out_dir / f'{table}.{args.file_format}'}")
    print(
        f"Exported {len(written)} tables as {args.file_format} from {database.path} to {out_dir}"
    )
    return 0
