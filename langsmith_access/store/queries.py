"""Questions the command line and the review round trip ask of the analysts' database.

Each takes an open connection to a published copy (``AccessDatabase.read_published()``) and
reads schema ``main`` only. Names a person typed that the database does not know, or that fit
several workspaces, raise ``LookupFailed`` with a message saying what to pass instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


class LookupFailed(ValueError):
    """A user or workspace named by an argument is unknown, or the name is ambiguous."""


def iso_utc(value: datetime | None) -> str | None:
    """``2026-11-01T12:00:00Z``: an aware time in UTC, ISO 8601 with a Z."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class HeldGrant:
    """One grant as ``grant_history`` recorded it, with the user's and workspace's names."""

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
            "valid_from": iso_utc(self.valid_from),
            "valid_to": iso_utc(self.valid_to),
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


def held_at_query(at: datetime, *, user_ids=None, workspace_id=None) -> tuple[str, dict]:
    """The SQL and parameters of ``grants_held_at``, for callers that shape the rows further."""
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
    return sql, params


def grants_held_at(conn, at: datetime, *, user_ids=None, workspace_id=None) -> list[HeldGrant]:
    """The grants held at ``at`` (DESIGN.md: valid_from <= T and (valid_to null or > T))."""
    sql, params = held_at_query(at, user_ids=user_ids, workspace_id=workspace_id)
    return [HeldGrant(*row) for row in conn.execute(sql, params).fetchall()]


def first_recorded_at(conn) -> datetime | None:
    """When the history starts: the earliest ``valid_from`` (None before the first sync)."""
    [(first,)] = conn.execute("SELECT min(valid_from) FROM main.grant_history").fetchall()
    return first


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
        raise LookupFailed(f"no user with the email or user id {text!r} in the analysts' database.")
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
            raise LookupFailed(
                f"{len(named)} workspaces are named {text!r}; pass one of their ids with "
                f"--workspace:\n{listing}"
            )
    raise LookupFailed(f"no workspace with the name or id {text!r} in the analysts' database.")
