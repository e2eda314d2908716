"""Questions the command line and the review round trip ask of the analysts' database.

Each takes an open connection to a published copy (``AccessDatabase.read_published()``) and
reads schema ``main`` only. Names a person typed that the database does not know, or that fit
several workspaces, raise ``LookupFailed`` with a message saying what to pass instead.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from langsmith_access.names import INVENTORY_JOB
from langsmith_access.store.sql import email_key, table_exists


class LookupFailed(ValueError):
    """A user or workspace named by an argument is unknown, or the name is ambiguous."""


def as_uuid(text: str) -> str | None:
    """``text`` as LangSmith writes a UUID (lower case, hyphenated) when it is one in any spelling
    (capitals, braces, no hyphens), else None: the one rule for ids a person typed."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def typed_name(text: str) -> str:
    """What a person typed, stripped and in NFC: LangSmith keeps names and emails as they were
    typed, and a decomposed e + U+0301 looks the same as the composed U+00E9 typed. Compare it
    with ``nfc_normalize(column)``."""
    return unicodedata.normalize("NFC", text.strip())


def typed_email(text: str) -> str:
    """An email as emails are matched in Python: what ``store.sql.email_key`` makes of one in SQL
    (stripped, NFC, lower case), so that two spellings the database takes for one person are one here too.
    Lower case one character at a time, as DuckDB's ``lower`` does: ``str.lower`` alone differs from it
    on two, and a check made here (self-approval) would then miss a person the database found: the
    dotted capital I (U+0130, a Turkish keyboard's capital i) is a plain ``i`` there, not ``i`` + U+0307,
    and a capital sigma is a small sigma (U+03C3) wherever it stands, not the final form at the end of a word."""
    return "".join("i" if char == "\u0130" else char.lower() for char in typed_name(text))


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
    # The path (effective_access.source): 'direct' for a listed grant, 'organization_admin' for
    # the implicit Admin of an Organization Admin in a workspace.
    source: str = "direct"
    # Whether the holder's account was disabled at the time asked (user_history); None when not
    # known (before that history began). A disabled member keeps their grants but cannot sign in.
    user_disabled: bool | None = None

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
            "source": self.source,
            "user_disabled": self.user_disabled,
        }


# The workspaces a sync listed, each with the name it had at $at, whether it existed then, and
# when it next stopped being listed after $at (null: it still is), and when it was last listed
# again after a deletion, up to $at (null: never deleted): from workspace_history. A
# rename closes an interval at the instant the next one opens, which is no end. Before its first
# listing, a workspace existed since its creation (created before a sync listed it, or before
# the history began: a database older than it); without a creation time, only one the history's
# first build listed is taken to have existed before. A database published before
# workspace_history existed has the current workspaces only (WORKSPACES_NOW_SQL), until its next
# sync.
WORKSPACES_AT_SQL = """
    WITH ends AS (
        SELECT *, valid_to IS NOT NULL AND valid_to IS DISTINCT FROM
            lead(valid_from) OVER (PARTITION BY workspace_id ORDER BY valid_from) AS ends_listing
        FROM main.workspace_history
    ),
    intervals AS (
        SELECT *, coalesce(lag(ends_listing) OVER (PARTITION BY workspace_id ORDER BY valid_from), false)
            AS starts_after_gap
        FROM ends
    )
    SELECT
        workspace_id,
        coalesce(arg_max(display_name, valid_from) FILTER (WHERE valid_from <= $at),
                 arg_min(display_name, valid_from)) AS display_name,
        min(created_at) AS created_at,
        bool_or(valid_from <= $at AND (valid_to IS NULL OR valid_to > $at))
            OR $at < min(valid_from) AND CASE WHEN min(created_at) IS NULL
                THEN min(valid_from) = (SELECT min(valid_from) FROM intervals)
                ELSE min(created_at) <= $at END AS existed,
        min(valid_to) FILTER (WHERE ends_listing AND valid_to > $at) AS gone_at,
        -- A workspace deleted and listed again since: its access starts again then.
        max(valid_from) FILTER (WHERE starts_after_gap AND valid_from <= $at) AS restored_at
    FROM intervals
    GROUP BY workspace_id
"""

WORKSPACES_NOW_SQL = """
    SELECT workspace_id, display_name, created_at,
        created_at IS NULL OR created_at <= $at AS existed, NULL::TIMESTAMPTZ AS gone_at,
        NULL::TIMESTAMPTZ AS restored_at
    FROM main.workspaces
"""


