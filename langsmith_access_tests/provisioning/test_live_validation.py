"""The executor on its own (no Dagster, no sync, no dbt): a queue in an in-memory DuckDB, the
sandbox serving a generated org. What live validation refuses, and how often a write is tried."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from langsmith_access.provisioning import queue
from langsmith_access.provisioning.executor import MAX_WRITE_ATTEMPTS, Provisioner
from langsmith_access.sandbox import SandboxServer
from langsmith_access.sandbox.routing import ApiResponse
from langsmith_access.store.schema import ensure_schema
from langsmith_access_tests.langsmith.sandbox_client_support import client_for, wrap_respond
from langsmith_access_tests.synced import API_KEY, WRITES, new_org


@pytest.fixture
def live():
    """The generated org served by the sandbox, and an empty queue."""
    org = new_org()
    conn = duckdb.connect()
    ensure_schema(conn)
    with SandboxServer(org, api_key=API_KEY) as sandbox:
        yield sandbox, org, conn
    conn.close()


def queued(conn, action, member, workspace, role, **columns) -> dict:
    """A pending request, as ``queue.claim`` hands it to the executor."""
    request_id = queue.new_id()
    values = {"request_id": request_id, "action": action, "user_id": member.ls_user_id, "user_email": member.email,
              "workspace_id": workspace.id, "workspace_name": workspace.display_name, "role_id": role.id,
              "role_name": role.display_name, "status": "pending", "requested_at": queue.now_utc(),
              "updated_at": queue.now_utc(), **columns}
    conn.execute(f"INSERT INTO main.provisioning_requests ({', '.join(values)}) "
                 f"VALUES ({', '.join('?' for _ in values)})", list(values.values()))
    [request] = queue.fetch_requests(conn, "request_id = ?", [request_id])
    return request


def provision(sandbox, conn, *requests):
    provisioner = Provisioner(client_for(sandbox), conn, run_id="run-1")
    return {o.request_id: o for o in provisioner.process_all(list(requests))}


def writes(sandbox):
    return [r for r in sandbox.request_log.snapshot() if r.method in WRITES]


def outsider_and_workspace(org):
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members()
                    if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    return outsider, workspace


def workspace_role(org, display_name):
    return next(r for r in org.roles_by_scope("workspace") if r.display_name == display_name)


def status_of(conn, request_id):
    return conn.execute("SELECT status, status_detail FROM main.provisioning_requests WHERE request_id = ?",
                        [request_id]).fetchone()


@pytest.mark.parametrize("change, says", [
    ("role deleted", "no longer exists in LangSmith"),
    ("organization role", "is an organization role: read-only here"),
    ("workspace deleted", "is deleted now"),
    ("personal workspace", "is personal now"),
    ("member left", "is not an active org member any more"),
])
def test_what_changed_in_langsmith_since_queuing_is_rejected_live_and_nothing_is_written(live, change, says):
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    role = workspace_role(org, "Viewer")
    if change == "role deleted":
        request = queued(conn, "grant", member, workspace, role)
        del org.roles[role.id]
    elif change == "organization role":
        request = queued(conn, "grant", member, workspace, next(iter(org.roles_by_scope("organization"))))
    elif change == "workspace deleted":
        request = queued(conn, "grant", member, workspace, role)
        org.delete_workspace(workspace.id)
    elif change == "personal workspace":
        personal = next(w for w in org.all_workspaces() if w.is_personal and not w.is_deleted)
        request = queued(conn, "grant", member, personal, role)
    else:
        request = queued(conn, "grant", member, workspace, role)
        org.remove_member(member.ls_user_id)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "rejected" and says in outcome.detail, outcome
    assert writes(sandbox) == []
    assert status_of(conn, request["request_id"]) == ("rejected", outcome.detail)


@pytest.mark.parametrize("status, recorded", [(409, "write_conflict"), (502, "write_uncertain")])
def test_a_write_refused_or_unanswered_every_time_is_re_read_then_tried_at_most_max_write_attempts_times(
        live, status, recorded):
    """A conflict, or a 502 (the write may have been applied), is re-read and planned again before
    the write goes out again; after ``MAX_WRITE_ATTEMPTS`` the request fails (it is not an
    outage that leaves it unsettled). Each write's ``write_sent`` is committed before it goes out."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    committed_before_each_write = []

    def refuse_writes(respond, r):
        if r.method not in WRITES:
            return respond(r)
        committed_before_each_write.append(conn.cursor().execute(
            "SELECT count(*) FROM main.provisioning_events WHERE request_id = ? AND kind = 'write_sent'",
            [request["request_id"]]).fetchone()[0])
        return ApiResponse(status, {"detail": "no"})

    wrap_respond(sandbox, refuse_writes)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "failed", outcome
    assert status_of(conn, request["request_id"])[0] == "failed"
    assert len(writes(sandbox)) == MAX_WRITE_ATTEMPTS == 3
    assert committed_before_each_write == [1, 2, 3]
    methods = [r.method for r in sandbox.request_log.snapshot() if "/workspaces/current/members" in r.path]
    assert methods == ["GET", "POST"] * 3  # read live before every write
    kinds = [k for (k,) in conn.execute("SELECT kind FROM main.provisioning_events WHERE request_id = ? "
                                        'ORDER BY "at"', [request["request_id"]]).fetchall()]
    assert kinds.count("write_sent") == kinds.count(recorded) == 3


def test_a_grant_past_its_until_whose_earlier_write_did_not_take_is_not_written_again(live):
    """A run that died sent the write; it did not take, and the grant's --until has passed since:
    the next run settles it from live state and sends nothing (it would give access already over)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"), status="in_progress",
                     access_until=queue.now_utc() - timedelta(minutes=5))
    queue.record_event(conn, request["request_id"], "write_sent", {"method": "POST"},
                       at=queue.now_utc() - timedelta(minutes=10), run_id="dead-run")

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "rejected" and "has passed: nothing applied" in outcome.detail, outcome
    assert writes(sandbox) == []
    assert member.ls_user_id not in workspace.memberships


@pytest.mark.parametrize("earlier_ends", [True, False])
def test_a_grant_already_satisfied_extends_only_a_time_bound_grant_and_ends_by_undoing_nothing(live, earlier_ends):
    """The member holds the role through an earlier grant in force. Asked again for 30 days,
    it is already satisfied: it extends a time-bound grant to its own end, and never puts an
    end on a grant that had none; either way its end gives back the role itself (prior role)."""
    sandbox, org, conn = live
    workspace = org.shared_workspaces()[0]
    member_id, membership = next(iter(workspace.memberships.items()))
    member, role = org.members[member_id], org.role(membership.role_id)
    now = queue.now_utc()
    queued(conn, "grant", member, workspace, role, status="applied", prior_role_id=None,
           updated_at=now - timedelta(hours=1), expires_at=now + timedelta(hours=1) if earlier_ends else None)
    request = queued(conn, "grant", member, workspace, role, access_duration_seconds=30 * 24 * 3600)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "already_satisfied", outcome
    [(prior, expires_at)] = conn.execute("SELECT prior_role_id, expires_at FROM main.provisioning_requests "
                                         "WHERE request_id = ?", [request["request_id"]]).fetchall()
    assert prior == role.id
    if earlier_ends:
        assert now + timedelta(days=30) <= expires_at <= queue.now_utc() + timedelta(days=30)
    else:
        assert expires_at is None
    assert writes(sandbox) == []
