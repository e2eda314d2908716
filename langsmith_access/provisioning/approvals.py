"""Deciding requests that await approval: approve, deny, and expire the ones left too long (past
their approval deadline, or past the ``--until`` they asked for: approved then, they would give nothing).

A decision is recorded (exit 0 on the command line) as a row of ``provisioning_approvals``, an
event (``approved`` / ``denied``) and the request's new status (``pending``, which the next
provisioning run applies, or ``denied``). A decision that cannot be taken (unknown request, not
awaiting approval, not an approver, self-approval, a policy that cannot be read) is refused
(exit 2) and recorded too, as a ``decision_refused`` event naming who tried and why; nothing
else changes.

Who may decide is the policy's ``approvers`` as of the latest sync (``governance.decisions``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from langsmith_access.governance.decisions import (
    AccessTermsRefused,
    Grantee,
    access_terms,
    approval_deadline,
    approver_refusal,
    needs_approval,
)
from langsmith_access.governance.notifications import Notifier
from langsmith_access.governance.policy import Policy, PolicyError, governing_policy
from langsmith_access.provisioning.queue import (
    AWAITING_APPROVAL,
    MAX_TEXT_CHARS,
    RequestRejected,
    approval_blocker,
    approvers_text,
    awaiting_approval_detail,
    check_text,
    fetch_requests,
    iso_minutes,
    new_id,
    now_utc,
    record_event,
    storable,
    terms_of,
)
from langsmith_access.settings import mask_keys
from langsmith_access.store import directory
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.queries import as_uuid, typed_email

APPROVED, DENIED = "approved", "denied"


# How a refusal for an id this org's queue does not hold begins (the CLI then looks in the others).
UNKNOWN_REQUEST = "unknown request id"


@dataclass(frozen=True)
class DecisionResult:
    request_id: str
    decision: str  # 'approved' | 'denied': what was asked
    recorded: bool  # False: refused (``message`` says why; the refusal is recorded as an event)
    message: str
    status: str | None = None  # the request's status afterwards (None: no such request)
    held_by: str | None = None  # an unknown id another org's queue holds: that org's slug


def decide(
    database: AccessDatabase,
    request_id: str,
    decision: str,
    by: str,
    comment: str | None = None,
    *,
    policy_path: Path | None = None,
    notifier: Notifier | None = None,
    lease_timeout_seconds: float = 600.0,
    holder_of: Callable[[str], str | None] | None = None,
) -> DecisionResult:
    """Approve or deny one request awaiting approval, under the writer lease. Publishes.
    ``holder_of``: as for ``decide_on``."""
    # The lease's purpose goes into the lock file and other processes' messages: the org's
    # secrets pasted as the id are cut from it, as from all decide_on records.
    named = (notifier or Notifier.off()).hidden(request_id) if isinstance(request_id, str) else request_id
    with database.writer_lease(f"record a decision on request {named}", timeout_seconds=lease_timeout_seconds):
        database.ensure_working()
        database.publish_pending()
        with database.connect() as conn:
            conn.execute("BEGIN")
            try:
                result = decide_on(conn, request_id, decision, by, comment, policy_path=policy_path,
                                   notifier=notifier, holder_of=holder_of)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        database.publish_committed(
            f"request {result.request_id} was {result.decision} ({result.status})" if result.recorded
            else f"the refused {'approval' if result.decision == APPROVED else 'denial'} of request "
            f"{result.request_id} was recorded", result)
    return result


def decide_on(
    conn: duckdb.DuckDBPyConnection,
    request_id: str,
    decision: str,
    by: str,
    comment: str | None = None,
    *,
    policy_path: Path | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    launched_by: str | None = None,
    holder_of: Callable[[str], str | None] | None = None,
) -> DecisionResult:
    """``decide`` on an open working-database connection (the caller holds the writer lease).
    ``run_id``: the Dagster run the decision was typed into (the Launchpad), kept on its events;
    ``launched_by``: who launched that run, as Dagster tags it. The launcher is the one deciding:
    a run launched by one person deciding as another (``by``) is refused. ``holder_of``: the slug
    of another org whose queue holds an id this one does not (None: none does)."""
    if decision not in (APPROVED, DENIED):
        raise ValueError(f"decision must be {APPROVED!r} or {DENIED!r}, got {decision!r}")
    at = now or now_utc()
    notifier = notifier or Notifier.off()
    # A key typed or pasted into a field is kept, echoed and recorded only as its prefix, and the
    # org's webhook URL (no key shape finds it) not at all, in the id and --by as in the comment.
    # (Python callers may pass anything: what is not text is refused below, as before.)
    request_id = notifier.hidden(mask_keys(request_id)) if isinstance(request_id, str) else request_id
    by = notifier.hidden(mask_keys(by)) if isinstance(by, str) else by
    comment = notifier.hidden(mask_keys(comment)) if isinstance(comment, str) else comment
    shown_id = storable(request_id.strip()) if isinstance(request_id, str) and request_id.strip() else "(none)"
    launcher = {"launched_by": mask_keys(launched_by)} if launched_by else {}

    def refuse(reason: str, status: str | None = None) -> DecisionResult:
        record_event(conn, shown_id[:200], "decision_refused",
                     {"decision": decision, "by": by if isinstance(by, str) else None, "reason": reason,
                      **launcher}, at=at, run_id=run_id)
        return DecisionResult(shown_id, decision, False, reason, status)

    try:
        request_id = check_text(request_id, "the request id")
        approver = check_text(by, "--by (the approver's email)")
        comment = check_text(comment, "--comment", required=False, limit=MAX_TEXT_CHARS)
    except RequestRejected as error:
        return refuse(str(error))
    # The queue writes ids as lower-case UUIDs: one typed in capitals (or braces) is the same request.
    request_id = shown_id = as_uuid(request_id) or request_id
    if "@" not in approver:
        return refuse(f"--by must be the approver's email as LangSmith knows it, got {approver!r}.")
    if launched_by and "@" in launched_by and typed_email(launched_by) != typed_email(approver):
        # Otherwise anyone who can launch the job decides in an approver's name, and the
        # requester or grantee approves their own request.
        return refuse(f"this run was launched by {launched_by.strip()}, who decides only as themself: set `by` "
                      f"to {launched_by.strip()}, or have {approver} launch it.")
    found = fetch_requests(conn, "request_id = ?", [request_id])
    if not found:
        unknown = (f"{UNKNOWN_REQUEST} {request_id}: `langsmith-access requests --status {AWAITING_APPROVAL}` "
                   "lists the requests awaiting a decision.")
        holder = holder_of(request_id) if holder_of is not None else None
        if holder is not None:
            # Another org's request, decided under the wrong org: refused without a record here,
            # or this org's audit would keep that org's request id and approver.
            return DecisionResult(shown_id, decision, False, unknown, held_by=holder)
        return refuse(unknown)
    request = found[0]
    status = request["status"]
    if status != AWAITING_APPROVAL:
        return refuse(_not_awaiting(request), status)
    if is_overdue(request, at):
        expire(conn, request, at, notifier)
        return refuse(f"request {request_id} {_why_expired(request, at)} and is now approval_expired: ask for it "
                      "again" + (" with a later --until." if _until_passed(request, at) else "."), "approval_expired")
    later = _overtaken_by(conn, request, at) if decision == APPROVED else None
    if later is not None:
        # The queue applies requests in the order they were asked: the request asked later is
        # the last word on this membership, and an approval would overturn it.
        return refuse(f"{later}: deny this one, and ask again if the access is still wanted.", status)
    try:
        policy = governing_policy(policy_path, conn)
    except PolicyError as error:
        return refuse(str(error), status)
    standing = directory.member_standing(conn, approver, request["workspace_id"])
    grantee = Grantee(request["user_id"], request["user_email"], request["requested_by"], request["workspace_name"])
    refusal = approver_refusal(policy, standing, grantee, approving=decision == APPROVED)
    if refusal is None and decision == APPROVED:
        refusal = _terms_refusal(policy, request, at)
    if refusal is not None:
        return refuse(refusal, status)

    conn.execute(
        "INSERT INTO main.provisioning_approvals (approval_id, request_id, decision, decided_by, decided_at, comment) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [new_id(), request_id, decision, approver, at, comment],
    )
    record_event(conn, request_id, decision, {"by": approver, "comment": comment, **launcher}, at=at, run_id=run_id)
    target = f"{request['role_name']} in {request['workspace_name']} for {request['user_email'] or request['user_id']}"
    if decision == APPROVED:
        conn.execute(
            "UPDATE main.provisioning_requests SET status = 'pending', approved_by = ?, approved_at = ?, "
            "status_detail = ?, updated_at = ? WHERE request_id = ?",
            [approver, at, f"approved by {approver}" + (f": {comment}" if comment else ""), at, request_id],
        )
        return DecisionResult(request_id, decision, True,
                              f"approved: {target} is pending; the next provisioning run applies it.", "pending")
    detail = f"denied by {approver}" + (f": {comment}" if comment else "")
    conn.execute(
        "UPDATE main.provisioning_requests SET status = 'denied', status_detail = ?, updated_at = ? "
        "WHERE request_id = ?",
        [detail, at, request_id],
    )
    notifier.notify(conn, "request.denied", at=at, request_id=request_id,
                    user=request["user_email"] or request["user_id"], workspace=request["workspace_name"],
                    role=request["role_name"], detail=detail)
    return DecisionResult(request_id, decision, True, f"denied: {target}.", "denied")


def _overtaken_by(conn: duckdb.DuckDBPyConnection, request: dict, at: datetime) -> str | None:
    """The request someone asked after the grant that an approval now would overturn, in words
    (naming it and its status), or None. In the order asked, the grant would have run first and
    the later request after it: a revoke of the grant's role (unless rejected: it changed
    nothing), or a grant of another role on the same membership that has taken effect and not
    yet ended (a pending one still runs after the approved grant, the last word as asked). An
    expiry revoke (of an earlier time-bound grant) is no one's word on this grant."""
    later = fetch_requests(
        conn, "user_id = ? AND workspace_id = ? AND request_seq > ? AND parent_request_id IS NULL AND ("
        "(action = 'revoke' AND role_id = ? AND status <> 'rejected') OR (action = 'grant' AND role_id <> ? "
        "AND status IN ('applied', 'already_satisfied', 'in_progress') AND coalesce(expires_at > ?, TRUE)))",
        [request["user_id"], request["workspace_id"], request["request_seq"], request["role_id"],
         request["role_id"], at],
    )
    if not later:
        return None
    first, whom = later[0], request["user_email"] or request["user_id"]
    if first["action"] == "revoke":
        what = f"a revoke of {request['role_name']} in {request['workspace_name']} for {whom}"
    else:
        what = f"a grant of {first['role_name']} in {request['workspace_name']} to {whom}"
    return f"{what} was asked after this grant (request {first['request_id']}, {first['status']})"


