"""Time-bound grants: warn before they end, and queue the revoke that ends them.

A grant applied with terms (``--duration``, ``--until``, or the policy's default or max) has an
``expires_at``. When it is due, ``queue_due_expiries`` queues one revoke for it, as the system
(``requested_by = 'langsmith-access'``, ``reason = 'expired'``, ``parent_request_id`` = the
grant), in the same transaction as the grant's ``expiry_queued`` event; the revoke is then
applied like any other request. A grant gets at most one such revoke (one whose
``parent_request_id`` names it stops another), so a crash between queuing and applying loses
nothing and revokes once.

The revoke undoes only what the grant did (``planner.plan_expiry``): the executor reads the
grant's ``prior_role_id`` (recorded when it was applied) to know whether to remove the member or
restore the role they had.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning.queue import (
    EXPIRED_REASON,
    SYSTEM_REQUESTER,
    fetch_requests,
    iso_minutes,
    new_id,
    record_event,
)

# Grants whose access may end: applied, time-bound, and not yet given their expiry revoke.
_LIVE_TIME_BOUND = (
    "action = 'grant' AND status = 'applied' AND expires_at IS NOT NULL AND parent_request_id IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM main.provisioning_requests AS child "
    "WHERE child.parent_request_id = provisioning_requests.request_id)"
)
# Of those, the ones ending within (?, ?] that were not warned about yet.
_TO_WARN = (
    f"{_LIVE_TIME_BOUND} AND expires_at > ? AND expires_at <= ? AND NOT EXISTS (SELECT 1 FROM "
    "main.provisioning_events AS e WHERE e.request_id = provisioning_requests.request_id "
    "AND e.kind = 'expiry_warned')"
)


def queue_due_expiries(conn: duckdb.DuckDBPyConnection, now: datetime) -> list[str]:
    """Queue the revoke of every time-bound grant due at ``now``; the revokes' ids. One
    transaction (the caller holds the writer lease)."""
    due = fetch_requests(conn, f"{_LIVE_TIME_BOUND} AND expires_at <= ?", [now])
    if not due:
        return []
    revokes = []
    conn.execute("BEGIN")
    try:
        for grant in due:
            revoke_id = new_id()
            conn.execute(
                "INSERT INTO main.provisioning_requests (request_id, action, user_id, user_email, workspace_id, "
                "workspace_name, role_id, role_name, status, reason, requested_by, requested_at, updated_at, "
                "requested_user, requested_workspace, requested_role, parent_request_id) "
                "VALUES (?, 'revoke', ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                [revoke_id, grant["user_id"], grant["user_email"], grant["workspace_id"], grant["workspace_name"],
                 grant["role_id"], grant["role_name"], EXPIRED_REASON, SYSTEM_REQUESTER, now, now,
                 grant["user_id"], grant["workspace_id"], grant["role_id"], grant["request_id"]],
            )
            record_event(conn, grant["request_id"], "expiry_queued",
                         {"revoke_request_id": revoke_id, "expires_at": grant["expires_at"]}, at=now)
            record_event(conn, revoke_id, "queued",
                         {"action": "revoke", "user_id": grant["user_id"], "workspace_id": grant["workspace_id"],
                          "role_id": grant["role_id"], "parent_request_id": grant["request_id"]}, at=now)
            revokes.append(revoke_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return revokes


def warn_expiring(
    conn: duckdb.DuckDBPyConnection, now: datetime, warning: timedelta, notifier: Notifier
) -> list[str]:
    """Send ``access.expiring`` once for every time-bound grant ending within ``warning`` of
    ``now`` (an ``expiry_warned`` event marks it sent); the grants' ids. Nothing without a
    webhook."""
    if not notifier.enabled:
        return []
    soon = fetch_requests(
        conn,
        _TO_WARN,
        [now, now + warning],
    )
    if not soon:
        return []
    conn.execute("BEGIN")
    try:
        for grant in soon:
            record_event(conn, grant["request_id"], "expiry_warned", {"expires_at": grant["expires_at"]}, at=now)
            notifier.notify(conn, "access.expiring", at=now, request_id=grant["request_id"],
                            user=grant["user_email"] or grant["user_id"], workspace=grant["workspace_name"],
                            role=grant["role_name"], detail=f"expires at {iso_minutes(grant['expires_at'])}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [g["request_id"] for g in soon]


def expiry_work_due(conn: duckdb.DuckDBPyConnection, now: datetime, warning: timedelta | None) -> list[str]:
    """Ids of what a provisioning run would act on before taking the queue (read-only): grants
    due to expire, requests past their approval deadline, and (``warning`` given) grants to warn
    about. Empty before anything was queued."""
    columns = {name for (name,) in conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = 'provisioning_requests'").fetchall()}
    if "expires_at" not in columns:  # never queued, or a copy from before access governance
        return []
    due = [r["request_id"] for r in fetch_requests(conn, f"{_LIVE_TIME_BOUND} AND expires_at <= ?", [now])]
    due += [r["request_id"] for r in fetch_requests(
        conn, "status = 'awaiting_approval' AND approval_deadline <= ?", [now])]
    if warning is not None:
        due += [r["request_id"] for r in fetch_requests(
            conn,
            _TO_WARN,
            [now, now + warning],
        )]
    return due
