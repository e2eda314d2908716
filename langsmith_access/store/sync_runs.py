"""``sync_runs``: one row per run of the sync or the inventory job (``job`` says which).

A run that succeeds writes its row as its last step, in the database it publishes. A run that
fails publishes nothing: its row (``status`` 'failed', ``failure`` saying why, the API calls it
spent; no row counts) goes into the working file, under the writer lease it still holds, and
reaches the analysts' copy with the next run that publishes. A run that never got the lease
(another held it too long) cannot write there: it leaves its row as a file
(``defer_failed_run``), and the next sync or inventory records it (``deferred_failed_runs``)."""

from __future__ import annotations

import glob
import json
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from langsmith_access.names import SYNC_JOB
from langsmith_access.settings import check_organization_id
from langsmith_access.store.durable import replace_durably
from langsmith_access.store.sections import section_reads, section_rows_json, skipped_sections_json
from langsmith_access.store.sql import column_names, first_row, scalar, table_exists

Left = TypeVar("Left")

SUCCEEDED, FAILED = "succeeded", "failed"
COUNTED_TABLES = ("users", "pending_invites", "workspaces", "roles", "entitlements", "grants")


def record_sync_run(
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    started_at: datetime,
    finished_at: datetime,
    api_stats: dict,
    job: str = SYNC_JOB,
    organization_id: str | None = None,
) -> dict:
    """Count the freshly built tables and insert the run's row. Returns what was recorded.

    ``skipped_sections`` and ``section_rows`` come from what the run's extract steps recorded
    in ``raw.section_reads`` (``{}`` when it read no section of the access picture)."""
    counts: dict = {
        table: scalar(conn, f"SELECT count(*) FROM main.{table}")
        for table in COUNTED_TABLES
    }
    counts["workspace_grants"] = scalar(
        conn, "SELECT count(*) FROM main.grants WHERE entitlement_type = 'workspace_role'"
    )
    reads = section_reads(conn, sync_id)
    route = scalar(conn, "SELECT string_agg(DISTINCT source, ',') FROM raw.workspace_memberships")
    read = first_row(
        conn,
        "SELECT membership_route, route_reason, anonymity_restricted FROM raw.membership_read "
        "WHERE sync_id = ?",
        [sync_id],
    )
    if read is not None:
        # Named by the extract even when no workspace had a member to list.
        route = read[0]
    elif job != SYNC_JOB:
        route = None  # the inventory reads no members
    row = {
        "sync_id": sync_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "status": SUCCEEDED,
        "membership_route": route,
        **counts,
        "api_calls": api_stats.get("calls", 0),
        "api_retries": api_stats.get("retries", 0),
        "api_rate_limited": api_stats.get("rate_limited", 0),
        "api_wait_seconds": api_stats.get("wait_seconds", 0.0),
        "duration_seconds": round((finished_at - started_at).total_seconds(), 3),
        "route_reason": read[1] if read else None,
        "anonymity_restricted": read[2] if read else None,
        "job": job,
        "skipped_sections": skipped_sections_json(reads),
        "section_rows": section_rows_json(reads),
        "organization_id": organization_id,
    }
    return _insert_run(conn, row)


def record_failed_run(
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    started_at: datetime,
    finished_at: datetime,
    api_stats: dict | None,
    job: str,
    failure: str,
    organization_id: str | None = None,
) -> dict:
    """Insert a failed run's row: when, which job, why, and what it spent of the API
    (``api_stats`` None: not known, the columns stay null). Returns what was recorded."""
    stats = api_stats or {}
    row = {
        "sync_id": sync_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "status": FAILED,
        "api_calls": stats.get("calls"),
        "api_retries": stats.get("retries"),
        "api_rate_limited": stats.get("rate_limited"),
        "api_wait_seconds": stats.get("wait_seconds"),
        "duration_seconds": round((finished_at - started_at).total_seconds(), 3),
        "job": job,
        "failure": failure,
        "organization_id": organization_id,
    }
    return _insert_run(conn, row)


# Said by a refused run; left out where nothing was attempted (the doctor's warning of the refusal).
NOTHING_DONE = " Nothing was asked of LangSmith and no data was changed."