# Each user's standing at $at: whether their account was disabled then (user_history), as the
# latest interval begun by then says: a member whose last interval ended stands as last seen, not
# "not known", should a grant of theirs reach past it (a build ends both at one instant, but a
# database built before it did dated them a second or two apart). Null only before the user's
# history began; a database built before user_history existed knows nothing of it
# (USER_STANDING_UNKNOWN_SQL).
USER_STANDING_AT_SQL = """
    SELECT user_id, arg_max(is_disabled, valid_from) AS is_disabled
    FROM main.user_history
    WHERE valid_from <= $at
    GROUP BY user_id
"""

USER_STANDING_UNKNOWN_SQL = "SELECT NULL::VARCHAR AS user_id, NULL::BOOLEAN AS is_disabled WHERE false"


def user_standing_at_sql(conn) -> str:
    """``USER_STANDING_AT_SQL``, or ``USER_STANDING_UNKNOWN_SQL`` for a database without it."""
    return USER_STANDING_AT_SQL if table_exists(conn, "main", "user_history") else USER_STANDING_UNKNOWN_SQL


def workspaces_at_sql(conn) -> str:
    """``WORKSPACES_AT_SQL``, or ``WORKSPACES_NOW_SQL`` for a database without the history."""
    return WORKSPACES_AT_SQL if table_exists(conn, "main", "workspace_history") else WORKSPACES_NOW_SQL


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
    history.valid_to,
    'direct' AS source,
    standing.is_disabled AS user_disabled
FROM main.grant_history AS history
LEFT JOIN main.users AS users ON users.user_id = history.user_id
LEFT JOIN ({workspaces}) AS workspaces ON workspaces.workspace_id = history.workspace_id
LEFT JOIN main.roles AS roles ON roles.role_id = history.role_id
LEFT JOIN ({standing}) AS standing ON standing.user_id = history.user_id
WHERE history.valid_from <= $at
    AND (history.valid_to IS NULL OR history.valid_to > $at)
"""


def _access_at_query(
    sql: str, at: datetime, *, user_ids, workspace_id, workspace_column: str, order_by: str
) -> tuple[str, dict]:
    """``sql`` (rows of grant_history, as ``history``, held at ``$at``) narrowed to
    ``user_ids`` and to the workspace ``workspace_id`` (in ``workspace_column``) when given,
    ordered by ``order_by``: the SQL and its parameters."""
    params: dict = {"at": at}
    if user_ids is not None:
        sql += "    AND list_contains($user_ids, history.user_id)\n"
        params["user_ids"] = list(user_ids)
    if workspace_id is not None:
        sql += f"    AND {workspace_column} = $workspace_id\n"
        params["workspace_id"] = workspace_id
    return sql + "ORDER BY " + order_by, params


def history_sources(conn) -> dict[str, str]:
    """The ``workspaces`` and ``standing`` subqueries of ``held_at_query`` and
    ``implicit_admin_query`` this database can answer (its history tables, or stand-ins)."""
    return {"workspaces": workspaces_at_sql(conn), "standing": user_standing_at_sql(conn)}


def held_at_query(
    at: datetime, *, user_ids=None, workspace_id=None, workspaces: str = WORKSPACES_AT_SQL,
    standing: str = USER_STANDING_AT_SQL,
) -> tuple[str, dict]:
    """The SQL and parameters of ``grants_held_at``, for callers that shape the rows further
    (``**history_sources(conn)``); workspaces are named as they were at ``at``."""
    return _access_at_query(
        HELD_AT_SQL.format(workspaces=workspaces, standing=standing), at, user_ids=user_ids, workspace_id=workspace_id,
        workspace_column="history.workspace_id",
        order_by="lower(coalesce(users.email, history.email)), history.user_id, "
        "history.entitlement_type, workspaces.display_name, history.workspace_id",
    )


def grants_held_at(conn, at: datetime, *, user_ids=None, workspace_id=None) -> list[HeldGrant]:
    """The grants held at ``at`` (DESIGN.md: valid_from <= T and (valid_to null or > T))."""
    sql, params = held_at_query(at, user_ids=user_ids, workspace_id=workspace_id, **history_sources(conn))
    return [HeldGrant(*row) for row in conn.execute(sql, params).fetchall()]


# The implicit Admin of an Organization Admin in every shared workspace, at time T: from the
# org-role intervals of grant_history, in the workspaces that existed then (workspace_history:
# a workspace deleted since counts until a sync no longer listed it).
IMPLICIT_ADMIN_AT_SQL = """
SELECT
    history.grant_id || ':' || workspaces.workspace_id AS grant_id,
    'workspace_role' AS entitlement_type,
    history.user_id,
    coalesce(users.email, history.email) AS email,
    workspaces.workspace_id,
    workspaces.display_name AS workspace_name,
    admin_role.role_id,
    admin_role.display_name AS role_name,
    greatest(history.valid_from, workspaces.created_at, workspaces.restored_at) AS valid_from,
    least(history.valid_to, workspaces.gone_at) AS valid_to,
    'organization_admin' AS source,
    standing.is_disabled AS user_disabled