def _terms_refusal(policy: Policy, request: dict, at: datetime) -> str | None:
    """Why the policy as it is now would not give the request the terms it was queued with (the
    policy may have changed while it waited); None when it would."""
    reason = _terms_reason(policy, request, at)
    if reason is None:
        return None
    return (f"request {request['request_id']} asks for access {terms_of(request).describe()}, which the access "
            f"policy no longer allows ({reason}): deny it, and ask again within the policy.")


def _terms_reason(policy: Policy, request: dict, at: datetime) -> str | None:
    asked = terms_of(request)
    try:
        now_allowed = access_terms(policy, request["role_id"], request["role_name"] or request["role_id"], now=at,
                                   duration=asked.duration, until=asked.until)
    except AccessTermsRefused as error:
        return str(error)
    if asked.duration is not None or asked.until is not None or now_allowed.duration is None:
        return None
    return f"it has no end, and the policy now gives {request['role_name']} grants one: {now_allowed.describe()}"


def pending_grants(conn: duckdb.DuckDBPyConnection, request_ids: list[str] | None = None) -> list[dict]:
    """The grants no run has applied anything of yet (all, or those of ``request_ids``): pending
    ones, and those a run that died claimed but sent no write for (the next run takes them as it
    takes pending ones, ``queue.claim``; the caller holds the writer lease, so no live run holds
    them). What ``govern_pending_grants`` measures against the policy. One with a write out is
    not: LangSmith may have it already, and the run settles it from live state."""
    return fetch_requests(
        conn,
        "action = 'grant' AND (status = 'pending' OR (status = 'in_progress' AND NOT EXISTS (SELECT 1 FROM "
        "main.provisioning_events AS e WHERE e.request_id = provisioning_requests.request_id "
        "AND e.kind = 'write_sent'))) AND (? OR list_contains(?, request_id))",
        [request_ids is None, request_ids or []])


