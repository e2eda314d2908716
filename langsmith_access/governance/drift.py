"""Drift: the notifications of grant changes no applied request explains (DESIGN.md section 10).

dbt decides what is unexplained (``report_unexplained_changes``); this module only turns the
rows one sync saw into ``change.unexplained`` notifications, one per change, each raised once:
its outbox id is derived from the change itself, so re-running the step, rebuilding the report
or publishing again never notifies twice. Plain Python, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from langsmith_access.governance.notifications import Notifier
from langsmith_access.store.sql import table_exists

EVENT = "change.unexplained"
REPORT = "main.report_unexplained_changes"
# The roles whose unexplained changes the check unexplained_privileged_changes warns of (by
# roles.name; the same list is in the report's dbt test).
PRIVILEGED_ROLES = frozenset({"WORKSPACE_ADMIN", "ORGANIZATION_ADMIN"})


@dataclass(frozen=True)
class UnexplainedChange:
    """One row of ``report_unexplained_changes``, with the names a person reads."""

    change: str  # added | removed | role_changed
    user_id: str
    email: str | None
    workspace_id: str | None  # None: the organization role
    workspace_name: str | None
    role_id: str
    role_name: str | None  # display name
    previous_role_id: str | None
    previous_role_name: str | None
    seen_at: datetime
    sync_id: str
    role_names: frozenset[str] = frozenset()  # roles.name of the role and the previous one


    @property
    def is_privileged(self) -> bool:
        """It gives, takes away or replaces workspace Admin or Organization Admin."""
        return bool(self.role_names & PRIVILEGED_ROLES)

    @property
    def key(self) -> str:
        """What identifies the change (the report's unique columns). ``seen_at`` in UTC: DuckDB
        returns it in the process's time zone, and a run in another zone must find the same key."""
        return "|".join((self.change, self.user_id, self.workspace_id or "", self.role_id,
                         self.seen_at.astimezone(UTC).isoformat()))

    def describe(self) -> str:
        """``Admin added in Platform for ada@example.com``, in words, with what to do."""
        role = self.role_name or self.role_id
        where = (f"in {self.workspace_name or self.workspace_id}" if self.workspace_id
                 else "as organization role")
        what = {
            "added": f"{role} added {where}",
            "removed": f"{role} removed {where}",
            "role_changed": f"role changed {where} from {self.previous_role_name or self.previous_role_id} to {role}",
        }.get(self.change, f"{self.change} {role} {where}")
        return (f"{what} for {self.email or self.user_id}, seen by sync {self.sync_id}: no applied "
                "provisioning request explains it (made outside langsmith-access, or by SCIM). "
                "Check it, then request the change or revert it.")


def unexplained_changes(
    conn: duckdb.DuckDBPyConnection, sync_id: str | None = None, *, seen_since: datetime | None = None
) -> list[UnexplainedChange]:
    """The rows of ``report_unexplained_changes`` sync ``sync_id`` saw (any sync's: None), seen
    at ``seen_since`` or later when given ([] when the table does not exist yet), oldest first.
    Names are the latest sync's (deleted workspaces included). A provisioning run's refresh lists
    the changes it found made by hand under the latest sync's id, seen when it found them."""
    if not table_exists(conn, "main", "report_unexplained_changes"):
        return []
    rows = conn.execute(
        f"""
        SELECT c.change, c.user_id, c.email, c.workspace_id, w.display_name, c.role_id, r.display_name,
               c.previous_role_id, p.display_name, c.seen_at, c.sync_id, r.name, p.name
        FROM {REPORT} AS c
        LEFT JOIN staging.stg_langsmith__workspaces AS w ON w.workspace_id = c.workspace_id
        LEFT JOIN main.roles AS r ON r.role_id = c.role_id
        LEFT JOIN main.roles AS p ON p.role_id = c.previous_role_id
        WHERE ($sync_id IS NULL OR c.sync_id = $sync_id) AND ($since IS NULL OR c.seen_at >= $since)
        ORDER BY c.seen_at, c.user_id, c.workspace_id NULLS FIRST, c.role_id
        """,
        {"sync_id": sync_id, "since": seen_since},
    ).fetchall()
    return [
        UnexplainedChange(
            change=row[0], user_id=row[1], email=row[2], workspace_id=row[3], workspace_name=row[4],
            role_id=row[5], role_name=row[6], previous_role_id=row[7], previous_role_name=row[8],
            seen_at=row[9], sync_id=row[10], role_names=frozenset(name for name in row[11:] if name),
        )
        for row in rows
    ]


def notify_unexplained_changes(
    conn: duckdb.DuckDBPyConnection, notifier: Notifier, changes: list[UnexplainedChange]
) -> list[str]:
    """Enqueue ``change.unexplained`` for each of ``changes`` (``unexplained_changes``'s rows),
    once per change (in the caller's transaction, on the database the run publishes). Returns
    the ids of the notifications added now."""
    if not notifier.enabled:
        return []
    added = []
    for change in changes:
        notification_id = notifier.notify(
            conn, EVENT, at=change.seen_at, once_for=change.key,
            user=change.email or change.user_id,
            workspace=(change.workspace_name or change.workspace_id) if change.workspace_id else None,
            role=change.role_name or change.role_id,
            detail=change.describe(),
        )
        if notification_id is not None:
            added.append(notification_id)
    return added
