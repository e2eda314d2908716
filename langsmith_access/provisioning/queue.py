"""The provisioning queue: submit, resolve, list, claim and settle requests.

Plain Python over DuckDB (no Dagster). Requests are validated when queued against the latest
sync (the tables in the working database), and every rejection is recorded too. They are
validated again against the live API when applied (see ``executor.py``).

A grant is also checked against the access policy (``governance``) when queued: a policy that
cannot be read refuses it, its terms (``--duration`` / ``--until``) are checked and recorded,
and one the policy sends for approval starts ``awaiting_approval`` (``approvals.py`` takes it
on from there). Revokes never need approval and never read the policy.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, overload

import duckdb

from langsmith_access.governance.decisions import (
    AccessTerms,
    AccessTermsRefused,
    Grantee,
    access_terms,
    approval_deadline,
    approver_refusal,
    needs_approval,
)
from langsmith_access.governance.notifications import Notifier
from langsmith_access.governance.policy import NAMED_EMAILS, ORG_ADMINS, Policy, PolicyError, governing_policy
from langsmith_access.settings import Org, mask_keys
from langsmith_access.store import directory
from langsmith_access.store.database import AccessDatabase, DatabaseBusyError, DatabaseUnusableError
from langsmith_access.store.queries import as_uuid, typed_email, typed_name
from langsmith_access.store.sql import column_names, email_key, first_row, table_exists

ACTIONS = ("grant", "revoke")
AWAITING_APPROVAL = "awaiting_approval"
# Where a request ends: applied or not, and for one awaiting approval, denied or left too long.
FINAL_STATUSES = ("applied", "already_satisfied", "rejected", "failed", "denied", "approval_expired")
STATUSES = (AWAITING_APPROVAL, "pending", "in_progress", *FINAL_STATUSES)
# Statuses of a request that is still going to happen: the same change asked again is this one.
OPEN_STATUSES = (AWAITING_APPROVAL, "pending", "in_progress")
# Who queues the revoke that ends a time-bound grant, and why.
SYSTEM_REQUESTER = "langsmith-access"
EXPIRED_REASON = "expired"
MAX_IDENTIFIER_CHARS = 320  # longer than any email (254) or display name we have seen
MAX_TEXT_CHARS = 2000


class RequestRejected(ValueError):
    """A request that cannot be queued; the message says what was wrong and how to fix it."""


@dataclass(frozen=True)
class ChangeRequest:
    """What someone asked for, as typed: user = email or user id, workspace = name or id,
    role = display name, name or id. A grant may be time-bound: ``duration`` (``8h``, counted
    from when it is applied) or ``until`` (an ISO 8601 time with a zone), not both."""

    action: str
    user: str
    workspace: str
    role: str
    reason: str | None = None
    requested_by: str | None = None
    duration: str | timedelta | None = None
    until: str | datetime | None = None


# The fields of a ChangeRequest someone typed.
_TYPED_FIELDS = ("action", "user", "workspace", "role", "reason", "requested_by", "duration", "until")


@dataclass(frozen=True)
class ResolvedChange:
    action: str
    user_id: str
    user_email: str | None
    workspace_id: str
    workspace_name: str
    role_id: str
    role_name: str


@dataclass(frozen=True)
class QueueResult:
    request_id: str
    status: str  # 'pending', 'awaiting_approval' or 'rejected' (a duplicate: the first one's status)
    message: str
    duplicate_of: str | None = None
    # A request queued here: what it resolved to (a review's import asks no second time).
    resolved: ResolvedChange | None = None

    @property
    def accepted(self) -> bool:
        return self.status in OPEN_STATUSES


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso_minutes(moment: datetime) -> str:
    """``2026-12-01T18:00Z``: a time as messages show it; with its seconds when it has any
    (``18:00:49Z``: cut to the minute, a grant's end would read earlier than it is)."""
    moment = moment.astimezone(UTC)
    timespec = "seconds" if moment.second or moment.microsecond else "minutes"
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------- validation


@overload
def check_text(value: Any, what: str, *, required: Literal[True] = True, limit: int = MAX_IDENTIFIER_CHARS) -> str: ...
@overload
def check_text(value: Any, what: str, *, required: bool, limit: int = MAX_IDENTIFIER_CHARS) -> str | None: ...
def check_text(value: Any, what: str, *, required: bool = True, limit: int = MAX_IDENTIFIER_CHARS) -> str | None:
    """A clean single-line string, or ``RequestRejected`` saying what is wrong with it."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise RequestRejected(f"{what} is empty: give a value.")
        return None
    if not isinstance(value, str):
        raise RequestRejected(f"{what} must be text, got {type(value).__name__}.")
    # NFC, and the resolvers compare the names and emails LangSmith sent in NFC too: a name typed
    # composed (é) matches one sent decomposed (e + U+0301), as they look the same.
    value = typed_name(value)
    if len(value) > limit:
        raise RequestRejected(f"{what} is {len(value)} characters long; at most {limit} are allowed.")
    if any(unicodedata.category(ch) == "Cs" for ch in value):
        raise RequestRejected(f"{what} holds bytes that are not UTF-8 text: type it again plainly.")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise RequestRejected(f"{what} contains control or invisible characters: type it again plainly.")
    return value


def _listing(rows: list[tuple], limit: int = 10) -> str:
    shown = "; ".join(f"{name} ({ident})" for ident, name in rows[:limit])
    more = f"; and {len(rows) - limit} more" if len(rows) > limit else ""
    return shown + more


def resolve_change(conn: duckdb.DuckDBPyConnection, change: ChangeRequest, *,
                   batch: SubmitBatch | None = None) -> ResolvedChange:
    """Resolve a request against the latest sync's tables, or raise ``RequestRejected``.
    ``batch``: what a batch of requests read once (the same answers, fewer statements)."""
    action = check_text(change.action, "action")
    if action not in ACTIONS:
        raise RequestRejected(f"action must be 'grant' or 'revoke', got {action!r}.")
    user = check_text(change.user, "user")
    workspace = check_text(change.workspace, "workspace")
    role = check_text(change.role, "role")
    if not (batch.synced if batch is not None else _synced(conn)):
        raise RequestRejected(
            "there is no synced data to check the request against: run `langsmith-access sync` first."
        )
    if batch is None:
        user_id, email = _resolve_user(conn, user)
        workspace_id, workspace_name = _resolve_workspace(conn, workspace)
        role_id, role_name = _resolve_role(conn, role)
    else:
        user_id, email = batch.resolved(conn, _resolve_user, user)
        workspace_id, workspace_name = batch.resolved(conn, _resolve_workspace, workspace)
        role_id, role_name = batch.resolved(conn, _resolve_role, role)
    return ResolvedChange(action, user_id, email, workspace_id, workspace_name, role_id, role_name)


def _synced(conn: duckdb.DuckDBPyConnection) -> bool:
    return all(table_exists(conn, "main", table) for table in ("users", "workspaces", "roles"))


def _resolve_user(conn, user: str) -> tuple[str, str | None]:
    user_uuid = as_uuid(user)
    if user_uuid is not None:
        rows = conn.execute(
            "SELECT user_id, email FROM main.users WHERE user_id = ? OR org_identity_id = ?",
            [user_uuid, user_uuid],
        ).fetchall()
        if not rows:
            legacy = conn.execute(
                "SELECT user_id, email FROM main.users WHERE legacy_user_id = ?", [user_uuid]
            ).fetchall() if "legacy_user_id" in column_names(conn, "main", "users") else []
            if legacy:
                raise RequestRejected(
                    f"{user_uuid} is the legacy user_id of {legacy[0][1] or legacy[0][0]}: give their "
                    f"ls_user_id ({legacy[0][0]}) or their email instead."
                )
            raise RequestRejected(
                f"unknown user: no active org member has id {user_uuid} in the latest sync: give "
                "their email or ls_user_id (`main.users.user_id`), or sync again if they joined recently."
            )
        return rows[0][0], rows[0][1]
    rows = conn.execute(
        f"SELECT user_id, email FROM main.users WHERE {email_key('email')} = {email_key('?')} ORDER BY user_id",
        [user],
    ).fetchall()
    if len(rows) == 1:
        return rows[0][0], rows[0][1]
    if len(rows) > 1:
        raise RequestRejected(
            f"ambiguous user: {len(rows)} org members have the email {user!r} "
            f"({', '.join(r[0] for r in rows)}): give the user id instead."
        )
    invited = conn.execute(
        f"SELECT invite_id FROM main.pending_invites WHERE {email_key('email')} = {email_key('?')}", [user]
    ).fetchall()
    if invited:
        raise RequestRejected(
            f"{user} has a pending invite but is not yet an accepted org member: LangSmith "
            "adds only active members to workspaces. Ask them to accept the invitation, sync, "
            "then request again."
        )
    if "@" not in user:  # said only after the lookup: we do not decide what LangSmith takes as an email
        raise RequestRejected(
            f"unknown user: {user!r} is neither an email address nor a user id (a UUID), and no active "
            "org member has it as their email: give the member's email or ls_user_id (`main.users.user_id`)."
        )
    raise RequestRejected(
        f"unknown user: no active org member has the email {user!r} in the latest sync "
        "(check the spelling, or sync again if they joined recently)."
    )


def _hidden_workspace_reason(conn, where: str, value: str) -> str | None:
    rows = conn.execute(
        f"SELECT workspace_id, display_name, is_personal, is_deleted FROM raw.workspaces WHERE {where}",
        [value],
    ).fetchall()
    for workspace_id, name, is_personal, is_deleted in rows:
        kind = "deleted" if is_deleted else "personal" if is_personal else None
        if kind:
            return (
                f"workspace {name!r} ({workspace_id}) is a {kind} workspace: this tool provisions "
                "only shared, live workspaces."
            )
    return None


def _resolve_workspace(conn, workspace: str) -> tuple[str, str]:
    workspace_uuid = as_uuid(workspace)
    if workspace_uuid is not None:
        rows = conn.execute(
            "SELECT workspace_id, display_name FROM main.workspaces WHERE workspace_id = ?",
            [workspace_uuid],
        ).fetchall()
        if rows:
            return rows[0]
        hidden = _hidden_workspace_reason(conn, "workspace_id = ?", workspace_uuid)
        raise RequestRejected(hidden or (
            f"unknown workspace: no workspace has id {workspace_uuid} in the latest sync: check the id "
            f"(or give the workspace's name), or sync again if it was created since. {_shared(conn)}"))
    rows = conn.execute(
        "SELECT workspace_id, display_name FROM main.workspaces WHERE nfc_normalize(display_name) = ? "
        "ORDER BY workspace_id",
        [workspace],
    ).fetchall() or conn.execute(
        "SELECT workspace_id, display_name FROM main.workspaces "
        "WHERE lower(nfc_normalize(display_name)) = lower(?) ORDER BY workspace_id",
        [workspace],
    ).fetchall()
    if len(rows) == 1:
        return rows[0]
    if len(rows) > 1:
        raise RequestRejected(
            f"ambiguous workspace: {len(rows)} workspaces are named {workspace!r}: "
            f"{_listing([(r[0], r[1]) for r in rows])}. Give the workspace id instead."
        )
    hidden = _hidden_workspace_reason(conn, "lower(nfc_normalize(display_name)) = lower(?)", workspace)
    raise RequestRejected(hidden or (
        f"unknown workspace: no shared workspace is named {workspace!r} in the latest sync: check the "
        f"spelling (or give the workspace's id), or sync again if it was created since. {_shared(conn)}"))


def _shared(conn, limit: int = 5) -> str:
    """A few shared workspaces by name (short: the message is kept with the request), for a
    request that named none of them."""
    names = [name if len(name) <= 40 else name[:39] + "…" for (name,) in conn.execute(
        "SELECT display_name FROM main.workspaces ORDER BY display_name, workspace_id").fetchall()]
    if not names:
        return "The latest sync found no shared workspace."
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"Shared workspaces: {', '.join(names[:limit])}{more}."


def _resolve_role(conn, role: str) -> tuple[str, str]:
    role_uuid = as_uuid(role)
    if role_uuid is not None:
        rows = conn.execute(
            "SELECT role_id, display_name, access_scope FROM main.roles WHERE role_id = ?", [role_uuid]
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT role_id, display_name, access_scope FROM main.roles "
            "WHERE (upper(name) = upper(?) AND name <> 'CUSTOM') OR lower(nfc_normalize(display_name)) = lower(?) "
            "ORDER BY access_scope DESC, role_id",
            [role, role],
        ).fetchall()
    if not rows and role.strip().upper() == "CUSTOM":
        custom = conn.execute(
            "SELECT role_id, display_name FROM main.roles WHERE name = 'CUSTOM' AND access_scope = 'workspace' "
            "ORDER BY display_name, role_id"
        ).fetchall()
        raise RequestRejected(
            "'CUSTOM' is LangSmith's name for every custom role: give one's display name or id"
            + (f". Custom workspace roles: {_listing(custom)}." if custom else "; this org has no custom "
               "workspace role.")
        )
    if not rows:
        available = conn.execute(
            "SELECT display_name FROM main.roles WHERE access_scope = 'workspace' ORDER BY display_name"
        ).fetchall()
        raise RequestRejected(
            f"unknown role {role!r}. Workspace roles: {', '.join(r[0] for r in available)}."
        )
    workspace_roles = [r for r in rows if r[2] == "workspace"]
    if len(workspace_roles) > 1:
        raise RequestRejected(
            f"ambiguous role: {len(workspace_roles)} workspace roles match {role!r}: "
            f"{_listing([(r[0], r[1]) for r in workspace_roles])}. Give the role id instead."
        )
    if not workspace_roles:
        raise RequestRejected(
            f"{rows[0][1]!r} is an organization role. Organization roles are read-only here: "
            "LangSmith replaces a member's single organization role on update, so change it in "
            "LangSmith itself. Ask for a workspace role (e.g. Admin, Editor, Viewer)."
        )
    return workspace_roles[0][0], workspace_roles[0][1]


# --------------------------------------------------------------------- queue


def submit(
    database: AccessDatabase,
    change: ChangeRequest,
    *,
    policy_path: Path | None = None,
    notifier: Notifier | None = None,
    lease_timeout_seconds: float = 600.0,
) -> QueueResult:
    """Validate and queue one request; a rejected one is recorded as ``rejected``. Publishes.
    ``policy_path``: the access policy file (None: no policy)."""
    with database.writer_lease("queue a provisioning request", timeout_seconds=lease_timeout_seconds):
        database.ensure_working()
        database.publish_pending()
        with database.connect() as conn:
            result = submit_on(conn, change, policy_path=policy_path, notifier=notifier)
        database.publish_committed(_recorded(result), result)
    return result


def _recorded(result: QueueResult) -> str:
    """What ``submit`` committed, as a failed publish says it stands."""
    if not result.accepted:
        return f"the rejected request was recorded as {result.request_id}"
    if result.duplicate_of:
        return f"request {result.request_id} was already queued ({result.status}): this ask was recorded with it"
    return f"request {result.request_id} was queued ({result.status})"


class SubmitBatch:
    """What ``submit_on`` reads that stays the same from one request to the next of a batch,
    read once: a caller queueing many requests on one connection, all under one writer lease (a
    review's import), passes one to each of its ``submit_on`` calls (``batch=``). The answers are
    the ones the per-request statements give; each of those statements cost ~4-6 ms (DuckDB's
    planning and its catalog), most of a queued row's time.

    Kept: whether the sync's tables are there; what each typed user, workspace and role resolved
    to (or why not), the users the caller names up front (``users``) looked up together; and the
    latest open request of each membership (``pending_duplicate``). They stay true because every
    writer of the working file holds the writer lease (sync, provisioning, queueing, decisions;
    ``AccessDatabase.writer_lease``) and DuckDB lets one process at a time open the file for
    writing: while the caller holds the lease and its connection, the synced tables do not change
    (only a sync writes them) and the queue changes only through this batch's own ``submit_on``
    calls, which record here each open request they insert. Not for a caller that lets go of the
    lease between requests, or that changes the queue in between otherwise (``claim``, an
    approval, an expiry)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, *, users: Iterable[str] = ()):
        """``users``: as the batch's requests will name them (``_look_up_users``)."""
        self.synced = _synced(conn)
        # (kind of lookup, typed value) -> what it resolved to, or the rejection's message.
        self._resolutions: dict[tuple[str, str], tuple[Any, Any] | str] = {}
        # (user_id, workspace_id) -> (request_id, action, role_id, parent_request_id) of the
        # membership's latest open request (pending_duplicate's query, for every membership).
        self._open: dict[tuple[str, str], tuple[str, str, str, str | None]] = {}
        if _has_queue(conn):
            for user_id, workspace_id, *latest in conn.execute(
                f"SELECT user_id, workspace_id, request_id, action, role_id, parent_request_id "
                f"FROM main.provisioning_requests WHERE status IN ({OPEN_STATUSES_SQL}) "
                "QUALIFY row_number() OVER (PARTITION BY user_id, workspace_id ORDER BY request_seq DESC) = 1"
            ).fetchall():
                self._open[(user_id, workspace_id)] = tuple(latest)
        if self.synced:
            self._look_up_users(conn, users)

    def resolved(self, conn: duckdb.DuckDBPyConnection, lookup, typed: str) -> tuple[Any, Any]:
        """``lookup(conn, typed)`` (a ``_resolve_*``), asked once per typed value: raises the same
        ``RequestRejected`` each time it is asked again."""
        key = (lookup.__name__, typed)
        if key not in self._resolutions:
            try:
                self._resolutions[key] = lookup(conn, typed)
            except RequestRejected as rejection:
                self._resolutions[key] = str(rejection)
        answer = self._resolutions[key]
        if isinstance(answer, str):
            raise RequestRejected(answer)
        return answer

    def _look_up_users(self, conn: duckdb.DuckDBPyConnection, typed: Iterable[str]) -> None:
        """What ``_resolve_user`` answers for each of the users the batch's requests will name, in
        two statements rather than one a user (~3 ms each): kept where one member has the id or
        the email, as ``_resolve_user`` finds them. Any other answer (none, several: a rejection
        to word) is left to ``_resolve_user`` when asked."""
        values = set()  # as resolve_change passes them to _resolve_user
        for value in typed:
            try:
                values.add(check_text(value, "user"))
            except RequestRejected:
                continue
        by_id = {value: as_uuid(value) for value in values}
        ids = sorted({found for found in by_id.values() if found is not None})
        emails = sorted({value for value, found in by_id.items() if found is None})
        found: dict[str, list[tuple[str, str | None]]] = {}
        if ids:
            # Matched by user_id or by org identity id, each member once (as the one query's OR).
            for looked_up, user_id, email in conn.execute(
                "SELECT DISTINCT typed, user_id, email FROM ("
                "SELECT typed, user_id, email FROM unnest($ids) AS t(typed) JOIN main.users ON user_id = typed "
                "UNION ALL SELECT typed, user_id, email FROM unnest($ids) AS t(typed) "
                "JOIN main.users ON org_identity_id = typed)", {"ids": ids}).fetchall():
                found.setdefault(looked_up, []).append((user_id, email))
        if emails:
            for looked_up, user_id, email in conn.execute(
                f"SELECT typed, user_id, email FROM unnest($emails) AS t(typed) JOIN main.users "
                f"ON {email_key('email')} = {email_key('typed')}", {"emails": emails}).fetchall():
                found.setdefault(looked_up, []).append((user_id, email))
        for value, user_uuid in by_id.items():
            members = found.get(user_uuid if user_uuid is not None else value, [])
            if len(members) == 1:
                self._resolutions[(_resolve_user.__name__, value)] = members[0]

    def latest_open(self, user_id: str, workspace_id: str) -> tuple[str, str, str, str | None] | None:
        return self._open.get((user_id, workspace_id))

    def queued(self, request_id: str, resolved: ResolvedChange) -> None:
        """A request ``submit_on`` just inserted open: the membership's latest open request now."""
        self._open[(resolved.user_id, resolved.workspace_id)] = (
            request_id, resolved.action, resolved.role_id, None)


@dataclass(frozen=True)
class _Governed:
    """What the policy decided about a grant when it was queued."""

    terms: AccessTerms
    needs_approval: bool
    deadline: datetime | None  # awaiting approval past this: approval_expired (None: no limit)
    approvers: str  # who may approve, in words


def submit_on(
    conn: duckdb.DuckDBPyConnection,
    change: ChangeRequest,
    *,
    policy_path: Path | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    launched_by: str | None = None,
    batch: SubmitBatch | None = None,
) -> QueueResult:
    """``submit`` on an open working-database connection (the caller holds the writer lease).
    ``batch``: shared by the requests one caller queues in a row under one lease (``SubmitBatch``).
    ``run_id``: the Dagster run the change was typed into (the Launchpad), kept on the request
    and its events; ``launched_by``: who launched that run, as Dagster tags it. The launcher is
    the one asking: a run launched by one person asking in another's name (``requested_by``) is
    rejected, as a decision taken in another's name is (``approvals.decide_on``)."""
    change = _masked(change, notifier)
    request_id = new_id()
    at = now or now_utc()
    try:
        checked = _check(conn, change, policy_path, at, launched_by, batch)
    except (RequestRejected, PolicyError, AccessTermsRefused) as rejection:
        refusal = mask_keys(str(rejection))  # may quote the policy file, which may hold a pasted key
        _insert_request(conn, request_id, change, _resolved_if_any(conn, change, batch), "rejected", refusal, at,
                        run_id)
        record_event(conn, request_id, "rejected", {"stage": "queue", "reason": refusal}, at=at, run_id=run_id)
        return QueueResult(request_id, "rejected", refusal)
    reason, requested_by, resolved, governed = checked
    change = replace(change, reason=reason, requested_by=requested_by)  # as checked: trimmed, blank is None
    duplicate = pending_duplicate(conn, resolved, batch=batch)
    if duplicate:
        try:
            status, folded = _folded(conn, duplicate, reason, governed)
        except RequestRejected as rejection:
            refusal = str(rejection)
            _insert_request(conn, request_id, change, resolved, "rejected", refusal, at, run_id)
            record_event(conn, request_id, "rejected", {"stage": "queue", "reason": refusal}, at=at, run_id=run_id)
            return QueueResult(request_id, "rejected", refusal, duplicate_of=duplicate)
        return QueueResult(duplicate, status, folded, duplicate_of=duplicate)
    status = AWAITING_APPROVAL if governed is not None and governed.needs_approval else "pending"
    _insert_request(conn, request_id, change, resolved, status, None, at, run_id)
    if batch is not None:
        batch.queued(request_id, resolved)
    if governed is not None:
        _record_terms(conn, request_id, governed)
    target = (f"{resolved.action} {resolved.role_name} in {resolved.workspace_name} "
              f"for {resolved.user_email or resolved.user_id}")
    terms_text = f" {governed.terms.describe()}" if governed is not None else ""
    # Queued all the same (LangSmith keeps a disabled member's roles), but said: it is the
    # dormant access report_disabled_members_with_grants flags.
    disabled = resolved.action == "grant" and _is_disabled(conn, resolved.user_id)
    disabled_note = (f" Note: {resolved.user_email or resolved.user_id} is disabled in LangSmith: they "
                     "cannot sign in while disabled, and the role takes effect if they are enabled "
                     "again (report_disabled_members_with_grants lists such grants).") if disabled else ""
    record_event(
        conn, request_id, "queued",
        {"action": resolved.action, "user_id": resolved.user_id, "workspace_id": resolved.workspace_id,
         "role_id": resolved.role_id,
         **({"terms": governed.terms.describe()} if governed is not None else {}),
         **({"member_disabled": True} if disabled else {})},
        at=at, run_id=run_id,
    )
    if governed is not None and governed.needs_approval:
        record_event(conn, request_id, "approval_requested",
                     {"approvers": governed.approvers, "deadline": governed.deadline}, at=at,
                     run_id=run_id)
        notifier = notifier or Notifier.off()
        notifier.notify(
            conn, "request.awaiting_approval", at=at, request_id=request_id,
            user=resolved.user_email or resolved.user_id, workspace=resolved.workspace_name,
            role=resolved.role_name,
            detail=awaiting_approval_detail(request_id, governed.approvers, governed.deadline, notifier.org),
        )
        waits = f"; it waits until {iso_minutes(governed.deadline)}" if governed.deadline else ""
        return QueueResult(
            request_id, AWAITING_APPROVAL,
            f"awaiting approval: {target}{terms_text}. Approvers ({governed.approvers}) decide with "
            f"`langsmith-access approve {request_id} --by EMAIL` (or deny){waits}.{disabled_note}",
            resolved=resolved,
        )
    return QueueResult(request_id, "pending", f"queued: {target}{terms_text}{'.' + disabled_note if disabled else ''}",
                       resolved=resolved)


def _check(conn: duckdb.DuckDBPyConnection, change: ChangeRequest, policy_path: Path | None, at: datetime,
           launched_by: str | None, batch: SubmitBatch | None = None,
           ) -> tuple[str | None, str | None, ResolvedChange, _Governed | None]:
    """What ``submit_on`` checks before it queues a (masked) change: its reason and requester as
    kept, its resolution and the policy's say on a grant. Raises ``RequestRejected``,
    ``PolicyError`` or ``AccessTermsRefused``."""
    reason = check_text(change.reason, "reason", required=False, limit=MAX_TEXT_CHARS)
    requested_by = check_text(change.requested_by, "requested_by", required=False)
    impersonated = launcher_refusal(requested_by, mask_keys(launched_by) if launched_by else None)
    if impersonated is not None:
        raise RequestRejected(impersonated)
    resolved = resolve_change(conn, change, batch=batch)
    if resolved.action == "grant":
        return reason, requested_by, resolved, _govern(conn, change, resolved, policy_path, at)
    if change.duration is not None or change.until is not None:
        raise RequestRejected("--duration and --until are for grants: a revoke takes effect when applied.")
    return reason, requested_by, resolved, None


@dataclass(frozen=True)
class ChangeCheck:
    """What queueing a change would do, as ``check_change`` found it without queueing it."""

    resolved: ResolvedChange
    needs_approval: bool
    approvers: str | None  # who may approve, in words (None: no approval needed)
    terms: str | None  # how long the access lasts, in words (None: a revoke)
    # The same change already queued, which queueing folds it into: (its id, its status).
    queued_as: tuple[str, str] | None = None
    # What queueing says of it then (``submit_on``'s message, with what of this one is not kept).
    folded: str | None = None


def check_change(conn: duckdb.DuckDBPyConnection, change: ChangeRequest, *, policy_path: Path | None = None,
                 now: datetime | None = None, launched_by: str | None = None,
                 batch: SubmitBatch | None = None, notifier: Notifier | None = None) -> ChangeCheck:
    """``submit_on``'s checks of ``change``, with nothing queued or recorded (a dry run): what it
    would resolve to and whether it would await approval, or ``RequestRejected`` saying why it
    would be rejected (in the words ``submit_on`` records, keys masked). ``batch``: as for
    ``submit_on``, over a connection nothing else changes (a dry run of many changes);
    ``notifier``: as for ``submit_on``, the org's own secrets cut from what was typed."""
    try:
        reason, _, resolved, governed = _check(conn, _masked(change, notifier), policy_path, now or now_utc(),
                                               launched_by, batch)
    except (RequestRejected, PolicyError, AccessTermsRefused) as rejection:
        raise RequestRejected(mask_keys(str(rejection))) from None
    duplicate = pending_duplicate(conn, resolved, batch=batch)
    if duplicate:  # as submit_on takes it: folded into the queued one, or refused for other terms
        # The analysts' copy an older version published may lack columns added since.
        status, folded = _folded(conn, duplicate, reason, governed, select=_published_select(conn))
        return ChangeCheck(resolved, status == AWAITING_APPROVAL, None, None, queued_as=(duplicate, status),
                           folded=folded)
    if governed is None:
        return ChangeCheck(resolved, False, None, None)
    return ChangeCheck(resolved, governed.needs_approval, governed.approvers if governed.needs_approval else None,
                       governed.terms.describe())


def launcher_refusal(requested_by: str | None, launched_by: str | None) -> str | None:
    """Why a run launched by ``launched_by`` (an email, as Dagster tags the launcher) may not queue a
    change asked by ``requested_by``, or None. Self-approval is judged against the requester: one
    named freely by whoever launched the run would let the launcher approve their own request."""
    if not launched_by or "@" not in launched_by or not requested_by:
        return None
    if typed_email(requested_by) == typed_email(launched_by):
        return None
    return (f"this run was launched by {launched_by.strip()}, who asks only as themself: leave requested_by out "
            f"(the launcher is then the requester), or set it to {launched_by.strip()}.")


def _is_disabled(conn: duckdb.DuckDBPyConnection, user_id: str | None) -> bool:
    """Whether the latest sync saw this member disabled."""
    row = conn.execute("SELECT is_disabled FROM main.users WHERE user_id = ?", [user_id]).fetchone()
    return bool(row and row[0])


def _folded(conn: duckdb.DuckDBPyConnection, duplicate: str, reason: str | None, governed: _Governed | None, *,
            select: str | None = None) -> tuple[str, str]:
    """A change asked again while ``duplicate`` is queued for it: that request's status and what
    queueing says (the change is folded into it), or ``RequestRejected`` when folding it would
    drop what this one asks for (other terms). ``select``: the columns to read (all by default)."""
    [first] = fetch_requests(conn, "request_id = ?", [duplicate], select=select or ", ".join(REQUEST_COLUMNS))
    differences = _other_terms(first, governed)
    if differences:
        raise RequestRejected(_queued_with_other_terms(duplicate, first, differences))
    # The same access either way; only a reason of its own is not kept: say so.
    kept = ("" if reason is None or reason == first["reason"]
            else f"; its reason stays {first['reason']!r}" if first["reason"] is not None
            else "; it has no reason, and yours is not added to it")
    return first["status"], f"the same change is already queued as {duplicate} ({first['status']}){kept}"


def _queued_with_other_terms(duplicate: str, first: dict, differences: str) -> str:
    return (f"the same change is already queued as {duplicate} ({first['status']}) with other "
            f"terms: {differences}. Wait for it (or deny it while it awaits approval, or revoke "
            "it once applied), then ask again with these terms.")


def _other_terms(queued: dict, governed: _Governed | None) -> str:
    """How a grant asked for the same change as a queued one would last otherwise (empty: the
    same terms, it is the same request)."""
    if governed is None:
        return ""
    before, asked = terms_of(queued), governed.terms
    if (before.duration, before.until) == (asked.duration, asked.until):
        return ""
    return f"the queued grant lasts {before.describe()}, this one asks {asked.describe()}"


def _govern(conn, change: ChangeRequest, resolved: ResolvedChange, policy_path: Path | None, at: datetime) -> _Governed:
    """The policy's say on a grant: its terms, and whether (and until when) it awaits approval.
    Raises ``PolicyError`` (the policy cannot be read) or ``AccessTermsRefused``."""
    policy = governing_policy(policy_path, conn)
    terms = access_terms(policy, resolved.role_id, resolved.role_name, now=at,
                         duration=change.duration, until=change.until)
    approval = needs_approval(policy, resolved.role_id, resolved.workspace_id)
    if approval:
        grantee = Grantee(resolved.user_id, resolved.user_email, change.requested_by, resolved.workspace_name)
        blocker = approval_blocker(conn, policy, grantee, resolved.workspace_id)
        if blocker is not None:
            raise RequestRejected(blocker)
    deadline = approval_deadline(policy, at) if approval else None
    return _Governed(terms, approval, deadline, approvers_text(policy, resolved.workspace_name))


def approval_blocker(conn, policy: Policy, grantee: Grantee, workspace_id: str | None) -> str | None:
    """Why nobody could approve a grant that ``policy`` sends for approval, saying what to fix;
    None when someone could. Such a grant is refused at once (when queued, or when a changed
    policy sends a pending one for approval): otherwise it waits for a decision that cannot come
    (the named approvers are no active members, or the only approvers are its requester or
    grantee and the policy does not allow self-approval) until it expires."""
    if policy.approvers == NAMED_EMAILS:
        members = conn.execute(
            f"SELECT count(*) FROM main.users WHERE NOT is_disabled AND {email_key('email')} IN "
            f"(SELECT {email_key('named')} FROM unnest($emails) AS listed(named))",
            {"emails": list(policy.approver_emails)},
        ).fetchone()[0]
        if not members:
            return (
                f"the policy's approvers ({', '.join(policy.approver_emails)}) are none of them active "
                "members of the org in the latest sync: nobody could approve this request. Fix "
                "approval.approvers in the policy file (or sync, if they joined since).")
        candidates = list(policy.approver_emails)
    else:
        candidates = directory.admin_emails(conn, workspace_id if policy.approvers != ORG_ADMINS else None)
    if not candidates:  # no admin in the latest sync at all: not this check's to judge
        return None
    refusals: list[str] = []
    for email in candidates:
        standing = directory.member_standing(conn, email, workspace_id)
        refusal = approver_refusal(policy, standing, grantee, approving=True)
        if refusal is None:
            return None
        if refusal not in refusals:
            refusals.append(refusal)
    return (
        f"nobody could approve this request ({approvers_text(policy, grantee.workspace_name or 'the workspace')}): "
        f"{' '.join(refusals)} Have someone else ask for it, or fix approval.approvers (or approval.self_approval) "
        "in the policy file.")


def awaiting_approval_detail(request_id: str, approvers: str, deadline: datetime | None, org: str) -> str:
    """The ``detail`` of ``request.awaiting_approval``: who decides, by when and how, so whoever
    reads it in a chat channel can act without looking the request up. The command names the org
    unless it is the single-org ``default``: with several orgs, one without ``--org`` is refused."""
    before = f" before {iso_minutes(deadline)}" if deadline is not None else ""
    which_org = f" --org {org}" if org and org != "default" else ""
    return (f"needs approval by {approvers}{before}: decide with "
            f"`langsmith-access approve {request_id} --by EMAIL{which_org}` (or deny)")


def approvers_text(policy: Policy, workspace_name: str) -> str:
    """Who may approve a grant in ``workspace_name`` under ``policy``, in words."""
    if policy.approvers == ORG_ADMINS:
        return "an Organization Admin"
    if policy.approvers == NAMED_EMAILS:
        return "one of " + ", ".join(policy.approver_emails)
    return f"an Admin of {workspace_name} or an Organization Admin"


def _record_terms(conn, request_id: str, governed: _Governed) -> None:
    duration = governed.terms.duration
    conn.execute(
        "UPDATE main.provisioning_requests SET access_duration_seconds = ?, access_until = ?, "
        "approval_deadline = ? WHERE request_id = ?",
        [int(duration.total_seconds()) if duration is not None else None, governed.terms.until,
         governed.deadline, request_id],
    )


def terms_of(request: dict) -> AccessTerms:
    """A queued grant's terms, as recorded when it was queued."""
    seconds, until = request.get("access_duration_seconds"), request.get("access_until")
    return AccessTerms(duration=timedelta(seconds=seconds) if seconds is not None else None, until=until)


def record_rejection(conn: duckdb.DuckDBPyConnection, change: ChangeRequest, message: str, *,
                     batch: SubmitBatch | None = None) -> QueueResult:
    """Record a request refused before it could be resolved (e.g. a review sheet naming a grant
    that no longer exists), exactly as ``submit_on`` records its own rejections."""
    change, message = _masked(change), mask_keys(message)  # a sheet's cells are typed, as fields are
    request_id = new_id()
    at = now_utc()
    _insert_request(conn, request_id, change, _resolved_if_any(conn, change, batch), "rejected", message, at)
    record_event(conn, request_id, "rejected", {"stage": "queue", "reason": message}, at=at)
    return QueueResult(request_id, "rejected", message)


def _resolved_if_any(conn, change: ChangeRequest, batch: SubmitBatch | None) -> ResolvedChange | None:
    """What a rejected change names, where it names something that exists (refused by the policy,
    its terms or its launcher, say): recorded with it, so `requests` shows whom it was for."""
    try:
        return resolve_change(conn, change, batch=batch)
    except RequestRejected:
        return None


def pending_duplicate(conn: duckdb.DuckDBPyConnection, resolved: ResolvedChange, *,
                      batch: SubmitBatch | None = None) -> str | None:
    """The id of a request for the same change that is still to happen (awaiting approval,
    pending or in progress), if there is one: the latest open request on the membership (the
    user in the workspace), when it asks for this same change. An open request for another change
    queued after an identical one (revoke, grant, revoke) is not a duplicate: merged into the
    first, the last word would run before the request it overturns. Nor is the revoke that ends
    a time-bound grant: it undoes only what that grant did (maybe nothing), not the role."""
    if batch is not None:
        row = batch.latest_open(resolved.user_id, resolved.workspace_id)
    elif not _has_queue(conn):
        return None
    else:
        row = first_row(
            conn,
            f"SELECT request_id, action, role_id, parent_request_id FROM main.provisioning_requests "
            f"WHERE status IN ({OPEN_STATUSES_SQL}) AND user_id = ? AND workspace_id = ? "
            "ORDER BY request_seq DESC LIMIT 1",
            [resolved.user_id, resolved.workspace_id],
        )
    if row is None or (row[1], row[2]) != (resolved.action, resolved.role_id) or row[3] is not None:
        return None
    return row[0]


OPEN_STATUSES_SQL = ", ".join(f"'{status}'" for status in OPEN_STATUSES)  # for IN (...)


def _masked(change: ChangeRequest, notifier: Notifier | None = None) -> ChangeRequest:
    """A key typed or pasted into a field is kept, echoed and recorded only as its prefix, and the
    org's own secrets ``notifier`` knows (the webhook URL) not at all."""
    hidden = notifier.hidden if notifier is not None else str
    return replace(change, **{name: hidden(mask_keys(value)) for name in _TYPED_FIELDS
                              if isinstance(value := getattr(change, name), str)})


def storable(text: str) -> str:
    """``text`` as DuckDB can store it: bytes that were not UTF-8 (lone surrogates, as Python
    decodes such arguments) shown as ``\\xff`` escapes, rather than refused by DuckDB."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff"  # a byte os.fsdecode escaped
                   else f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _clip(value: Any, limit: int = 1000) -> str | None:
    """``value`` as recorded: whole up to ``limit`` characters (what validation accepts is kept
    whole), an overlong one (only ever rejected) cut there."""
    if value is None:
        return None
    text = storable(value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[:limit] + "…"


def _insert_request(conn, request_id, change, resolved: ResolvedChange | None, status, detail, at,
                    run_id: str | None = None) -> None:
    conn.execute(
        "INSERT INTO main.provisioning_requests (request_id, action, user_id, user_email, "
        "workspace_id, workspace_name, role_id, role_name, status, status_detail, reason, "
        "requested_by, requested_at, updated_at, requested_user, requested_workspace, requested_role, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            request_id,
            resolved.action if resolved else _clip(change.action),
            resolved and resolved.user_id,
            resolved and resolved.user_email,
            resolved and resolved.workspace_id,
            resolved and resolved.workspace_name,
            resolved and resolved.role_id,
            resolved and resolved.role_name,
            status,
            detail if detail is None else mask_keys(detail),
            _clip(change.reason, MAX_TEXT_CHARS),
            _clip(change.requested_by),
            at,
            at,
            _clip(change.user),
            _clip(change.workspace),
            _clip(change.role),
            run_id,
        ],
    )


def record_event(
    conn, request_id: str, kind: str, detail: dict, *, at: datetime | None = None, run_id: str | None = None
) -> None:
    record_events(conn, [(request_id, kind, detail, at or now_utc())], run_id=run_id)


def record_events(
    conn, events: Sequence[tuple[str, str, dict, datetime]], *, run_id: str | None = None
) -> None:
    """Append ``(request_id, kind, detail, at)`` events in one statement: a run settling 500
    requests records ~5,000 events, and one ``INSERT`` each costs ~1 ms of DuckDB's planning."""
    if not events:
        return
    request_ids, kinds, details, ats = (list(column) for column in zip(*events, strict=True))
    conn.execute(
        'INSERT INTO main.provisioning_events (event_id, request_id, "at", kind, detail, run_id) '
        "SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::TIMESTAMPTZ[]), "
        "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?",
        [[new_id() for _ in events], request_ids, ats, kinds,
         [mask_keys(json.dumps(detail, default=str)) for detail in details], run_id],
    )


def set_statuses(conn, statuses: Sequence[tuple[str, str, str | None]], run_id: str | None) -> None:
    """Set ``(request_id, status, detail)`` in one statement; a request named twice ends with
    its last status."""
    latest = {request_id: (status, detail) for request_id, status, detail in statuses}
    if not latest:
        return
    conn.execute(
        "UPDATE main.provisioning_requests AS r SET status = s.status, status_detail = s.detail, "
        "updated_at = ?, run_id = coalesce(?, r.run_id) "
        "FROM (SELECT unnest(?::VARCHAR[]) AS request_id, unnest(?::VARCHAR[]) AS status, "
        "unnest(?::VARCHAR[]) AS detail) AS s WHERE r.request_id = s.request_id",
        [now_utc(), run_id, list(latest), [v[0] for v in latest.values()], [v[1] for v in latest.values()]],
    )


def set_grant_terms(conn, terms: Sequence[tuple[str, str | None, datetime | None]]) -> None:
    """Record applied grants' ``(request_id, prior_role_id, expires_at)`` in one statement."""
    if not terms:
        return
    request_ids, prior_role_ids, expires = (list(column) for column in zip(*terms, strict=True))
    conn.execute(
        "UPDATE main.provisioning_requests AS r SET prior_role_id = t.prior_role_id, "
        "expires_at = t.expires_at FROM (SELECT unnest(?::VARCHAR[]) AS request_id, "
        "unnest(?::VARCHAR[]) AS prior_role_id, unnest(?::TIMESTAMPTZ[]) AS expires_at) AS t "
        "WHERE r.request_id = t.request_id",
        [request_ids, prior_role_ids, expires],
    )


# --------------------------------------------------------------------- reads

REQUEST_COLUMNS = (
    "request_id", "request_seq", "action", "user_id", "user_email", "workspace_id", "workspace_name",
    "role_id", "role_name", "status", "status_detail", "reason", "requested_by", "requested_at",
    "updated_at", "run_id", "requested_user", "requested_workspace", "requested_role",
    "expires_at", "parent_request_id", "approved_by", "approved_at", "prior_role_id",
    "access_duration_seconds", "access_until", "approval_deadline",
)


def fetch_requests(conn, where: str = "TRUE", params: list | None = None, *,
                   select: str = ", ".join(REQUEST_COLUMNS)) -> list[dict]:
    cursor = conn.execute(
        f"SELECT {select} FROM main.provisioning_requests WHERE {where} ORDER BY request_seq",
        params or [],
    )
    return [dict(zip(REQUEST_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def _published_select(conn: duckdb.DuckDBPyConnection) -> str:
    """REQUEST_COLUMNS as the analysts' copy has them: a copy an older version published lacks
    the columns added since (ensure_schema adds them to the working file, and the next publish
    to this copy), read as null until then rather than refused."""
    present = {row[0] for row in conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'provisioning_requests'"
    ).fetchall()}
    return ", ".join(column if column in present else f"NULL AS {column}" for column in REQUEST_COLUMNS)


def list_requests(database: AccessDatabase, status: str | None = None) -> list[dict]:
    """Requests as the analysts' copy shows them (read-only; never blocks a run); none before
    the first sync or request made that copy."""
    if status is not None and status not in STATUSES:
        raise RequestRejected(f"status must be one of {', '.join(STATUSES)}, got {status!r}.")
    if not database.path.exists():
        return []
    with database.read_published() as conn:
        if not _has_queue(conn):
            return []
        select = _published_select(conn)
        if status is None:
            return fetch_requests(conn, select=select)
        return fetch_requests(conn, "status = ?", [status], select=select)


def org_holding_request(orgs: Iterable[Org], request_id: str, *, besides: str) -> str | None:
    """The slug of the org, other than the one slugged ``besides``, whose queue (its analysts'
    copy, read-only) holds ``request_id``: a request decided or applied under the wrong org is
    refused naming the org it belongs to. None when none does; a copy busy or unreadable now is
    passed over (the refusal stays the asking org's)."""
    for org in orgs:
        if org.slug == besides:
            continue
        try:
            if any(request["request_id"] == request_id for request in list_requests(AccessDatabase.of_org(org))):
                return org.slug
        except (DatabaseBusyError, DatabaseUnusableError, duckdb.Error, OSError):
            continue
    return None


def request_ids_with_status(conn, status: str) -> list[str]:
    """Ids of the requests in one status, oldest first ([] before anything was queued)."""
    if not _has_queue(conn):
        return []
    return [r[0] for r in conn.execute(
        "SELECT request_id FROM main.provisioning_requests WHERE status = ? ORDER BY request_seq",
        [status],
    ).fetchall()]


def unknown_request_ids(conn, request_ids: list[str]) -> list[str]:
    known = {r[0] for r in conn.execute(
        "SELECT request_id FROM main.provisioning_requests WHERE request_id IN "
        f"({', '.join('?' for _ in request_ids)})", list(request_ids)
    ).fetchall()} if request_ids else set()
    return [r for r in request_ids if r not in known]


def _has_queue(conn: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(conn, "main", "provisioning_requests")


def claim(conn, run_id: str, request_ids: list[str] | None) -> list[dict]:
    """Take requests for this run, atomically: pending ones (all, or the given ids), plus any
    ``in_progress`` left by a run that died (the caller holds the writer lease for the whole
    run, so no other provisioning run is alive). Two runs never take the same request."""
    conn.execute("BEGIN")
    try:
        if request_ids is None:
            where, params = "status = 'pending' OR (status = 'in_progress' AND run_id <> ?)", [run_id]
        else:
            placeholders = ", ".join("?" for _ in request_ids)
            where = (
                f"request_id IN ({placeholders}) AND "
                "(status = 'pending' OR (status = 'in_progress' AND run_id <> ?))"
            )
            params = [*request_ids, run_id]
        claimed = fetch_requests(conn, where, params)
        at = now_utc()
        set_statuses(conn, [(r["request_id"], "in_progress", r["status_detail"]) for r in claimed], run_id)
        record_events(conn, [
            (r["request_id"], "recovered", {"previous_run_id": r["run_id"]}, at) if r["status"] == "in_progress"
            else (r["request_id"], "claimed", {}, at)
            for r in claimed
        ], run_id=run_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return claimed
