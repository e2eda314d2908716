"""The rules ``expiry`` reads off the queue, on the queue alone, in memory: when a time-bound
grant is due (at its end, not before; a failed end again 5 minutes later), which grants are
warned of, which one extends another, and which later request took a grant over."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from langsmith_access.provisioning import queue
from langsmith_access.provisioning.expiry import (
    due_grants,
    extends_a_time_bound_grant,
    queue_due_expiries,
    successor,
    to_warn,
)
from langsmith_access.store.schema import ensure_schema

ENDS = datetime(2026, 1, 1, 12, tzinfo=UTC)
EDITOR, ADMIN = "role-editor", "role-admin"
TICK = timedelta(microseconds=1)


@pytest.fixture
def conn():
    conn = duckdb.connect()
    ensure_schema(conn)
    yield conn
    conn.close()


def insert(conn, status, updated_at, **columns) -> dict:
    """One request of Ada's membership of one workspace; the row as the queue reads it."""
    request_id = queue.new_id()
    values = {"request_id": request_id, "action": "grant", "user_id": "ada", "workspace_id": "ws",
              "role_id": EDITOR, "status": status, "requested_at": updated_at, "updated_at": updated_at, **columns}
    conn.execute(f"INSERT INTO main.provisioning_requests ({', '.join(values)}) "
                 f"VALUES ({', '.join('?' for _ in values)})", list(values.values()))
    [row] = queue.fetch_requests(conn, "request_id = ?", [request_id])
    return row


def due(conn, at) -> list[str]:
    return [g["request_id"] for g in due_grants(conn, at)]


def test_a_grant_is_due_at_its_end_not_before_and_a_failed_end_again_five_minutes_later(conn):
    grant = insert(conn, "applied", ENDS - timedelta(hours=1), expires_at=ENDS)["request_id"]
    assert due(conn, ENDS - TICK) == [] and due(conn, ENDS) == [grant]

    # Queued at the end, failed a minute later: the wait counts from the failure.
    failed_at = ENDS + timedelta(minutes=1)
    insert(conn, "failed", failed_at, action="revoke", parent_request_id=grant, requested_at=ENDS)
    assert due(conn, failed_at + timedelta(minutes=5) - TICK) == []
    assert due(conn, failed_at + timedelta(minutes=5)) == [grant]


def test_the_revoke_queued_for_a_grants_end_is_the_systems_asked_when_queued_and_named_by_the_grant(conn):
    # DESIGN.md section 10: the revoke is requested_by 'langsmith-access', reason 'expired',
    # parent_request_id the grant; a run that comes after the end queues it then (its
    # requested_at is when it was asked, not the end), and the grant's expiry_queued event names it.
    grant = insert(conn, "applied", ENDS - timedelta(hours=8), expires_at=ENDS, user_email="ada@example.com",
                   workspace_name="Platform", role_name="Editor")
    queued_at = ENDS + timedelta(minutes=7)

    [revoke_id] = queue_due_expiries(conn, queued_at)

    [revoke] = queue.fetch_requests(conn, "request_id = ?", [revoke_id])
    assert {k: revoke[k] for k in ("action", "user_id", "user_email", "workspace_id", "workspace_name", "role_id",
                                   "role_name", "status", "requested_by", "reason", "parent_request_id")} == {
        "action": "revoke", "user_id": "ada", "user_email": "ada@example.com", "workspace_id": "ws",
        "workspace_name": "Platform", "role_id": EDITOR, "role_name": "Editor", "status": "pending",
        "requested_by": "langsmith-access", "reason": "expired", "parent_request_id": grant["request_id"]}
    assert revoke["requested_at"] == queued_at and revoke["updated_at"] == queued_at
    [(kind, detail)] = conn.execute("SELECT kind, detail FROM main.provisioning_events WHERE request_id = ?",
                                    [grant["request_id"]]).fetchall()
    detail = json.loads(detail)
    assert (kind, detail["revoke_request_id"]) == ("expiry_queued", revoke_id), detail
    assert datetime.fromisoformat(detail["expires_at"]) == ENDS, detail
    assert queue_due_expiries(conn, queued_at + timedelta(days=1)) == []  # one revoke per grant


def test_a_time_bound_grant_found_already_satisfied_is_due_at_its_end(conn):
    # It extended a time-bound grant of its role: its own end is queued too.
    extension = insert(conn, "already_satisfied", ENDS - timedelta(hours=1), expires_at=ENDS, prior_role_id=EDITOR)
    assert due(conn, ENDS) == [extension["request_id"]]


def test_a_grant_ending_now_is_due_not_warned_of(conn):
    grant = insert(conn, "applied", ENDS - timedelta(hours=8), expires_at=ENDS)
    assert [g["request_id"] for g in to_warn(conn, ENDS - timedelta(hours=1), timedelta(hours=2))] == [
        grant["request_id"]]
    assert to_warn(conn, ENDS, timedelta(hours=2)) == []