FROM main.grant_history AS history
JOIN main.roles AS org_role ON org_role.role_id = history.role_id AND org_role.name = 'ORGANIZATION_ADMIN'
CROSS JOIN ({workspaces}) AS workspaces
CROSS JOIN (SELECT role_id, display_name FROM main.roles WHERE name = 'WORKSPACE_ADMIN' LIMIT 1) AS admin_role
LEFT JOIN main.users AS users ON users.user_id = history.user_id
LEFT JOIN ({standing}) AS standing ON standing.user_id = history.user_id
WHERE history.entitlement_type = 'organization_role'
    AND history.valid_from <= $at
    AND (history.valid_to IS NULL OR history.valid_to > $at)
    AND workspaces.existed
"""


def implicit_admin_query(
    at: datetime, *, user_ids=None, workspace_id=None, workspaces: str = WORKSPACES_AT_SQL,
    standing: str = USER_STANDING_AT_SQL,
) -> tuple[str, dict]:
    """The SQL and parameters of ``implicit_admin_access_at`` (the parameters of
    ``held_at_query``, so the two can be combined)."""
    return _access_at_query(
        IMPLICIT_ADMIN_AT_SQL.format(workspaces=workspaces, standing=standing), at,
        user_ids=user_ids, workspace_id=workspace_id,
        workspace_column="workspaces.workspace_id",
        order_by="lower(coalesce(users.email, history.email)), history.user_id, "
        "workspaces.display_name, workspaces.workspace_id",
    )


def implicit_admin_access_at(conn, at: datetime, *, user_ids=None, workspace_id=None) -> list[HeldGrant]:
    """The implicit Admin rights Organization Admins held at ``at``, one per shared workspace
    (``source`` 'organization_admin'), whether or not a workspace listing shows them, in the
    workspaces that existed then."""
    sql, params = implicit_admin_query(at, user_ids=user_ids, workspace_id=workspace_id,
                                       **history_sources(conn))
    return [HeldGrant(*row) for row in conn.execute(sql, params).fetchall()]


CREDENTIALS_AT_SQL = """
SELECT credential_id, kind, short_key, description, workspace_names, role_name, org_role_name,
    created_by_email, created_at, last_used_at, expires_at, revoked_at
FROM main.credentials
WHERE (created_at IS NULL OR created_at <= $at)
    AND (revoked_at IS NULL OR revoked_at > $at)
    AND (expires_at IS NULL OR expires_at > $at)