class OtherOrganizationError(RuntimeError):
    """The database holds another LangSmith organization's data than the run is for."""

    def __init__(self, path: Path, held: str, configured: str, found: Path | None = None):
        if found is not None:
            # Another folder of the orgs file's layout holds the configured org: two slugs swapped
            # (or one renamed onto another org's folder); a new path would only start a second database.
            self.fix = (
                f"{found} holds organization {configured}'s data: give this org the slug "
                f"{found.parent.name!r} in LANGSMITH_ACCESS_ORGS_FILE (if two slugs were swapped, swap "
                f"them back), or correct the organization id if {held} is the org you meant"
            )
        else:
            self.fix = (
                f"point LANGSMITH_ACCESS_DUCKDB (or the org's slug in LANGSMITH_ACCESS_ORGS_FILE) at "
                f"organization {configured}'s own database (a path that does not exist yet is created "
                f"by the first sync), or correct the organization id if {held} is the org you meant"
            )
        super().__init__(
            f"{path} holds organization {held}'s data (its last sync), not organization {configured}'s, "
            "the one configured here: writing it would mix two organizations' history and apply one "
            f"organization's requests with the other's key.{NOTHING_DONE} Fix: {self.fix}"
        )


class OrganizationElsewhereError(OtherOrganizationError):
    """A new database for an org of the orgs file while another org folder beside it holds that
    organization's data: a slug renamed in the orgs file (or the same org under a second slug)."""

    def __init__(self, path: Path, other: Path, held: str):
        root = path.parent.parent
        self.fix = (
            f"to keep its queue and history, move the files of {other.parent} (everything named "
            f"langsmith_access* and logs/) into {path.parent}; to start afresh, move {other.parent} "
            f"out of {root}"
        )
        RuntimeError.__init__(
            self,
            f"{path} does not exist yet, but {other} holds this organization's data ({held}, its last "
            "sync): one organization in two databases would have two histories and two queues, and "
            "the requests and time-bound grants left in the other one would never be settled (a slug "
            f"renamed in the orgs file leaves its old folder behind).{NOTHING_DONE} Fix: {self.fix}",
        )


def check_not_elsewhere(path: Path, root: Path, organization_id: str) -> None:
    """Refuse (``OrganizationElsewhereError``) to create ``path``, an org's new database under
    ``root`` (``<root>/<slug>/<file>``, an orgs file's layout), while another folder of ``root``
    holds a database of the same organization. A file that cannot be read is left out."""
    other = database_elsewhere(path, root, organization_id)
    if other is not None:
        raise OrganizationElsewhereError(path, other[0], other[1])


def database_elsewhere(
    path: Path, root: Path, organization_id: str, leave_out: Collection[str] = ()
) -> tuple[Path, str] | None:
    """The database of the same name as ``path`` in another folder of ``root`` (an orgs file's
    layout) that holds ``organization_id``'s data, with the id as it holds it; None if none does.
    A file that cannot be read (another process writing it, no database) is left out, and so are
    the folders named in ``leave_out`` (a sensor's tick: the orgs it lists, whose databases hold
    other orgs, left unopened)."""
    for other in sorted(root.glob(f"*/{glob.escape(path.name)}")):
        if other.parent.resolve() == path.parent.resolve() or other.parent.name in leave_out:
            continue
        try:
            with duckdb.connect(str(other), read_only=True) as conn:
                held = organization_of(conn)
        except duckdb.Error:
            continue
        if held is not None and same_organization(held, organization_id):
            return other, held
    return None