@dataclass(frozen=True)
class PolicyChange:
    """A pending grant that the access policy, as it is now, no longer lets through as queued."""

    request_id: str
    status: str  # rejected, or awaiting_approval
    detail: str


def govern_pending_grants(
    conn: duckdb.DuckDBPyConnection,
    now: datetime,
    policy_path: Path | None,
    notifier: Notifier | None = None,
    *,
    request_ids: list[str] | None = None,
    dry_run: bool = False,
    run_id: str | None = None,
) -> list[PolicyChange]:
    """The grants waiting in the queue (``pending_grants``: no run has written for them), or those of
    ``request_ids``, measured against the access policy as it is now, which may have changed
    since they were queued or approved: a run applies what the policy allows when it applies.

    One whose terms the policy no longer allows (a lower maximum, an end it now requires) is
    rejected, saying why (``request.failed``). One the policy now sends for approval, and
    nobody approved, waits for an approver, its deadline counted from now
    (``request.awaiting_approval``), or is rejected like the first when nobody could approve it
    (``approval_blocker``, as when a grant is queued). ``dry_run``: said, not done. Raises
    ``PolicyError`` when the policy cannot be read (nothing changed).
    """
    policy = governing_policy(policy_path, conn)
    changes = []
    for request in pending_grants(conn, request_ids):
        if request["access_until"] is not None and request["access_until"] <= now:
            continue  # its time has passed, whatever the policy: the run says so and applies nothing
        reason = _terms_reason(policy, request, now)
        if reason is not None:
            change = PolicyChange(request["request_id"], "rejected", mask_keys(
                f"the access policy changed since this grant was queued: it no longer allows access "
                f"{terms_of(request).describe()} ({reason}). Ask again within the policy."))
        elif request["approved_by"] is None and needs_approval(policy, request["role_id"], request["workspace_id"]):
            # As when queued: a grant nobody could approve is refused now, not left to expire.
            grantee = Grantee(request["user_id"], request["user_email"], request["requested_by"],
                              request["workspace_name"])
            blocker = approval_blocker(conn, policy, grantee, request["workspace_id"])
            if blocker is not None:
                change = PolicyChange(request["request_id"], "rejected", mask_keys(
                    f"the access policy changed since this grant was queued: it now needs approval, and {blocker}"))
            else:
                change = PolicyChange(request["request_id"], AWAITING_APPROVAL, (
                    f"the access policy changed since this grant was queued: it now needs approval by "
                    f"{approvers_text(policy, request['workspace_name'])}"))
        else:
            continue
        changes.append(change)
        if not dry_run:
            _record_policy_change(conn, request, change, policy, now, notifier or Notifier.off(), run_id)
    return changes