def test_the_end_of_a_grant_that_extended_a_longer_one_is_not_warned_of(conn):
    # Editor for 8 hours (it added Ada), then Editor for 1 hour (found her Editor already): the
    # hour's end changes nothing, as the first grant holds on; the first's end is warned of.
    first = insert(conn, "applied", ENDS - timedelta(hours=8), expires_at=ENDS + timedelta(hours=7))
    insert(conn, "already_satisfied", ENDS - timedelta(hours=7), expires_at=ENDS, prior_role_id=EDITOR)
    assert to_warn(conn, ENDS - timedelta(minutes=30), timedelta(hours=1)) == []
    assert [g["request_id"] for g in to_warn(conn, ENDS, timedelta(hours=8))] == [first["request_id"]]


def test_only_a_grant_of_the_role_with_an_end_is_extended(conn):
    asked = insert(conn, "pending", ENDS, expires_at=None)
    insert(conn, "applied", ENDS - timedelta(hours=2), expires_at=None)  # Editor with no end
    insert(conn, "applied", ENDS - timedelta(hours=1), role_id=ADMIN, expires_at=ENDS + timedelta(hours=1))
    assert not extends_a_time_bound_grant(conn, asked)
    insert(conn, "applied", ENDS - timedelta(minutes=30), expires_at=ENDS + timedelta(hours=1))
    assert extends_a_time_bound_grant(conn, asked)


def test_a_grant_is_not_its_own_successor_and_one_settled_with_it_later_in_the_queue_is(conn):
    # One batch settles in queue order at one time: the later request in the queue came after.
    first = insert(conn, "applied", ENDS)
    assert successor(conn, first) is None
    second = insert(conn, "applied", ENDS, role_id=ADMIN)
    assert successor(conn, first)["request_id"] == second["request_id"]
    assert successor(conn, second) is None


def test_a_later_grant_whose_own_end_found_nothing_to_undo_took_nothing_over(conn):
    # Editor, then Admin for an hour; Admin's end found the membership changed by hand and
    # left it alone (already_satisfied): Admin is not in force, so nothing took Editor over.
    first = insert(conn, "applied", ENDS - timedelta(hours=2))
    admin = insert(conn, "applied", ENDS - timedelta(hours=1), role_id=ADMIN, expires_at=ENDS, prior_role_id=EDITOR)
    assert successor(conn, first)["request_id"] == admin["request_id"]
    insert(conn, "already_satisfied", ENDS + timedelta(minutes=1), action="revoke", role_id=ADMIN,
           parent_request_id=admin["request_id"])
    assert successor(conn, first) is None


def test_requests_on_the_members_other_workspaces_are_not_this_memberships(conn):
    # Ada's Editor in ws, ending; later grants of hers in ws-2 (an Editor one, taken over there
    # by Admin) take nothing over and extend nothing here: her Editor in ws ends, warned of.
    grant = insert(conn, "applied", ENDS - timedelta(hours=3), expires_at=ENDS)
    insert(conn, "applied", ENDS - timedelta(hours=2), workspace_id="ws-2", expires_at=ENDS + TICK)
    insert(conn, "applied", ENDS - timedelta(hours=1), workspace_id="ws-2", role_id=ADMIN)
    assert successor(conn, grant) is None
    assert [g["request_id"] for g in to_warn(conn, ENDS - timedelta(hours=1), timedelta(hours=2))] == [
        grant["request_id"]]
    found = insert(conn, "already_satisfied", ENDS - timedelta(minutes=30), workspace_id="ws-3", expires_at=ENDS)
    assert not extends_a_time_bound_grant(conn, found)


def test_a_grant_whose_write_left_no_known_identity_is_extended_whatever_identity_the_role_is_found_through(conn):
    # Editor for an hour applied with no verified write on record (found already given, or by a
    # release from before the observations): which membership it left is not known, so a later
    # grant finding Editor through some identity extends it rather than taking it for one made by hand.
    insert(conn, "applied", ENDS - timedelta(hours=1), expires_at=ENDS)
    asked = insert(conn, "already_satisfied", ENDS - timedelta(minutes=30), expires_at=ENDS + timedelta(hours=1))
    assert extends_a_time_bound_grant(conn, asked, found_identity_id="identity-found")


def test_a_membership_a_grant_only_found_is_not_one_a_grant_left(conn):
    # Editor for 8h wrote identity "granted"; someone removed Ada and added her again by hand
    # ("by-hand"), and a grant for 1h then found Editor there (observed 'found', not written).
    # A grant finding Editor through "by-hand" finds the hand-made membership: nothing to extend.
    written = insert(conn, "applied", ENDS - timedelta(hours=8), expires_at=ENDS + timedelta(hours=7))
    found = insert(conn, "already_satisfied", ENDS - timedelta(hours=2), expires_at=ENDS)
    for request, identity, observed in ((written, "granted", "verified"), (found, "by-hand", "found")):
        conn.execute("INSERT INTO raw.provisioning_observations (observation_id, request_id, workspace_id, "
                     "ls_user_id, role_id, workspace_identity_id, observed) VALUES (?, ?, 'ws', 'ada', ?, ?, ?)",
                     [queue.new_id(), request["request_id"], EDITOR, identity, observed])
    asked = insert(conn, "already_satisfied", ENDS - timedelta(hours=1), expires_at=ENDS + timedelta(hours=1))
    assert not extends_a_time_bound_grant(conn, asked, found_identity_id="by-hand")
    assert extends_a_time_bound_grant(conn, asked, found_identity_id="granted")
