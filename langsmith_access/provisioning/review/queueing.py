"""Queueing the marked rows: one revoke per row through the normal provisioning queue."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.executor import ADMIN_ACCESS_REMAINS, ORGANIZATION_ADMIN
from langsmith_access.provisioning.review.format import READ_ONLY_REASON, ReviewError, require_columns, require_tables
from langsmith_access.provisioning.review.sheet import (
    ROLE_COLUMNS,
    USER_COLUMNS,
    WORKSPACE_COLUMNS,
    MarkedRow,
    ReviewSheet,
)
from langsmith_access.settings import mask_keys, shown
from langsmith_access.store.database import AccessDatabase, DatabaseNotReadyError
from langsmith_access.store.queries import as_uuid, typed_name
from langsmith_access.store.sql import scalar, table_exists
from langsmith_access.store.sync_runs import organization_of, same_organization

SCIM_NOTE = (
    "SCIM manages this grant: the identity provider may give it back at its next push unless the "
    "member also leaves the SCIM group that names this workspace and role"
)
# The member is an Organization Admin: the revoke takes the workspace role away, not their
# access (as the provisioning run says again when it settles the revoke).
ADMIN_NOTE = ADMIN_ACCESS_REMAINS


@dataclass(frozen=True)
class RowOutcome:
    row: MarkedRow
    status: str  # queued | duplicate | rejected | would_queue (dry run)
    message: str
    request_id: str | None = None
    duplicate_of: str | None = None
    # SCIM manages the grant queued for revoke: the identity provider may give it back.
    scim_managed: bool = False
    # The member is an Organization Admin: Admin access to the workspace remains (ADMIN_NOTE).
    admin_access_remains: bool = False

    def to_json(self) -> dict:
        return {
            "where": self.row.where,
            # The row's cells, a key typed into one shown as the queue records it (lsv2_***).
            **{name: mask_keys(cell) if cell is not None else None for name, cell in (
                ("grant_id", self.row.grant_id), ("user", self.row.user), ("workspace", self.row.workspace),
                ("role", self.row.role))},
            "status": self.status,
            "request_id": self.request_id,
            "duplicate_of": self.duplicate_of,
            "message": self.message,
            "scim_managed": self.scim_managed,
            "admin_access_remains": self.admin_access_remains,
        }


@dataclass
class ReviewResult:
    source: str
    rows: int
    dry_run: bool
    outcomes: list[RowOutcome] = field(default_factory=list)

    def with_status(self, *statuses: str) -> list[RowOutcome]:
        return [o for o in self.outcomes if o.status in statuses]

    @property
    def all_accepted(self) -> bool:
        return not self.with_status("rejected")

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "marked": len(self.outcomes),
            "queued": len(self.with_status("queued", "would_queue")),
            "duplicates": len(self.with_status("duplicate")),
            "rejected": len(self.with_status("rejected")),
            "outcomes": [o.to_json() for o in self.outcomes],
        }


def queue_revokes(
    database: AccessDatabase,
    sheet: ReviewSheet,
    *,
    reviewer: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    lease_timeout_seconds: float = 600.0,
    notifier: Notifier | None = None,
) -> ReviewResult:
    """Queue one revoke per marked row, with the row's reviewer and reason or these.
    ``notifier``: the org's (``Notifier.of_org``); its secrets (the webhook URL, the key) pasted
    into a cell or given as an option are cut before anything is checked, recorded or shown.

    All rows go in under one writer lease and one publish. With ``dry_run`` the rows are only
    checked against the latest sync (the analysts' copy, read-only) and nothing is recorded.
    """
    # Blank is not given ("--reason $REASON" with the variable blank), as for a row's own cells.
    reviewer = (reviewer or "").strip() or getpass.getuser()
    reason = (reason or "").strip() or f"access review ({sheet.file.name})"
    if notifier is not None:  # as queue.submit_on cuts them from a request's fields
        reviewer, reason = notifier.hidden(reviewer), notifier.hidden(reason)
        sheet = replace(sheet, marked=[row.with_text_cut(notifier.hidden) for row in sheet.marked])
    # Checked once, as the queue checks each row's: a typo in one of these would otherwise be
    # every marked row's rejection, each recorded in the queue.
    try:
        queue.check_text(reviewer, "the reviewer for rows without one (--reviewer)")
        queue.check_text(reason, "the reason for rows without one (--reason)", limit=queue.MAX_TEXT_CHARS)
    except queue.RequestRejected as error:
        raise ReviewError(f"{error} Nothing was queued.") from None
    result = ReviewResult(sheet.source, sheet.rows, dry_run)
    if not database.path.exists():
        raise DatabaseNotReadyError(f"{database.path} does not exist yet: run `langsmith-access sync` first.")
    if not sheet.marked:
        return result
    if dry_run:
        with database.read_published() as conn:
            _require_grant_tables(conn)
            _require_this_organization(conn, sheet, database)
            seen: dict[tuple, str] = {}
            facts = _GrantFacts.of(conn, sheet.marked)
            # A read-only copy: nothing changes under the batch.
            batch = queue.SubmitBatch(conn, users=facts.users_named(sheet.marked))
            facts.read_memberships(conn, sheet.marked, batch)
            for row in sheet.marked:
                result.outcomes.append(_check_row(conn, facts.as_recorded(row), reviewer, reason, seen, facts, batch))
        return result
    with database.writer_lease("queue the revokes of an access review", timeout_seconds=lease_timeout_seconds):
        database.ensure_working()
        with database.connect() as conn:
            _require_grant_tables(conn)
            _require_this_organization(conn, sheet, database)
            facts = _GrantFacts.of(conn, sheet.marked)
            # One batch for every row: the lease and this connection are held until the last
            # row is queued, so the queue changes only through these rows (queue.SubmitBatch).
            batch = queue.SubmitBatch(conn, users=facts.users_named(sheet.marked))
            facts.read_memberships(conn, sheet.marked, batch)
            database.publish_pending()  # the checks above passed: the rows are queued from here on
            for row in sheet.marked:
                result.outcomes.append(_queue_row(conn, facts.as_recorded(row), reviewer, reason, facts, batch))
        queued = len(result.with_status("queued"))
        database.publish_committed(f"the review's {queued} revoke(s) were queued (and its rejected rows recorded)",
                                   result)
    return result


def _require_grant_tables(conn) -> None:
    """Refuse, saying to sync, a database whose latest sync did not build what the rows are
    checked against: a release before is_scim_managed (36525be) built grants without it, and its
    query failed with DuckDB's Binder Error until this version's first sync rebuilt the table."""
    require_tables(conn, "grants", "users", "workspaces", "grant_history")
    require_columns(conn, "grants", ("is_scim_managed",))


@dataclass(frozen=True)
class _GrantFacts:
    """What the latest sync says of the grants a sheet's rows name, read for the whole sheet in
    a few queries: one query per row each scanned grants or grant_history (~25 ms each at 20,000
    members, most of a row's cost). Neither table changes while a sheet is queued (the lease is
    held, or a dry run reads the published copy), nor do the applied revokes (queueing adds
    pending and rejected requests only)."""

    recorded: dict[str, str]  # lower(grant_id) -> the grant_id as the tables spell it
    current: dict[str, tuple]  # grant_id -> its row in main.grants (_GRANT_SQL's columns)
    organization_roles: set[str]  # grant_ids grant_history has as organization roles
    current_since: dict[str, datetime]  # grant_id -> when its current interval started
    applied_revokes: dict[str, tuple[str, datetime]]  # grant_id -> (request_id, applied at)
    # The org's Organization Admins, and the workspace grants (user, workspace, role) SCIM manages:
    # what each queued revoke is noted with.
    organization_admins: set[str]
    scim_managed: set[tuple[str, str, str]]
    # For rows named by user, workspace and role: whether the queue is there (its applied revokes
    # are), and each role's name (role_id -> roles.name) beside its display name.
    has_queue: bool
    role_keys: dict[str, str]
    # And what they hold and had revoked, read once the batch resolves them (_Memberships).
    memberships: _Memberships = field(default_factory=lambda: _Memberships({}, {}))

    @classmethod
    def of(cls, conn, rows: list[MarkedRow]) -> _GrantFacts:
        typed = sorted({row.grant_id.lower() for row in rows if row.grant_id})
        recorded = dict(conn.execute(
            "SELECT lower(grant_id), min(grant_id) FROM main.grant_history "
            "WHERE lower(grant_id) IN (SELECT unnest($ids)) GROUP BY ALL", {"ids": typed}).fetchall())
        # Each row's grant_id as as_recorded gives it (the typed spelling when none is recorded).
        ids = sorted({recorded.get(row.grant_id.lower(), row.grant_id) for row in rows if row.grant_id})
        has_queue = table_exists(conn, "main", "provisioning_requests")
        return cls(
            recorded,
            {grant[0]: grant[1:] for grant in conn.execute(_GRANT_SQL, {"ids": ids}).fetchall()},
            {grant_id for (grant_id,) in conn.execute(
                "SELECT DISTINCT grant_id FROM main.grant_history WHERE grant_id IN (SELECT unnest($ids)) "
                "AND entitlement_type = 'organization_role'", {"ids": ids}).fetchall()},
            dict(conn.execute(
                "SELECT grant_id, min(valid_from) FROM main.grant_history WHERE grant_id IN (SELECT unnest($ids)) "
                "AND valid_to IS NULL GROUP BY ALL", {"ids": ids}).fetchall()),
            {grant_id: (request_id, applied_at) for grant_id, request_id, applied_at in conn.execute(
                _APPLIED_REVOKES_SQL.format(key=_BY_GRANT_ID, which="grant_id IN (SELECT unnest($ids))"),
                {"ids": ids}).fetchall()}
            if has_queue else {},
            {user_id for (user_id,) in conn.execute(
                "SELECT users.user_id FROM main.users JOIN main.roles ON roles.role_id = users.org_role_id "
                "WHERE roles.name = ?", [ORGANIZATION_ADMIN]).fetchall()},
            set(conn.execute(
                "SELECT DISTINCT user_id, workspace_id, role_id FROM main.grants "
                "WHERE entitlement_type = 'workspace_role' AND is_scim_managed").fetchall()),
            has_queue,
            dict(conn.execute("SELECT role_id, name FROM main.roles").fetchall()),
        )

    def as_recorded(self, row: MarkedRow) -> MarkedRow:
        """``row`` with its grant_id spelt as the tables spell it: a sheet whose ids were retyped
        in capitals names the same grants (the ids are UUIDs). Unchanged when no grant ever had it."""
        if not row.grant_id or row.grant_id.lower() not in self.recorded:
            return row
        return replace(row, grant_id=self.recorded[row.grant_id.lower()])

    def read_memberships(self, conn, rows: list[MarkedRow], batch: queue.SubmitBatch) -> None:
        """Read what the rows named by user, workspace and role hold and had revoked, for all of
        them at once (once the batch knows their users: it resolves each here)."""
        named = set()
        for row in rows:
            if row.grant_id:
                continue
            try:
                resolved = queue.resolve_change(conn, _by_names(row), batch=batch)
            except queue.RequestRejected:
                continue
            named.add((resolved.user_id, resolved.workspace_id, resolved.role_id))
        self.memberships.read(conn, named, has_queue=self.has_queue)

    def users_named(self, rows: list[MarkedRow]) -> list[str]:
        """The users the rows' requests name: the holder of the grant a grant_id names, else the
        row's user cell."""
        users = []
        for row in rows:
            grant = self.current.get(self.as_recorded(row).grant_id or "")
            user = grant[1] if grant is not None else row.user
            if user:
                users.append(user)
        return users

    def organization_admin(self, resolved: queue.ResolvedChange) -> bool:
        """Whether the member of a revoke is an Organization Admin (in the latest sync)."""
        return resolved.user_id in self.organization_admins

    def scim_manages(self, resolved: queue.ResolvedChange) -> bool:
        """Whether SCIM manages the workspace grant a revoke takes away (grants.is_scim_managed)."""
        return (resolved.user_id, resolved.workspace_id, resolved.role_id) in self.scim_managed


# A grant by id, with its holder's, workspace's and role's names.
_GRANT_SQL = (
    "SELECT g.grant_id, g.entitlement_type, g.user_id, g.workspace_id, g.role_id, g.role_name, "
    "coalesce(g.email, g.user_id), g.email, w.display_name, r.name FROM main.grants AS g "
    "LEFT JOIN main.workspaces AS w ON w.workspace_id = g.workspace_id "
    "LEFT JOIN main.roles AS r ON r.role_id = g.role_id WHERE g.grant_id IN (SELECT unnest($ids))"
)

# The latest applied revoke of each grant ``which`` picks, applied since it was last given and
# not given again since: (``key``, request_id, applied at), ``key`` the grant's grant_id, or its
# user_id, workspace_id, role_id.
_APPLIED_REVOKES_SQL = """
SELECT {key}, arg_max(request.request_id, request.updated_at), max(request.updated_at)
FROM main.provisioning_requests AS request
JOIN (SELECT grant_id, user_id, workspace_id, role_id, max(valid_from) AS given
      FROM main.grant_history
      WHERE {which} AND entitlement_type = 'workspace_role'
      GROUP BY ALL) AS grant_given
    ON request.user_id = grant_given.user_id AND request.workspace_id = grant_given.workspace_id
    AND request.role_id = grant_given.role_id
WHERE request.action = 'revoke' AND request.status = 'applied' AND request.updated_at >= grant_given.given
    AND NOT EXISTS (SELECT 1 FROM main.grants WHERE grants.entitlement_type = 'workspace_role'
                    AND grants.user_id = grant_given.user_id
                    AND grants.workspace_id = grant_given.workspace_id
                    AND grants.role_id = grant_given.role_id)
GROUP BY {key}
"""
_BY_GRANT_ID = "grant_given.grant_id"
_BY_NAMES = "grant_given.user_id, grant_given.workspace_id, grant_given.role_id"


@dataclass(frozen=True)
class _Memberships:
    """For rows named by user, workspace and role: the workspace roles each member holds there
    ((user_id, workspace_id) -> [(role_id, name)]) and the latest applied revoke of each
    (user_id, workspace_id, role_id), read for the sheet's rows in two queries rather than one
    each per row. One not read with the sheet is read when asked, by the same queries."""

    held: dict[tuple[str, str], list[tuple[str, str]]]
    applied: dict[tuple[str, str, str], tuple[str, datetime] | None]

    def read(self, conn, keys: set[tuple[str, str, str]], *, has_queue: bool) -> None:
        self._read_held(conn, {(user_id, workspace_id) for user_id, workspace_id, _ in keys})
        self._read_applied(conn, keys, has_queue)

    def held_roles(self, conn, user_id: str, workspace_id: str) -> list[tuple[str, str]]:
        self._read_held(conn, {(user_id, workspace_id)})
        return self.held[(user_id, workspace_id)]

    def applied_revoke(self, conn, key: tuple[str, str, str], *, has_queue: bool) -> tuple[str, datetime] | None:
        self._read_applied(conn, {key}, has_queue)
        return self.applied[key]

    def _read_held(self, conn, memberships: set[tuple[str, str]]) -> None:
        unread = sorted(memberships - self.held.keys())
        if not unread:
            return
        users, workspaces = (list(column) for column in zip(*unread, strict=True))
        self.held.update({membership: [] for membership in unread})
        for user_id, workspace_id, role_id, name in conn.execute(
            "SELECT user_id, workspace_id, role_id, coalesce(role_name, role_id) FROM main.grants "
            "SEMI JOIN (SELECT unnest($users) AS user_id, unnest($workspaces) AS workspace_id) "
            "USING (user_id, workspace_id) WHERE entitlement_type = 'workspace_role' ORDER BY ALL",
            {"users": users, "workspaces": workspaces},
        ).fetchall():
            self.held[(user_id, workspace_id)].append((role_id, name))

    def _read_applied(self, conn, keys: set[tuple[str, str, str]], has_queue: bool) -> None:
        unread = sorted(keys - self.applied.keys())
        if not unread:
            return
        self.applied.update({key: None for key in unread})
        if not has_queue:
            return
        users, workspaces, roles = (list(column) for column in zip(*unread, strict=True))
        which = "(user_id, workspace_id, role_id) IN (SELECT (unnest($users), unnest($workspaces), unnest($roles)))"
        for user_id, workspace_id, role_id, request_id, applied_at in conn.execute(
            _APPLIED_REVOKES_SQL.format(key=_BY_NAMES, which=which),
            {"users": users, "workspaces": workspaces, "roles": roles},
        ).fetchall():
            self.applied[(user_id, workspace_id, role_id)] = (request_id, applied_at)


def _by_names(row: MarkedRow, reason: str | None = None, requested_by: str | None = None) -> queue.ChangeRequest:
    """The revoke a row without grant_id asks for (the sheet keeps such a row only with all
    three named; empty would be rejected as such)."""
    return queue.ChangeRequest("revoke", row.user or "", row.workspace or "", row.role or "", reason, requested_by)


def _require_this_organization(conn, sheet: ReviewSheet, database: AccessDatabase) -> None:
    """Refuse the whole sheet when its rows say they were exported from another organization
    than the one this database holds (another org's sheet queued with the wrong --org): its
    rows would be rejected one by one, or, named by email, workspace and role, match here."""
    held = organization_of(conn) or database.organization_id
    if held is None:
        return
    others = sorted({row.organization_id for row in sheet.marked
                     if row.organization_id and not same_organization(row.organization_id, held)})
    edited = [row for row in sheet.marked if row.organization_id and row.organization_id in others
              and as_uuid(row.organization_id) is None]
    if edited:
        # No organization's id at all: an edited or shifted cell, not a sheet of another org ("was
        # exported from organization garbage" sent the reviewer looking for an org that is not there).
        raise SheetOfAnotherOrganization(
            f"{sheet.source}: the organization_id column of {', '.join(row.where for row in edited[:5])}"
            f"{' and more' if len(edited) > 5 else ''} holds {shown(mask_keys(edited[0].organization_id or ''))}, "
            f"which is no organization's id (the export writes the org's UUID there): nothing was queued. "
            f"Put back the exported value ({held}, for this database's org), or clear the cell.",
            others,
        )
    if others:
        raise SheetOfAnotherOrganization(
            f"{sheet.source} was exported from organization {', '.join(others)} (its organization_id "
            f"column), but {database.path} holds organization {held}: nothing was queued. Queue it "
            f"for the org it came from {SheetOfAnotherOrganization.WHERE}.",
            others,
        )


class SheetOfAnotherOrganization(ReviewError):
    """A sheet whose rows say they come from ``organizations``, not the database's own org."""

    WHERE = "(`--org SLUG` with an orgs file)"

    def __init__(self, message: str, organizations: list[str]):
        super().__init__(message)
        self.organizations = organizations


def _change_for(conn, row: MarkedRow, reviewer: str, reason: str, facts: _GrantFacts,
                batch: queue.SubmitBatch) -> tuple[queue.ChangeRequest, str | None]:
    """The revoke a row asks for, and a rejection message when it cannot be asked at all."""
    change, rejection = _change_asked(conn, row, reviewer, reason, facts, batch)
    if rejection is None and row.reviewer:
        # The queue refuses it as "requested_by", a column the sheet does not have: name the cell.
        try:
            queue.check_text(row.reviewer, "the row's reviewer", required=False)
        except queue.RequestRejected as refused:
            return change, str(refused)
    return change, rejection


def _change_asked(conn, row: MarkedRow, reviewer: str, reason: str, facts: _GrantFacts,
                  batch: queue.SubmitBatch) -> tuple[queue.ChangeRequest, str | None]:
    requested_by = row.reviewer or reviewer
    why = row.reason or reason
    if not row.grant_id:
        change = _by_names(row, why, requested_by)
        return change, _disagreeing_cells(conn, row, change, facts, batch) or _not_held(conn, change, facts, batch)
    grant = facts.current.get(row.grant_id)
    if grant is None:
        change = queue.ChangeRequest(
            "revoke", row.user or row.grant_id, row.workspace or "", row.role or "", why, requested_by
        )
        # A grant that no longer holds is still in grant_history (ids are never parsed here).
        if row.grant_id in facts.organization_roles:
            return change, f"grant {row.grant_id} is an organization role. {READ_ONLY_REASON}"
        return change, (
            f"unknown grant id {row.grant_id!r}: it is not a current grant in the latest sync "
            "(revoked or changed since the sheet was exported, or mistyped). Export a new sheet "
            "with `langsmith-access review export`."
        )
    entitlement_type, user_id, workspace_id, role_id, role_name, who, email, workspace_name, role_key = grant
    if entitlement_type != "workspace_role":
        change = queue.ChangeRequest("revoke", user_id, row.workspace or "", role_id, why, requested_by)
        return change, (
            f"grant {row.grant_id} is the organization role {role_name!r} of {who}. {READ_ONLY_REASON}"
        )
    change = queue.ChangeRequest("revoke", user_id, workspace_id, role_id, why, requested_by)
    # The row's other cells must still describe this grant: an edited row (another role typed
    # over the exported one) is not read as the grant its grant_id names. A workspace renamed or
    # an email changed since the export reads as an edit (a new export fixes it).
    edited = _not_describing(
        row.named, _describes(user_id, email, workspace_id, workspace_name, role_id, role_name, role_key)
    )
    if not edited:
        return change, _granted_again_since(row, f"{role_name} in {workspace_name or workspace_id} for {who}",
                                            facts.current_since.get(row.grant_id))
    if all(_former_name(conn, column, given, user_id, workspace_id, row.grant_id)
           for column, given in _cells(row, edited)):
        # The row is as exported: the names changed since. Still not queued (the reviewer saw
        # names that are no longer the grant's), but not called an edit with an impossible fix.
        return change, (
            f"grant {row.grant_id} is {role_name} in {workspace_name or workspace_id} for {who} now, "
            f"but the row names it as it was named when the sheet was exported ({', '.join(edited)}: "
            "renamed since), so it is not queued. Export a new sheet with `langsmith-access review "
            "export` and mark it again."
        )
    return change, (
        f"grant {row.grant_id} is {role_name} in {workspace_name or workspace_id} for {who}, but "
        f"the row says {', '.join(edited)}: the grant_id decides what is revoked, so an edited row "
        "is not queued. Put the row back as exported, or clear its grant_id to revoke by user, "
        "workspace and role."
    )


def _cells(row: MarkedRow, shown: list[str]) -> list[tuple[str, str]]:
    """The row's (column, value) cells that ``_not_describing`` listed as ``shown``."""
    return [(column, given) for column, given in row.named if f"{column} {given!r}" in shown]


def _former_name(conn, column: str, given: str, user_id: str, workspace_id: str, grant_id: str) -> bool:
    """Whether ``given`` is a name the grant's workspace, holder or role had before (the history
    tables keep them): a cell that matched when the sheet was exported."""
    sources = {
        "workspace_name": ("workspace_history", "display_name", "workspace_id", workspace_id),
        "workspace": ("workspace_history", "display_name", "workspace_id", workspace_id),
        "email": ("user_history", "email", "user_id", user_id),
        "user": ("user_history", "email", "user_id", user_id),
        "role_name": ("grant_history", "role_name", "grant_id", grant_id),
        "role": ("grant_history", "role_name", "grant_id", grant_id),
    }
    if column not in sources or not table_exists(conn, "main", sources[column][0]):
        return False
    table, name, key, value = sources[column]
    return bool(scalar(
        conn, f"SELECT count(*) FROM main.{table} WHERE {key} = ? AND lower(nfc_normalize({name})) = ?",
        [value, typed_name(given).lower()],
    ))


def _describes(user_id, email, workspace_id, workspace_name, role_id, role_name, role_key) -> dict[str, set]:
    """What each user, workspace and role column of a sheet may hold for this grant."""
    return {
        "user_id": {user_id}, "email": {email}, "user": {user_id, email},
        "workspace_id": {workspace_id}, "workspace_name": {workspace_name},
        "workspace": {workspace_id, workspace_name},
        "role_id": {role_id}, "role_name": {role_name, role_key}, "role": {role_id, role_name, role_key},
    }


def _not_describing(named: tuple[tuple[str, str], ...], describes: dict[str, set]) -> list[str]:
    """The cells (``column 'value'``) that do not describe the grant ``describes`` gives. Compared
    as the queue matches names (NFC, any case): a cell composed where LangSmith sent the name
    decomposed is no edit."""
    return [
        f"{column} {given!r}" for column, given in named
        if typed_name(given).lower() not in {typed_name(value).lower() for value in describes[column] if value}
    ]


def _disagreeing_cells(conn, row: MarkedRow, change: queue.ChangeRequest, facts: _GrantFacts,
                       batch: queue.SubmitBatch) -> str | None:
    """A rejection for a row named by user, workspace and role whose cells name different ones
    (the role_id of one role beside the role_name of another, as an exported row whose grant_id
    was cleared after its role was typed over): which one the reviewer meant is not guessed, and
    the first cell alone would revoke a role the row's other cell says is not the one. None when
    every cell describes what the row resolves to (or the queue's own checks will reject it)."""
    try:
        resolved = queue.resolve_change(conn, change, batch=batch)
    except queue.RequestRejected:
        return None
    role_key = facts.role_keys[resolved.role_id]
    describes = _describes(resolved.user_id, resolved.user_email, resolved.workspace_id, resolved.workspace_name,
                           resolved.role_id, resolved.role_name, role_key)
    # The cell each group was resolved by names what it resolved to (an org identity id too).
    resolving = {(column, given) for column, given in row.named
                 for columns, used in ((USER_COLUMNS, row.user), (WORKSPACE_COLUMNS, row.workspace),
                                       (ROLE_COLUMNS, row.role))
                 if column in columns and given == used}
    disagreeing = _not_describing(tuple(cell for cell in row.named if cell not in resolving), describes)
    if not disagreeing:
        return None
    return (
        f"the row names {resolved.role_name} in {resolved.workspace_name} for "
        f"{resolved.user_email or resolved.user_id}, but also says {', '.join(disagreeing)}: its cells "
        "disagree, so it is not queued. Make them name one grant (or mark the row of a sheet exported "
        "with `langsmith-access review export`)."
    )


def _not_held(conn, change: queue.ChangeRequest, facts: _GrantFacts, batch: queue.SubmitBatch) -> str | None:
    """A rejection for a row named by user, workspace and role whose role the latest sync does
    not show the member holding there: queued, it would end "already satisfied" and remove
    nothing, while the member keeps the role they do hold. None when held (or when the queue's
    own checks will reject the row, saying why)."""
    try:
        resolved = queue.resolve_change(conn, change, batch=batch)
    except queue.RequestRejected:
        return None
    held = facts.memberships.held_roles(conn, resolved.user_id, resolved.workspace_id)
    if any(role_id == resolved.role_id for role_id, _ in held):
        return None
    holding = f"holding {' and '.join(repr(name) for _, name in held)}" if held else "holding no role"
    return (
        f"the latest sync shows {resolved.user_email or resolved.user_id} {holding} in "
        f"{resolved.workspace_name}, not {resolved.role_name!r}: revoking it would remove nothing. "
        "Name the role held, or mark the row of a sheet exported with `langsmith-access review export`."
    )


def _granted_again_since(row: MarkedRow, grant: str, current_since: datetime | None) -> str | None:
    """A rejection when the grant the row names was revoked and granted again after the sheet was
    exported (its current interval, ``current_since``, starts after the row's held_since): the
    reviewer judged the earlier grant. None when it is the same grant, or the cell says nothing
    readable (a spreadsheet may rewrite dates: then the grant_id alone decides, as before held_since)."""
    exported = _parse_time(row.held_since)
    if exported is None:
        return None
    # The cell says the exported grant started within [exported, exported + precision): a start
    # at its end (a day cut to "2026-11-01", the grant given again at midnight) is a later grant.
    if current_since is None or current_since < exported + _written_precision(row.held_since or ""):
        return None
    since = current_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"grant {row.grant_id} ({grant}) was granted again at {since}, after this sheet was exported "
        f"(the row says held since {row.held_since}): the review was of the earlier grant, so this one "
        "is not revoked. Export a new sheet with `langsmith-access review export`."
    )