ORDER BY kind, created_at, credential_id
"""


def credentials_usable_at(conn, at: datetime) -> list[dict]:
    """The credentials (as the latest inventory lists them) that were created and neither revoked
    nor expired at ``at``: what could act on the org then. A key deleted from LangSmith's
    listings before the latest inventory is not known."""
    cursor = conn.execute(CREDENTIALS_AT_SQL, {"at": at})
    names = [d[0] for d in cursor.description]
    return [
        {name: iso_utc(value) if isinstance(value, datetime) else value for name, value in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def inventory_listed_at(conn) -> datetime | None:
    """When the latest inventory run that succeeded finished: the credentials, access policies
    and audit log are as of then. None when no inventory has run on this database (its
    credentials table is empty because nothing listed them, not because there are none)."""
    if not table_exists(conn, "main", "sync_runs"):
        return None
    [(finished,)] = conn.execute(
        "SELECT max(finished_at) FROM main.sync_runs WHERE status = 'succeeded' AND job = ?", [INVENTORY_JOB]
    ).fetchall()
    return finished


def settings_at(conn, at: datetime) -> list[dict]:
    """The org's settings at ``at`` (org_settings_history): ``{"setting", "value", "valid_from",
    "valid_to"}`` each."""
    rows = conn.execute(
        "SELECT setting, value, valid_from, valid_to FROM main.org_settings_history "
        "WHERE valid_from <= $at AND (valid_to IS NULL OR valid_to > $at) ORDER BY setting",
        {"at": at},
    ).fetchall()
    return [
        {"setting": setting, "value": value, "valid_from": iso_utc(start), "valid_to": iso_utc(end)}
        for setting, value, start, end in rows
    ]


def first_recorded_at(conn) -> datetime | None:
    """When the history starts: the earliest ``valid_from`` (None before the first sync)."""
    [(first,)] = conn.execute("SELECT min(valid_from) FROM main.grant_history").fetchall()
    return first


def user_history_began_at(conn) -> datetime | None:
    """When ``user_history`` starts (the first sync of a version that keeps it); None in a
    database built before it."""
    if not table_exists(conn, "main", "user_history"):
        return None
    [(first,)] = conn.execute("SELECT min(valid_from) FROM main.user_history").fetchall()
    return first


def users_without_email(conn) -> int:
    """How many active members the analysts' tables know no email of (an anonymity-restricted
    members answer withholds them; a previous sync's are kept where there was one)."""
    [(unknown,)] = conn.execute("SELECT count(*) FROM main.users WHERE email IS NULL").fetchall()
    return unknown


def last_synced_at(conn) -> datetime | None:
    """When the latest successful sync (of either job) finished (None before the first)."""
    [(last,)] = conn.execute(
        "SELECT max(finished_at) FROM main.sync_runs WHERE status = 'succeeded'").fetchall()
    return last


def resolve_user(conn, text: str) -> list[str]:
    """User ids for an email (case-insensitive, in any Unicode form) or a user id (a UUID in any
    case), current members and past ones."""
    wanted = typed_name(text)
    known = """
        SELECT user_id, email FROM main.users
        UNION ALL
        SELECT user_id, email FROM main.grant_history
    """
    by_id = conn.execute(f"SELECT DISTINCT user_id FROM ({known}) WHERE user_id = ?",
                         [as_uuid(wanted) or wanted]).fetchall()
    if by_id:
        return [by_id[0][0]]
    by_email = conn.execute(
        f"SELECT DISTINCT user_id FROM ({known}) WHERE {email_key('email')} = {email_key('?')} ORDER BY 1",
        [wanted],
    ).fetchall()
    if not by_email:
        raise LookupFailed(f"no user with the email or user id {text!r} in the analysts' database.")
    return [user_id for (user_id,) in by_email]


def resolve_workspace(conn, text: str, *, past_names: bool = False, at: datetime | None = None) -> str:
    """A workspace id from an id (a UUID in any case) or a display name (exact, then
    case-insensitive; in any Unicode form) of a current workspace; with ``past_names``, else a
    name a workspace had in ``workspace_history`` (deleted or renamed since: for questions about
    the past). With ``at`` as well, the name a workspace bore at that time comes first: once
    "Prod" was renamed and a new workspace took the name, "who had access to Prod" at a time
    before means the workspace called Prod then."""
    wanted = typed_name(text)
    history = past_names and table_exists(conn, "main", "workspace_history")
    by_id = conn.execute(
        "SELECT workspace_id FROM main.workspaces WHERE workspace_id = $w "
        "UNION SELECT workspace_id FROM main.grant_history WHERE workspace_id = $w"
        + (" UNION SELECT workspace_id FROM main.workspace_history WHERE workspace_id = $w" if history else ""),
        {"w": as_uuid(wanted) or wanted},
    ).fetchall()
    if by_id:
        return by_id[0][0]
    # Where names are looked for, in order.
    named_in = ["main.workspaces"]
    if history:
        named_in.append("main.workspace_history")
        if at is not None:
            # The workspaces that existed at `at`, each under the name it bore then.
            named_in.insert(0, f"(SELECT *, NULL AS tenant_handle FROM ({WORKSPACES_AT_SQL}) WHERE existed)")
    for table in named_in:
        for condition in ("nfc_normalize(display_name) = $name", "lower(nfc_normalize(display_name)) = lower($name)"):
            named = conn.execute(
                "SELECT workspace_id, min(display_name), min(tenant_handle) "
                f"FROM {table} WHERE {condition} GROUP BY workspace_id "
                "ORDER BY min(created_at), workspace_id",
                {"name": wanted} | ({"at": at} if "$at" in table else {}),
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