def _record_policy_change(conn: duckdb.DuckDBPyConnection, request: dict, change: PolicyChange, policy: Policy,
                          at: datetime, notifier: Notifier, run_id: str | None) -> None:
    fields = {"request_id": request["request_id"], "user": request["user_email"] or request["user_id"],
              "workspace": request["workspace_name"], "role": request["role_name"]}
    if change.status == "rejected":
        conn.execute(
            "UPDATE main.provisioning_requests SET status = 'rejected', status_detail = ?, updated_at = ? "
            "WHERE request_id = ?", [change.detail, at, request["request_id"]])
        record_event(conn, request["request_id"], "rejected", {"stage": "policy", "reason": change.detail},
                     at=at, run_id=run_id)
        notifier.notify(conn, "request.failed", at=at, **fields, detail=change.detail)
        return
    deadline = approval_deadline(policy, at)
    conn.execute(
        "UPDATE main.provisioning_requests SET status = ?, status_detail = ?, approval_deadline = ?, updated_at = ? "
        "WHERE request_id = ?", [AWAITING_APPROVAL, change.detail, deadline, at, request["request_id"]])
    approvers = approvers_text(policy, request["workspace_name"])
    record_event(conn, request["request_id"], "approval_requested",
                 {"approvers": approvers, "deadline": deadline, "policy_changed": True}, at=at, run_id=run_id)
    notifier.notify(conn, "request.awaiting_approval", at=at, **fields,
                    detail=awaiting_approval_detail(request["request_id"], approvers, deadline, notifier.org))