def organization_of(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The LangSmith organization whose data the database holds: the one its latest successful
    run was for, or, in a database from before runs recorded it, its workspaces' organization;
    None for a database no run has filled (or whose workspaces do not say). A file read as an
    older release left it (read-only: another org folder's) may have no such column at all."""
    if "organization_id" in column_names(conn, "main", "sync_runs"):
        recorded = first_row(
            conn,
            "SELECT organization_id FROM main.sync_runs WHERE status = ? AND organization_id IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT 1",
            [SUCCEEDED],
        )
        if recorded is not None:
            return recorded[0]
    if table_exists(conn, "main", "workspaces"):
        listed = first_row(
            conn, "SELECT organization_id FROM main.workspaces WHERE organization_id IS NOT NULL LIMIT 1")
        if listed is not None:
            return str(listed[0])
    return None


def check_organization(conn: duckdb.DuckDBPyConnection, path: Path, organization_id: str,
                       orgs_root: Path | None = None) -> None:
    """Refuse (``OtherOrganizationError``) a run for ``organization_id`` on a database that
    holds another organization's data: a changed LANGSMITH_ORGANIZATION_ID, or two orgs' slugs
    swapped in the orgs file, would otherwise sync one org over the other's history. Under an
    orgs file's ``orgs_root`` the refusal names the folder that holds ``organization_id``'s data."""
    held = organization_of(conn)
    if held is not None and not same_organization(held, organization_id):
        # An id that is no UUID (orgs-file ids are checked on load, so LANGSMITH_ORGANIZATION_ID,
        # which commands that call no API leave unchecked): that is the fix, and the value may be
        # a key pasted into the wrong variable, which the message below would print.
        check_organization_id(organization_id)
        found = database_elsewhere(path, orgs_root, organization_id) if orgs_root is not None else None
        raise OtherOrganizationError(path, held, organization_id, found[0] if found else None)


def same_organization(one: str, other: str) -> bool:
    """Whether two spellings of an organization id (case, braces, hyphens) are the same org."""
    return _same_uuid(one) == _same_uuid(other)


def _same_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return value.strip().lower()


def leave_aside(directory: Path, name: str, content: dict) -> Path:
    """Leave ``content`` in ``directory`` as ``<name>.json`` (written aside and renamed: no reader
    sees half of one) for the next process that holds the writer lease to record; for a process
    that could not take it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    aside = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    aside.write_text(json.dumps(content), encoding="utf-8")
    replace_durably(aside, path)
    return path


def left_aside(directory: Path, read: Callable[[Any], Left]) -> list[tuple[Path, Left]]:
    """Each file ``leave_aside`` left, in name order, with what ``read`` makes of its JSON (remove
    the file once that is recorded). A file that is no JSON, or that ``read`` cannot make sense
    of, is skipped and stays: not one of ours, never in the way of a run."""
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            found.append((path, read(json.loads(path.read_text(encoding="utf-8")))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def defer_failed_run(directory: Path, *, sync_id: str, started_at: datetime, finished_at: datetime,
                     job: str, failure: str, organization_id: str | None = None) -> Path:
    """Leave a failed run's row in ``directory`` (``leave_aside``) for the next run that holds
    the writer lease; for a run that could not take it. ``organization_id``: the org the run was
    for (a run pointed at another org's database leaves its row there, before any org check)."""
    return leave_aside(directory, sync_id, {"sync_id": sync_id, "started_at": started_at.isoformat(),
                                            "finished_at": finished_at.isoformat(), "job": job, "failure": failure,
                                            "organization_id": organization_id})


def deferred_failed_runs(directory: Path) -> list[tuple[Path, dict]]:
    """The rows ``defer_failed_run`` left, oldest first, each with its file (remove it once the
    row is recorded: recording one twice replaces it, by ``sync_id``). Unreadable files are
    skipped, and stay. ``organization_id`` is None in a row an older release left."""
    def row(text: Any) -> dict:
        organization_id = text.get("organization_id")
        return {"sync_id": str(text["sync_id"]), "job": str(text["job"]), "failure": str(text["failure"]),
                "started_at": _aware(datetime.fromisoformat(text["started_at"])),
                "finished_at": _aware(datetime.fromisoformat(text["finished_at"])),
                "organization_id": str(organization_id) if organization_id is not None else None}

    return sorted(left_aside(directory, row), key=lambda item: item[1]["finished_at"])


# A row is written aside and renamed within milliseconds; one still aside after this long was
# left by a process that died between the two (nothing else would ever remove it).
ABANDONED_DRAFT_SECONDS = 3600


def remove_abandoned_drafts(directory: Path, *, older_than_seconds: float = ABANDONED_DRAFT_SECONDS) -> list[Path]:
    """Remove the ``.<name>.<suffix>.tmp`` files ``leave_aside`` writes aside, where a
    process died before renaming one, once they are ``older_than_seconds`` old (a younger one
    may be another process's, about to be renamed). Returns what it removed; never raises."""
    removed = []
    cutoff = time.time() - older_than_seconds
    for path in directory.glob(".*.tmp") if directory.is_dir() else []:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # gone already, or not ours to remove: left for the next run
    return removed


def _aware(moment: datetime) -> datetime:
    """A time without an offset read as UTC (what ``defer_failed_run`` writes has one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _insert_run(conn: duckdb.DuckDBPyConnection, row: dict) -> dict:
    """Insert (or replace, by ``sync_id``) a run's row, the columns ``row`` names."""
    columns = ", ".join(row)
    placeholders = ", ".join("?" for _ in row)
    conn.execute(
        f"INSERT OR REPLACE INTO main.sync_runs ({columns}) VALUES ({placeholders})",
        list(row.values()),
    )
    return row


def recorded_sync_run(conn: duckdb.DuckDBPyConnection, sync_id: str) -> dict | None:
    """The ``sync_runs`` row of one sync, by column name; None when there is none."""
    cursor = conn.execute("SELECT * FROM main.sync_runs WHERE sync_id = ?", [sync_id])
    rows = cursor.fetchall()  # to the end: the connection is used again after this
    return dict(zip([d[0] for d in cursor.description], rows[0], strict=True)) if rows else None


def succeeded_sync_run(conn: duckdb.DuckDBPyConnection, sync_id: str) -> dict:
    """The ``sync_runs`` row of a sync that succeeded: it wrote that row as its last step."""
    row = recorded_sync_run(conn, sync_id)
    if row is None:
        raise RuntimeError(f"sync {sync_id} succeeded but main.sync_runs has no row for it")
    return row


class NoPublishedSyncError(RuntimeError):
    """A command reads what syncs build, and no sync has been published yet."""

    fix = "run `langsmith-access sync` first (or `langsmith-access sync --all-sections` for the inventory too)"


def has_published_sync(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether a sync has succeeded in this database (a file without ``sync_runs`` has none).
    Any succeeded run counts: a sync by its job, or launched from the asset catalog (Dagster's
    ``__ASSET_JOB``), and an inventory only ever succeeds on top of one."""
    try:
        [(syncs,)] = conn.execute("SELECT count(*) FROM main.sync_runs WHERE status = 'succeeded'").fetchall()
    except duckdb.CatalogException:
        return False
    return syncs > 0


class PredatesTablesError(RuntimeError):
    """A command reads a table a later release added, from a database an older release published
    and this release has not synced since."""

    fix = "run langsmith-access sync: it builds every table the commands read"


def require_tables(conn: duckdb.DuckDBPyConnection, path: object, tables: dict[str, str]) -> None:
    """For a command that reads tables a later release added (``tables``: what asks for each, an
    option, -> the table in schema ``main``), once ``require_synced``: raise ``PredatesTablesError``
    naming those this database (``path``, for the message) lacks, in plain words. DuckDB's own
    words were "Catalog Error: Table with name ... does not exist! Did you mean ...?"."""
    missing = {asker: table for asker, table in tables.items() if not table_exists(conn, "main", table)}
    if missing:
        raise PredatesTablesError(
            f"the analysts' database {path} predates {' and '.join(f'main.{t}' for t in missing.values())}, "
            f"which {' and '.join(missing)} read{'s' * (len(missing) == 1)}: an older release of "
            "langsmith-access published it, and this release has not synced it since"
        )


def require_synced(conn: duckdb.DuckDBPyConnection, path: object) -> None:
    """For a command that reads what syncs build: raise ``NoPublishedSyncError`` unless a sync
    has been published to this database (``path``, for the message). Queueing a request before
    the first sync creates the file with the queue's tables only."""
    if not has_published_sync(conn):
        raise NoPublishedSyncError(f"no sync has been published to {path} yet: run `langsmith-access sync` first")


# The numbers the published asset carries on every run (the Dagster UI plots them across runs).
PICTURE_METRICS_SQL = {
    "members": "SELECT count(*) FROM main.users",
    "organization_admins": (
        "SELECT count(*) FROM main.users JOIN main.roles ON roles.role_id = users.org_role_id "
        "WHERE roles.name = 'ORGANIZATION_ADMIN'"
    ),
    # People who are a listed Admin of at least one shared workspace.
    "workspace_admins": (
        "SELECT count(DISTINCT grants.user_id) FROM main.grants "
        "JOIN main.roles ON roles.role_id = grants.role_id "
        "WHERE grants.entitlement_type = 'workspace_role' AND roles.name = 'WORKSPACE_ADMIN'"
    ),
    "grants": "SELECT count(*) FROM main.grants",
    "implicit_admins": "SELECT count(*) FROM main.report_implicit_admins",
    "credentials_without_expiry": "SELECT count(*) FROM main.report_credential_hygiene WHERE no_expiry",
    "unused_credentials": "SELECT count(*) FROM main.report_credential_hygiene WHERE never_used OR unused",
    "keys_of_inactive_creators": "SELECT count(*) FROM main.report_credential_hygiene WHERE creator_inactive",
    # Condition groups of attached access policies that, as tagged, apply to no resource.
    "policy_groups_matching_nothing": (
        "SELECT count(*) FROM main.report_access_policy_reach WHERE matches_nothing AND is_attached"
    ),
}


def picture_metrics(conn: duckdb.DuckDBPyConnection, recorded: dict) -> dict[str, int]:
    """Counts of the published picture for a run's metadata: members, Organization Admins,
    workspace Admins, grants, implicit admins, credentials without expiry, unused credentials,
    service keys whose creator is no longer an enabled member, condition groups of attached access
    policies that match no resource, and the sections the run skipped
    (from its ``sync_runs`` row, ``recorded``)."""
    metrics = {name: int(scalar(conn, sql)) for name, sql in PICTURE_METRICS_SQL.items()}
    metrics["skipped_sections"] = len(json.loads(recorded.get("skipped_sections") or "{}"))
    return metrics