def _written_precision(text: str) -> timedelta:
    """How much of a time the cell kept: the export writes seconds, a spreadsheet may show (and
    save) it to the minute or as a date, which cuts the time, never moves it later."""
    if re.search(r"\d:\d\d:\d\d", text):
        return timedelta(seconds=1)
    if re.search(r"\d:\d\d", text):
        return timedelta(minutes=1)
    return timedelta(days=1)


def _parse_time(text: str | None) -> datetime | None:
    """An exported held_since (``2026-11-01T12:00:00Z``, or DuckDB's own form); None if unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _already_revoked(conn, row: MarkedRow, facts: _GrantFacts, batch: queue.SubmitBatch) -> RowOutcome | None:
    """The row's grant is gone because a revoke was applied since the grant was last given (this
    sheet imported again after provisioning): done, not a mistyped or stale row. A row named by
    user, workspace and role is that grant too (once its cells agree on which it is)."""
    if row.grant_id:
        done = facts.applied_revokes.get(row.grant_id)
    else:
        done = _applied_revoke_by_names(conn, row, facts, batch)
    if done is None:
        return None
    request_id, applied_at = done
    return RowOutcome(
        row, "duplicate",
        f"already revoked: request {request_id} was applied at {queue.iso_minutes(applied_at)}",
        duplicate_of=request_id,
    )


def _applied_revoke_by_names(conn, row: MarkedRow, facts: _GrantFacts,
                             batch: queue.SubmitBatch) -> tuple[str, datetime] | None:
    """``_GrantFacts.applied_revokes`` for a row named by user, workspace and role."""
    if not facts.has_queue:
        return None
    change = _by_names(row)
    try:
        resolved = queue.resolve_change(conn, change, batch=batch)
    except queue.RequestRejected:
        return None
    if _disagreeing_cells(conn, row, change, facts, batch) is not None:
        return None
    return facts.memberships.applied_revoke(conn, (resolved.user_id, resolved.workspace_id, resolved.role_id),
                                            has_queue=facts.has_queue)


def _queue_row(conn, row: MarkedRow, reviewer: str, reason: str, facts: _GrantFacts,
               batch: queue.SubmitBatch) -> RowOutcome:
    done = _already_revoked(conn, row, facts, batch)
    if done is not None:
        return done
    change, rejection = _change_for(conn, row, reviewer, reason, facts, batch)
    if rejection is not None:
        result = queue.record_rejection(conn, change, rejection, batch=batch)
    else:
        result = queue.submit_on(conn, change, batch=batch)
    if not result.accepted:
        return RowOutcome(row, "rejected", result.message, request_id=result.request_id)
    if result.duplicate_of:
        return RowOutcome(row, "duplicate", result.message, request_id=result.request_id,
                          duplicate_of=result.duplicate_of)
    resolved = result.resolved or queue.resolve_change(conn, change, batch=batch)
    return RowOutcome(row, "queued", result.message, request_id=result.request_id,
                      scim_managed=facts.scim_manages(resolved),
                      admin_access_remains=facts.organization_admin(resolved))


def _check_row(conn, row: MarkedRow, reviewer: str, reason: str, seen: dict[tuple, str],
               facts: _GrantFacts, batch: queue.SubmitBatch) -> RowOutcome:
    """What ``_queue_row`` would do with the row, with nothing recorded: the queue's own checks
    (``queue.check_change``), in the words the import records (keys masked)."""
    done = _already_revoked(conn, row, facts, batch)
    if done is not None:
        return done
    change, rejection = _change_for(conn, row, reviewer, reason, facts, batch)
    try:
        if rejection is not None:
            raise queue.RequestRejected(mask_keys(rejection))  # as queue.record_rejection records it
        checked = queue.check_change(conn, change, batch=batch)
    except queue.RequestRejected as error:
        return RowOutcome(row, "rejected", str(error))
    resolved = checked.resolved
    if checked.queued_as is not None:
        return RowOutcome(row, "duplicate", checked.folded or "", duplicate_of=checked.queued_as[0])
    # Nothing is queued here, so the batch does not know the rows before this one would be.
    key = (resolved.action, resolved.user_id, resolved.workspace_id, resolved.role_id)
    if key in seen:
        return RowOutcome(row, "duplicate", f"the same change as {seen[key]} of this sheet")
    seen[key] = row.where
    return RowOutcome(
        row, "would_queue",
        f"would queue: revoke {resolved.role_name} in {resolved.workspace_name} for "
        f"{resolved.user_email or resolved.user_id}",
        scim_managed=facts.scim_manages(resolved),
        admin_access_remains=facts.organization_admin(resolved),
    )