def _not_awaiting(request: dict) -> str:
    request_id, status = request["request_id"], request["status"]
    if request["approved_by"]:
        return (f"request {request_id} was already approved by {request['approved_by']} at "
                f"{iso_minutes(request['approved_at'])}; it is now {status}.")
    if status in ("denied", "approval_expired"):
        return f"request {request_id} is {status} ({request['status_detail']}): ask for it again."
    return (f"request {request_id} is {status}, not awaiting approval: only grants the access policy sends for "
            "approval wait for a decision.")


def _until_passed(request: dict, at: datetime) -> bool:
    """The end the grant asked for (``--until``) has come: approved now, it would give nothing."""
    return request["access_until"] is not None and request["access_until"] <= at


def is_overdue(request: dict, at: datetime) -> bool:
    """A request awaiting approval at ``at`` is over: its approval deadline, or the end of the
    access it asked for (``--until``), has come (with no ``wait_at_most`` only the latter ends it)."""
    deadline = request["approval_deadline"]
    return (deadline is not None and deadline <= at) or _until_passed(request, at)


def _ended_by_until(request: dict, at: datetime) -> bool:
    """An overdue request's --until came no later than its deadline: that is what ended it."""
    deadline = request["approval_deadline"]
    # In UTC: both come from DuckDB in the host's zone, and Python compares two times of one
    # ZoneInfo by the wall clock, wrong in the hour the clocks repeat.
    return _until_passed(request, at) and (
        deadline is None or request["access_until"].astimezone(UTC) <= deadline.astimezone(UTC))


def _why_expired(request: dict, at: datetime) -> str:
    if _ended_by_until(request, at):
        return f"asked for access until {iso_minutes(request['access_until'])}, which passed before it was approved,"
    return f"waited past its approval deadline ({iso_minutes(request['approval_deadline'])})"


def expire(conn: duckdb.DuckDBPyConnection, request: dict, at: datetime, notifier: Notifier) -> None:
    """End one request that waited past its approval deadline, or past the end it asked for."""
    deadline, until = request["approval_deadline"], request["access_until"]
    if _ended_by_until(request, at):
        detail = f"its requested end (--until {iso_minutes(until)}) passed before it was approved"
    else:
        detail = f"no decision before {iso_minutes(deadline)}"
    conn.execute(
        "UPDATE main.provisioning_requests SET status = 'approval_expired', status_detail = ?, updated_at = ? "
        "WHERE request_id = ? AND status = ?",
        [detail, at, request["request_id"], AWAITING_APPROVAL],
    )
    record_event(conn, request["request_id"], "approval_expired",
                 {"deadline": deadline, **({"access_until": until} if until is not None else {})}, at=at)
    notifier.notify(conn, "request.approval_expired", at=at, request_id=request["request_id"],
                    user=request["user_email"] or request["user_id"], workspace=request["workspace_name"],
                    role=request["role_name"], detail=detail)


def overdue_requests(conn: duckdb.DuckDBPyConnection, now: datetime) -> list[dict]:
    """The requests awaiting approval past their deadline, or past the end they asked for
    (``--until``), at ``now`` (read-only): ``is_overdue``."""
    return fetch_requests(conn, "status = ? AND (approval_deadline <= ? OR access_until <= ?)",
                          [AWAITING_APPROVAL, now, now])


def expire_overdue(conn: duckdb.DuckDBPyConnection, now: datetime, notifier: Notifier | None = None) -> list[str]:
    """Move every request awaiting approval past its deadline or its --until to ``approval_expired``; their ids.
    In one transaction (the caller holds the writer lease)."""
    overdue = overdue_requests(conn, now)
    if not overdue:
        return []
    conn.execute("BEGIN")
    try:
        for request in overdue:
            expire(conn, request, now, notifier or Notifier.off())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [r["request_id"] for r in overdue]
