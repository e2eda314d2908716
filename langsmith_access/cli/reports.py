"""Access-review commands: ``access-at`` (who held what at a time) and ``export`` (files).

Both only read the analysts' database (``LANGSMITH_ACCESS_DUCKDB``), read-only and the way an
analyst would: they never take the writer lease and never block a sync.

Exit codes: 0 done; 1 the database is missing or unreadable; 2 bad arguments (a time that is not
ISO 8601, an unknown user or workspace, a workspace name shared by several workspaces).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from langsmith_access.cli.common import (
    UsageError,
    add_org_argument,
    analysts_database,
    given,
    named_path,
    print_table,
    refuse_a_file_among_the_folders,
    refuse_another_orgs_folder,
    refused_if_unmakeable,
    selected_org,
)
from langsmith_access.governance.decisions import utc_designator
from langsmith_access.settings import load_orgs
from langsmith_access.store import queries
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.export import EXPORT_FORMATS, export_tables
from langsmith_access.store.sync_runs import require_synced, require_tables


def add_commands(commands: argparse._SubParsersAction) -> None:
    access_at = commands.add_parser(
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
    access_at.add_argument("--user", metavar="U", type=given("an email or user id", "every user"),
                           help="only this user: email (any case) or user id")
    access_at.add_argument(
        "--workspace",
        metavar="W",
        type=given("a workspace name or id", "every workspace"),
        help="only the grants in this workspace: its name or id (organization roles are left out)",
    )
    access_at.add_argument(
        "--effective",
        action="store_true",
        help="also the implicit Admin of Organization Admins in every workspace (source "
        "organization_admin), as effective_access counts it",
    )
    access_at.add_argument(
        "--credentials",
        action="store_true",
        help="also the keys and tokens usable at T (created, not revoked, not expired), as the "
        "latest inventory lists them",
    )
    access_at.add_argument(
        "--settings", action="store_true", help="also the org's settings at T (org_settings_history)"
    )
    access_at.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of grants; with --effective, --credentials or --settings an object "
        "with the key grants and those asked for (credentials, settings)",
    )
    add_org_argument(access_at)
    access_at.set_defaults(handler=access_at_time)

    export = commands.add_parser(
        "export",
        help="write every analysts' table (schema main) to Parquet or CSV files",
        description=(
            "Write each table of schema main of the analysts' database (the marts, grant_history, "
            "the report_* tables, sync_runs, the provisioning tables) to DIR/<table>.<format>, "
            "read-only. Raw and staging tables are never exported."
        ),
    )
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="file_format",
                        help="file format: one file per table (CSV: text that starts like a formula, "
                             "=, +, -, @, a tab or a carriage return, at its start or after a ';', a tab "
                             "or a line break, gets an apostrophe there; Parquet keeps values exactly)")
    export.add_argument("--out", required=True, metavar="DIR",
                        type=named_path("the directory to write into (e.g. --out exports)"),
                        help="directory to write into")
    add_org_argument(export)
    export.set_defaults(handler=export_files)


# ------------------------------------------------------------------------------------ access-at


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime; naive values are UTC."""
    value = text.strip()
    if value.lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(utc_designator(value))
    except ValueError:
        raise UsageError(
            f"--time {text!r} is not an ISO 8601 date or date-time; use e.g. 2026-11-01, "
            "2026-11-01T12:00 (UTC) or 2026-11-01T12:00:00+02:00."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first day datetime knows, in UTC
        raise UsageError(
            f"--time {text!r} is out of range in UTC: give a time between the years 1 and 9999, e.g. 2026-11-01."
        ) from None


def naive_time_note(text: str) -> str | None:
    """A note when ``--time`` has no zone and this host's clock is not on UTC then: it is read as
    UTC, as documented, but an analyst in New York typing this morning's 07:55 would otherwise get
    the access of five hours earlier without a word. None for text with a zone, for ``now``, and on
    a host whose clock reads UTC at that time."""
    value = text.strip()
    if value.lower() == "now":
        return None
    typed = datetime.fromisoformat(utc_designator(value))  # parse_time has read it already
    if typed.tzinfo is not None:
        return None
    try:
        # Python reads a naive datetime as this host's local time; fold picks the first or
        # second of a wall time the clocks show twice.
        here, here_again = typed.astimezone(), typed.replace(fold=1).astimezone()
    except (OverflowError, OSError, ValueError):  # the first or last days datetime knows
        return None
    if here.utcoffset() == here_again.utcoffset() == timedelta(0):
        return None
    utc = queries.iso_utc(typed.replace(tzinfo=UTC))
    if here.utcoffset() != here_again.utcoffset():
        local = "this host's clock skips or repeats that time: give its offset"
    else:
        local = f"for {value} on this host's clock ({here.tzname()}), write {here.isoformat()}"
    return f"note: --time {value} has no time zone, so it is read as UTC ({utc}); {local}."


# The human table: one row per grant, times in UTC to the second, as the heading's (to the
# minute, two syncs a few seconds apart read as an interval "07:38 -> 07:38").
HELD_TABLE_SQL = """
SELECT
    coalesce(email, user_id) || CASE WHEN user_disabled THEN ' (disabled)' ELSE '' END AS "EMAIL",
    CASE WHEN entitlement_type = 'organization_role' THEN 'organization'
         ELSE coalesce(workspace_name, '(name not recorded)') END AS "SCOPE",
    workspace_id AS "WORKSPACE ID",
    coalesce(role_name, role_id) AS "ROLE",
    strftime(valid_from AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S') AS "SINCE",
    coalesce(strftime(valid_to AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S'), '-') AS "UNTIL"
FROM ({held})
"""


# With --effective: the listed grants and the implicit Admin of Organization Admins, marked.
EFFECTIVE_TABLE_SQL = """
SELECT * FROM (
    SELECT *, 'listed' AS "VIA" FROM ({held_table})
    UNION ALL
    SELECT *, 'implicit: Organization Admin' AS "VIA" FROM ({implicit_table})
)
ORDER BY "EMAIL", "SCOPE" = 'organization' DESC, "SCOPE", "VIA"
"""


# What --credentials and --settings read besides the grants: tables a release added, which an
# analysts' copy an older release published lacks until this release syncs it.
EXTRA_TABLES = {"credentials": "credentials", "settings": "org_settings_history"}


def access_at_time(args: argparse.Namespace) -> int:
    at = parse_time(args.time)
    note = naive_time_note(args.time)
    if note:
        print(note, file=sys.stderr)
    extended = args.effective or args.credentials or args.settings
    database = analysts_database(args)
    with database.read_published() as conn:
        require_synced(conn, database.path)
        require_tables(conn, database.path, {f"--{option}": table for option, table in EXTRA_TABLES.items()
                                             if getattr(args, option)})
        user_ids = queries.resolve_user(conn, args.user) if args.user else None
        workspace_id = (queries.resolve_workspace(conn, args.workspace, past_names=True, at=at)
                        if args.workspace else None)
        held = queries.grants_held_at(conn, at, user_ids=user_ids, workspace_id=workspace_id)
        if args.effective:
            held += queries.implicit_admin_access_at(conn, at, user_ids=user_ids, workspace_id=workspace_id)
        credentials = queries.credentials_usable_at(conn, at) if args.credentials else None
        if credentials is not None and queries.inventory_listed_at(conn) is None:
            # Only the inventory lists keys and tokens: an empty list would read as "none could act".
            print(
                "note: no inventory has run on this database, so no credential is known (not: none existed); "
                "`langsmith-access sync --all-sections` (or the inventory schedule) lists them.",
                file=sys.stderr,
            )
        settings = queries.settings_at(conn, at) if args.settings else None
        first_recorded = queries.first_recorded_at(conn)
        if first_recorded is None or at < first_recorded:
            since = f"since {queries.iso_utc(first_recorded)}" if first_recorded else "no history yet"
            print(
                f"note: {queries.iso_utc(at)} is before the first recorded sync ({since}): nothing "
                "is known about that time.",
                file=sys.stderr,
            )
        elif at > datetime.now(UTC):
            last = queries.last_synced_at(conn)
            print(
                f"note: {queries.iso_utc(at)} is in the future: this is the access as of the latest "
                f"sync ({queries.iso_utc(last)}) and the changes recorded since, not a forecast.",
                file=sys.stderr,
            )
        unknown = len({grant.user_id for grant in held if grant.user_disabled is None})
        if unknown and not (first_recorded is None or at < first_recorded):
            # Before user_history began (a database an older version built): neither disabled
            # nor enabled is known, and the table's unmarked rows must not read as "enabled".
            began = queries.user_history_began_at(conn)
            print(
                f"note: whether disabled at {queries.iso_utc(at)} is not known for {unknown} "
                f"member{'s' * (unknown != 1)} listed (no '(disabled)' mark; user_disabled null in --json): "
                + (f"user_history begins at {queries.iso_utc(began)}, the first sync of a version that records it."
                   if began is not None else
                   "this database has no user_history yet; the next sync starts it."),
                file=sys.stderr,
            )
        if args.json:
            grants = [grant.to_json() for grant in held]
            if not extended:
                print(json.dumps(grants, ensure_ascii=False, indent=2))
                return 0
            answer: dict = {"grants": grants}
            if credentials is not None:
                answer["credentials"] = credentials
            if settings is not None:
                answer["settings"] = settings
            print(json.dumps(answer, ensure_ascii=False, indent=2))
            return 0
        print(_held_heading(held, at, args))
        if held:
            sources = queries.history_sources(conn)
            sql, params = queries.held_at_query(at, user_ids=user_ids, workspace_id=workspace_id, **sources)
            table = HELD_TABLE_SQL.format(held=sql)
            if args.effective:
                implicit, _ = queries.implicit_admin_query(at, user_ids=user_ids, workspace_id=workspace_id,
                                                           **sources)
                table = EFFECTIVE_TABLE_SQL.format(
                    held_table=table, implicit_table=HELD_TABLE_SQL.format(held=implicit)
                )
            print_table(conn.sql(table, params=params), len(held))
        if credentials is not None:
            print(f"\nCredentials usable at {at:%Y-%m-%d %H:%M:%S} UTC: {len(credentials)}")
            if credentials:
                print_table(conn.sql(CREDENTIALS_TABLE_SQL, params={"at": at}), len(credentials))
        if settings is not None:
            print(f"\nOrganization settings at {at:%Y-%m-%d %H:%M:%S} UTC: {len(settings)}")
            if settings:
                print_table(conn.sql(SETTINGS_TABLE_SQL, params={"at": at}), len(settings))
    return 0


CREDENTIALS_TABLE_SQL = f"""
SELECT kind AS "KIND", short_key AS "KEY", description AS "DESCRIPTION",
    coalesce(role_name, org_role_name) AS "ROLE",
    strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%d') AS "CREATED",
    coalesce(strftime(last_used_at AT TIME ZONE 'UTC', '%Y-%m-%d'), 'never') AS "LAST USED",
    coalesce(strftime(expires_at AT TIME ZONE 'UTC', '%Y-%m-%d'), 'never') AS "EXPIRES"
FROM ({queries.CREDENTIALS_AT_SQL})
"""

SETTINGS_TABLE_SQL = """
SELECT setting AS "SETTING", value AS "VALUE",
    strftime(valid_from AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') AS "SINCE"
FROM main.org_settings_history
WHERE valid_from <= $at AND (valid_to IS NULL OR valid_to > $at)
ORDER BY setting
"""


def _held_heading(held: list[queries.HeldGrant], at: datetime, args: argparse.Namespace) -> str:
    filters = []
    if args.user:
        filters.append(f"user {args.user}")
    if args.workspace:
        filters.append(f"workspace {args.workspace}")
    users = len({grant.user_id for grant in held})
    disabled = len({grant.user_id for grant in held if grant.user_disabled})
    return (
        f"Access at {at:%Y-%m-%d %H:%M:%S} UTC"
        + (f" ({', '.join(filters)})" if filters else "")
        + f": {len(held)} grant{'s' * (len(held) != 1)}, {users} user{'s' * (users != 1)}"
        + (f" ({disabled} disabled then: they keep their grants but cannot sign in)" if disabled else "")
    )


# --------------------------------------------------------------------------------------- export


def export_files(args: argparse.Namespace) -> int:
    out_dir: Path = args.out.expanduser()
    with refused_if_unmakeable("--out", out_dir, "exports"):
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} exists and is not a directory.")
        refuse_a_file_among_the_folders("--out", out_dir)
    database = analysts_database(args)
    selected = selected_org(args).slug
    for org in load_orgs(refuse_unusable_keys=False):
        # Another org's copies too: this org's tables there would pass for that org's.
        own = AccessDatabase(org.duckdb_path)
        owner = "" if org.slug == selected else f" (org {org.slug!r}'s published copy)"
        for published in (own.parquet_path, own.docs_path):
            # Every publish replaces these directories whole: an export into one would overwrite
            # the live Parquet copy (or the docs site) in place, and the next publish discard it.
            if out_dir.resolve().is_relative_to(published.resolve()):
                raise UsageError(
                    f"--out {out_dir} is inside {published}{owner}, which every publish replaces: "
                    "export into a directory of your own (e.g. --out exports)."
                )
    refuse_another_orgs_folder(args, "--out", out_dir)
    with database.read_published() as conn:
        require_synced(conn, database.path)
        with refused_if_unmakeable("--out", out_dir, "exports"):
            out_dir.mkdir(parents=True, exist_ok=True)
        written = export_tables(conn, out_dir, args.file_format)
    width = max((len(table) for table in written), default=0)
    for table, rows in written.items():
        print(f"  {table.ljust(width)}  {rows:>9} rows  {out_dir / f'{table}.{args.file_format}'}")
    print(
        f"Exported {len(written)} tables as {args.file_format} from {database.path} to {out_dir}"
    )
    return 0
