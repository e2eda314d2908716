"""The executor on its own (no Dagster, no sync, no dbt): a queue in an in-memory DuckDB, the
sandbox serving a generated org. What live validation refuses, how often a write is tried, and
what a run records and decides when a write is refused or lost, or a run died after its write."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from langsmith_access.governance.notifications import Notifier
from langsmith_access.langsmith import LangSmithClient
from langsmith_access.langsmith.errors import LangSmithError, PermissionDeniedError, TransientError
from langsmith_access.provisioning import executor, queue
from langsmith_access.provisioning.executor import (
    ADMIN_ACCESS_REMAINS,
    MAX_WRITE_ATTEMPTS,
    ORG_LISTING_PATH,
    ORG_MEMBER_LOOKUP_PATH,
    SCIM_WARNING,
    SOMEONE_ELSE_MADE_IT_SO,
    VERIFICATION_FIX,
    WORKSPACE_MEMBERS_PATH,
    OrgSnapshot,
    Provisioner,
)
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.routing import ApiResponse
from langsmith_access.store.raw_tables import RAW_SCHEMA
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


def provision(sandbox, conn, *requests, **options):
    provisioner = Provisioner(client_for(sandbox), conn, run_id="run-1", **options)
    return {o.request_id: o for o in provisioner.process_all(list(requests))}


def writes(sandbox):
    return [r for r in sandbox.request_log.snapshot() if r.method in WRITES]


def outsiders(org, workspace):
    """The enabled members who hold no role in ``workspace``."""
    return [m for m in org.active_members() if m.ls_user_id not in workspace.memberships and not m.is_disabled]


def outsider_and_workspace(org):
    workspace = org.shared_workspaces()[0]
    return outsiders(org, workspace)[0], workspace


def workspace_role(org, display_name):
    return next(r for r in org.roles_by_scope("workspace") if r.display_name == display_name)


def sent_by_a_dead_run(conn, request, **payload):
    """The ``write_sent`` event a run that died ten minutes ago left for ``request``."""
    queue.record_event(conn, request["request_id"], "write_sent", {"method": "POST", **payload},
                       at=queue.now_utc() - timedelta(minutes=10), run_id="dead-run")


def holder_and_workspace(org):
    """An enabled member of the first shared workspace, that workspace, and the role they hold there."""
    workspace = org.shared_workspaces()[0]
    held = next(m for m in workspace.memberships.values() if not org.members[m.ls_user_id].is_disabled)
    return org.members[held.ls_user_id], workspace, held.role_id


def roles_other_than(org, role_id, names=("Viewer", "Editor", "Admin")):
    """The workspace roles named ``names``, in that order, but the one ``role_id``."""
    return [role for role in (workspace_role(org, name) for name in names) if role.id != role_id]


def grants_showing(conn, member, workspace, role_id):
    """``main.grants`` as the last dbt build left it: ``member`` holds ``role_id`` in ``workspace``
    (None: no role there)."""
    conn.execute("CREATE TABLE main.grants AS SELECT * FROM (SELECT ? AS user_id, ? AS workspace_id, "
                 "'workspace_role' AS entitlement_type, CAST(? AS VARCHAR) AS role_id) WHERE role_id IS NOT NULL",
                 [member.ls_user_id, workspace.id, role_id])


def down_after_writes(sandbox, writes_answered):
    """LangSmith answers 503 to every request after ``writes_answered`` answered writes. Returns the
    list of (method, path) it then leaves unanswered, filled as they come."""
    answered_writes, unanswered = [], []

    def down_after_the_writes(respond, r):
        if len(answered_writes) == writes_answered:
            unanswered.append((r.method, r.path))
            return ApiResponse(503, {"detail": "Service Unavailable"})
        response = respond(r)
        if r.method in WRITES:
            answered_writes.append(r.path)
        return response

    wrap_respond(sandbox, down_after_the_writes)
    return unanswered


def lost(respond, r):
    """A write that never reached LangSmith: nothing applied, and a 502 for an answer."""
    return ApiResponse(502, {"detail": "bad gateway"})


def applied_answer_lost(respond, r):
    """A write LangSmith applied, whose answer was lost all the same (a 502)."""
    respond(r)
    return ApiResponse(502, {"detail": "bad gateway"})


def conflict(respond, r):
    """A write LangSmith refused (409): nothing applied."""
    return ApiResponse(409, {"detail": "conflict"})


def added_just_before(org, workspace, member, role):
    """An answer for ``answer_writes``: someone gives ``member`` ``role`` in ``workspace`` just
    before LangSmith takes the write (which then finds the change made: a 409 for an add)."""

    def answer(respond, r):
        org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=role.id)
        return respond(r)
    return answer


def removed_just_before(org, workspace, member):
    """An answer for ``answer_writes``: someone removes ``member`` from ``workspace`` just before
    LangSmith takes the write (which then finds no such membership: a 404 for a role change or
    a removal)."""

    def answer(respond, r):
        org.remove_workspace_membership(workspace.id, member.ls_user_id)
        return respond(r)
    return answer


def answer_writes(sandbox, *answers):
    """From now on the sandbox answers its writes in order with ``answers`` (each
    ``answer(respond, request)``); the writes after those, and every read, as LangSmith does.
    Returns the writes' methods, filled as they come."""
    sent = []

    def in_order(respond, r):
        if r.method not in WRITES:
            return respond(r)
        sent.append(r.method)
        return answers[len(sent) - 1](respond, r) if len(sent) <= len(answers) else respond(r)

    wrap_respond(sandbox, in_order)
    return sent


def status_of(conn, request_id):
    return conn.execute("SELECT status, status_detail FROM main.provisioning_requests WHERE request_id = ?",
                        [request_id]).fetchone()


@pytest.mark.parametrize("change, says", [
    ("role deleted", "role Viewer no longer exists in LangSmith"),
    ("organization role", "is an organization role: read-only here"),
    ("workspace deleted", "is deleted now"),
    ("workspace gone", "no longer exists in LangSmith"),
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
    elif change == "workspace gone":  # not even listed as deleted: purged, or out of the key's sight
        request = queued(conn, "grant", member, workspace, role)
        del org.workspaces[workspace.id]
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
    if change == "member left":  # the audit says why: the lookup found no such member
        assert dict(events(conn, request["request_id"]))["validated_live"]["org_member"] is False


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
    [settled, detail] = status_of(conn, request["request_id"])
    assert settled == "failed"
    # The cause and the fix (DESIGN.md: status_detail holds the fix when a request failed).
    assert detail.endswith(f". Fix: {LangSmithError.fix}" if status == 409 else
                           f". Fix: {TransientError.maybe_applied_fix}"), detail
    assert len(writes(sandbox)) == MAX_WRITE_ATTEMPTS == 3
    assert committed_before_each_write == [1, 2, 3]
    methods = [r.method for r in sandbox.request_log.snapshot() if "/workspaces/current/members" in r.path]
    # Read live before every write; the last 502 may have been applied all the same, and the last
    # conflict may be someone making the change asked for: read back.
    assert methods == ["GET", "POST"] * 3 + ["GET"]
    kinds = [k for (k,) in conn.execute("SELECT kind FROM main.provisioning_events WHERE request_id = ? "
                                        'ORDER BY "at"', [request["request_id"]]).fetchall()]
    assert kinds.count("write_sent") == kinds.count(recorded) == 3
    # Each refused or unanswered write's event says what LangSmith answered.
    assert all(str(status) in d["error"] for kind, d in events(conn, request["request_id"]) if kind == recorded)
    # Each plan names the attempt it was made for, so the audit tells the tries apart.
    assert [d["attempt"] for kind, d in events(conn, request["request_id"]) if kind == "planned"] == [1, 2, 3]


def test_a_last_write_whose_answer_was_lost_is_read_back_before_the_request_is_called_failed(live):
    """The last write LangSmith answered 502 may have been applied all the same: the request is
    settled from a read of the membership, never called failed on the lost answer alone."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    role = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, role)
    sent = answer_writes(sandbox, *[lost] * (MAX_WRITE_ATTEMPTS - 1), applied_answer_lost)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert outcome.writes == MAX_WRITE_ATTEMPTS == len(sent)
    assert status_of(conn, request["request_id"])[0] == "applied"
    assert org.membership(workspace.id, member.ls_user_id).role_id == role.id
    assert [role_id for role_id, *_ in observations(conn, request["request_id"])] == [role.id]


def test_a_grant_past_its_until_whose_earlier_write_did_not_take_is_not_written_again(live):
    """A run that died sent the write; it did not take, and the grant's --until has passed since:
    the next run settles it from live state and sends nothing (it would give access already over)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"), status="in_progress",
                     access_until=queue.now_utc() - timedelta(minutes=5))
    sent_by_a_dead_run(conn, request)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "rejected" and "has passed: nothing applied" in outcome.detail, outcome
    assert writes(sandbox) == []
    assert member.ls_user_id not in workspace.memberships


def test_a_grant_past_its_until_whose_earlier_write_took_is_settled_applied_and_ends_at_its_until(live):
    """A run that died sent the write, and it took; the grant's --until has passed since. The
    member holds the role because of that write: the next run settles it applied (never
    'rejected', which would leave the role held with no end) and the grant ends at its --until,
    so its end is queued at once."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    until = queue.now_utc() - timedelta(minutes=5)
    request = queued(conn, "grant", member, workspace, viewer, status="in_progress", access_until=until)
    sent_by_a_dead_run(conn, request, plan="add")
    identity = org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=viewer.id).id

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert writes(sandbox) == []
    assert conn.execute("SELECT status, prior_role_id, expires_at FROM main.provisioning_requests "
                        "WHERE request_id = ?", [request["request_id"]]).fetchone() == ("applied", None, until)
    assert observations(conn, request["request_id"]) == [(viewer.id, identity, "verified")]


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


# ------------------------------------------------------------------ details of the closed loop
#
# What a run records and decides beyond the happy path: which read answered (the org listing of
# a big batch, or a read per request), a write refused or lost on its first try, a run that died
# after its write, and the notification each outcome raises.


def provision_by_listing(sandbox, conn, *requests, **options):
    """As a batch of MIN_REQUESTS_FOR_ORG_LISTING or more is provisioned: one listing of the
    whole org before the first write (and one after the last)."""
    client = client_for(sandbox)
    provisioner = Provisioner(client, conn, run_id="run-1", snapshot=OrgSnapshot.read(client), **options)
    return {o.request_id: o for o in provisioner.process_all(list(requests))}


def events(conn, request_id) -> list[tuple[str, dict]]:
    return [(kind, json.loads(detail)) for kind, detail in conn.execute(
        'SELECT kind, detail FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"',
        [request_id]).fetchall()]


def scim_provisioned(member) -> bool:
    return any(m.provisioning_method == "scim" for m in member.linked_login_methods)


def observations(conn, request_id):
    return conn.execute("SELECT role_id, workspace_identity_id, observed FROM raw.provisioning_observations "
                        "WHERE request_id = ? ORDER BY verified_at", [request_id]).fetchall()


def roles_observed(conn, request_id) -> list[tuple[str | None, str]]:
    """Each observation of a request as (role, how it was observed), in order: what a hand change
    found on the way and the request's own verified write look like side by side."""
    return [(role_id, observed) for role_id, _, observed in observations(conn, request_id)]


@pytest.mark.parametrize("read", ["org listing", "member lookup"])
def test_each_read_is_audited_as_the_read_it_was_and_the_verified_identity_is_recorded(live, read):
    """A big batch validates and reads through the org listing, a small one per request: each
    event names the route that answered. Either way the member's new workspace identity is what
    the grant's end later checks it still removes the membership the grant made."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))

    outcome = (provision_by_listing if read == "org listing" else provision)(sandbox, conn, request)[
        request["request_id"]]

    assert outcome.status == "applied", outcome
    identity = org.membership(workspace.id, member.ls_user_id).id
    assert observations(conn, request["request_id"]) == [(request["role_id"], identity, "verified")]
    audit = dict(events(conn, request["request_id"]))
    listing = read == "org listing"
    assert audit["validated_live"]["source"] == read
    assert (audit["validated_live"]["role"], audit["validated_live"]["workspace"]) == ("Viewer", workspace.display_name)
    assert audit["validated_live"]["path"] == (ORG_LISTING_PATH if listing else ORG_MEMBER_LOOKUP_PATH)
    assert audit["read_live"] == {"method": "GET", "path": ORG_LISTING_PATH if listing else WORKSPACE_MEMBERS_PATH,
                                  "status_code": 200, "workspace_id": workspace.id, "member": False,
                                  "role_id": None}
    assert audit["verified"]["path"] == (ORG_LISTING_PATH if listing else WORKSPACE_MEMBERS_PATH)
    assert audit["verified"]["member"] is True and audit["verified"]["role_id"] == request["role_id"]


def test_a_batch_write_refused_because_someone_made_the_change_is_re_read_live_and_settled(live):
    """The org listing of a big batch is taken before any write. Someone adds the member between
    the listing and the write (409): the request is read again live, not from the listing, found
    done, and settled after that one write as already satisfied: the add is someone else's
    (recorded as found, for drift to list), and a time-bound grant's end would leave it alone."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, viewer, access_duration_seconds=3600)
    grants_showing(conn, member, workspace, None)
    answer_writes(sandbox, added_just_before(org, workspace, member, viewer))

    outcome = provision_by_listing(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "already_satisfied", outcome
    assert outcome.detail == f"already Viewer: {SOMEONE_ELSE_MADE_IT_SO}"
    assert outcome.writes == 1 and len(writes(sandbox)) == 1
    audit = events(conn, request["request_id"])
    assert [d["status_code"] for kind, d in audit if kind == "write_answered"] == [409]
    assert [kind for kind, _ in audit].count("write_conflict") == 1
    assert roles_observed(conn, request["request_id"]) == [(viewer.id, "found")]
    # The grant's end undoes nothing: its prior role is the role, and it gave no time-bound access.
    assert conn.execute("SELECT status, prior_role_id, expires_at FROM main.provisioning_requests "
                        "WHERE request_id = ?", [request["request_id"]]).fetchone() == (
        "already_satisfied", viewer.id, None)


def test_a_last_write_refused_because_someone_made_the_change_settles_already_satisfied(live):
    """Every write refused (409), the last because someone added the member with the role just
    before it: the read after the last write finds the change asked for, made by someone else."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, viewer)
    grants_showing(conn, member, workspace, None)
    answer_writes(sandbox, *[conflict] * (MAX_WRITE_ATTEMPTS - 1), added_just_before(org, workspace, member, viewer))

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "already_satisfied", outcome
    assert outcome.detail == f"{SOMEONE_ELSE_MADE_IT_SO} (it was to add to the workspace as Viewer)"
    assert outcome.writes == len(writes(sandbox)) == MAX_WRITE_ATTEMPTS
    assert roles_observed(conn, request["request_id"]) == [(viewer.id, "found")]


def test_a_revoke_whose_removal_someone_made_first_settles_already_satisfied(live):
    """Someone removes the member just before the revoke's removal reaches LangSmith (404): the
    re-read finds them gone, by someone else's hand. Nothing applied; the removal is found."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    request = queued(conn, "revoke", member, workspace, org.roles[held_role_id])
    answer_writes(sandbox, removed_just_before(org, workspace, member))

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "already_satisfied", outcome
    assert outcome.detail == f"not a member of the workspace: {SOMEONE_ELSE_MADE_IT_SO}"
    assert [d["status_code"] for kind, d in events(conn, request["request_id"]) if kind == "write_answered"] == [404]
    assert roles_observed(conn, request["request_id"]) == [(None, "found")]


def test_a_write_refused_after_an_unanswered_one_settles_applied(live):
    """A 502 (the write may have been applied), then a 409 (the member is there): the first write
    may be what made it so, so the request is applied, and a time-bound grant's end removes the
    member. Calling it someone else's would leave access the grant gave past its end."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, viewer)
    grants_showing(conn, member, workspace, None)
    answer_writes(sandbox, lost, added_just_before(org, workspace, member, viewer))

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert outcome.writes == len(writes(sandbox)) == 2
    assert roles_observed(conn, request["request_id"]) == [(viewer.id, "verified")]


def test_a_write_lost_before_it_reached_langsmith_is_sent_again_after_one_scim_warning(live):
    """A 502 on the first write (nothing applied): re-read, planned again, sent again. The member
    is SCIM-provisioned: the warning comes once, before the first write, not with every try."""
    sandbox, org, conn = live
    workspace = org.shared_workspaces()[0]
    member = next(m for m in org.active_members()
                  if m.ls_user_id not in workspace.memberships and not m.is_disabled and scim_provisioned(m))
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    answer_writes(sandbox, lost)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.writes == 2, outcome
    assert org.membership(workspace.id, member.ls_user_id) is not None
    audit = events(conn, request["request_id"])
    kinds = [kind for kind, _ in audit]
    assert kinds.count("scim_warning") == 1 and kinds.index("scim_warning") < kinds.index("write_sent")
    assert [d for kind, d in audit if kind == "scim_warning"] == [{"detail": SCIM_WARNING}]
    assert [d["status_code"] for kind, d in audit if kind == "write_answered"] == [502, 200]
    assert [d["maybe_applied"] for kind, d in audit if kind == "write_uncertain"] == [True]


def test_a_membership_removed_between_the_read_and_the_role_change_is_planned_again(live):
    """Someone removes the member between our read and our role change (404): planned again from
    a new read, the grant adds them back with the role it asks for. The removal is recorded as
    found (someone else's change, seen by the read after the refused write) before the role the
    request verified, so the history and drift show it."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    role = roles_other_than(org, held_role_id, ("Viewer", "Editor"))[0]
    request = queued(conn, "grant", member, workspace, role)
    answer_writes(sandbox, removed_just_before(org, workspace, member))

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied", outcome
    assert [w.method for w in writes(sandbox)] == ["PATCH", "POST"]
    assert org.membership(workspace.id, member.ls_user_id).role_id == role.id
    audit = events(conn, request["request_id"])
    assert [d["status_code"] for kind, d in audit if kind == "write_answered"] == [404, 200]
    assert "write_conflict" in [kind for kind, _ in audit]
    assert roles_observed(conn, request["request_id"]) == [
        (None, "found"), (role.id, "verified")]


def test_a_role_someone_set_as_the_last_write_was_refused_is_recorded_as_found(live):
    """Every role change is refused (409); as the last one is, someone gives the member another
    role. The request fails, and the role the read after that last write found is recorded as
    found: someone else's change, which the history and drift show now."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    asked, set_by_someone = roles_other_than(org, held_role_id)[:2]
    request = queued(conn, "grant", member, workspace, asked)

    def refused_as_someone_sets_a_role(respond, r):
        org.set_workspace_role(workspace.id, member.ls_user_id, set_by_someone.id)
        return conflict(respond, r)

    answer_writes(sandbox, *[conflict] * (MAX_WRITE_ATTEMPTS - 1), refused_as_someone_sets_a_role)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "failed" and len(writes(sandbox)) == MAX_WRITE_ATTEMPTS, outcome
    assert roles_observed(conn, request["request_id"]) == [
        (set_by_someone.id, "found")]


def test_a_hand_change_found_before_a_write_that_did_not_hold_is_recorded_once(live):
    """Someone gave the member another role since the sync: found before the write. The write is
    answered 200 but does not hold (the member still has that role when read back): the request
    fails, and the role is recorded as found once, not again after the failed verification."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    asked, set_by_someone = roles_other_than(org, held_role_id)[:2]
    org.set_workspace_role(workspace.id, member.ls_user_id, set_by_someone.id)
    request = queued(conn, "grant", member, workspace, asked)
    answer_writes(sandbox, lambda respond, r: ApiResponse(200, {}))  # answered, not applied

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "failed" and outcome.detail.startswith("verification failed"), outcome
    assert roles_observed(conn, request["request_id"]) == [
        (set_by_someone.id, "found")]


def test_a_write_refused_with_nothing_changed_records_no_hand_change(live):
    """A role change refused (409) while the membership stays as read: read again, the role is
    the one read before, so nothing is recorded as found; the retry applies it."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    role = roles_other_than(org, held_role_id, ("Viewer", "Editor"))[0]
    request = queued(conn, "grant", member, workspace, role)
    answer_writes(sandbox, lambda respond, r: ApiResponse(409, {"detail": "busy"}))

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.writes == 2, outcome
    assert roles_observed(conn, request["request_id"]) == [
        (role.id, "verified")]


def organization_admin_in_a_shared_workspace(org):
    admin_role = org.role_by_name("ORGANIZATION_ADMIN").id
    return next((m, ws) for m in org.active_members() if m.org_role_id == admin_role and not m.is_disabled
                for ws in org.shared_workspaces() if m.ls_user_id in ws.memberships)


def test_only_a_settled_revoke_of_an_organization_admins_role_says_admin_access_remains(live):
    """The sentence is about what a revoke leaves: a grant to an Organization Admin says nothing
    of it, nor does a revoke that failed (the role is still there)."""
    sandbox, org, conn = live
    admin, workspace = organization_admin_in_a_shared_workspace(org)
    held = org.role(workspace.memberships[admin.ls_user_id].role_id)
    other = roles_other_than(org, held.id, ("Viewer", "Editor"))[0]
    grant = queued(conn, "grant", admin, workspace, other)
    assert provision(sandbox, conn, grant)[grant["request_id"]].status == "applied"
    revoke = queued(conn, "revoke", admin, workspace, other)
    wrap_respond(sandbox, lambda respond, r: ApiResponse(409, {"detail": "no"}) if r.method == "DELETE"
                 else respond(r))

    outcome = provision(sandbox, conn, revoke)[revoke["request_id"]]

    assert outcome.status == "failed", outcome
    assert org.membership(workspace.id, admin.ls_user_id).role_id == other.id
    for request in (grant, revoke):
        assert ADMIN_ACCESS_REMAINS not in status_of(conn, request["request_id"])[1]


def provision_dying_after_the_write(monkeypatch, write: str, sandbox, conn, request) -> None:
    """Provision ``request`` in a run that dies right after ``LangSmithClient.<write>`` reached
    LangSmith, before its answer was recorded (a kill -9 there)."""
    real_write = getattr(LangSmithClient, write)

    def write_then_die(self, *args, **kwargs):
        real_write(self, *args, **kwargs)
        raise RuntimeError("simulated crash after the write, before its answer was recorded")

    with monkeypatch.context() as patch:
        patch.setattr(LangSmithClient, write, write_then_die)
        with pytest.raises(RuntimeError, match="simulated crash"):
            provision(sandbox, conn, request)


def grant_a_dead_run_wrote(live, monkeypatch):
    """A time-bound grant of another role to a member of the first shared workspace, whose run
    died right after its role change reached LangSmith: (workspace, member, the role held before,
    the role granted, the request, left in_progress)."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    role = roles_other_than(org, held_role_id, ("Viewer", "Editor"))[0]
    request = queued(conn, "grant", member, workspace, role, access_duration_seconds=3600)
    provision_dying_after_the_write(monkeypatch, "set_workspace_member_role", sandbox, conn, request)
    return workspace, member, held_role_id, role, request


def test_a_role_change_a_dead_run_wrote_keeps_the_role_it_replaced_for_the_grants_end(live, monkeypatch):
    """A run dies right after its role change reached LangSmith. The next run settles it from
    live state and records as its prior role the one the dead run's plan replaced (what the
    grant's end restores), not the role it finds now."""
    sandbox, org, conn = live
    workspace, member, held_role_id, role, request = grant_a_dead_run_wrote(live, monkeypatch)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert len(writes(sandbox)) == 1
    assert outcome.writes == 1  # the dead run's write is counted: the request took one write
    [(prior_role_id,)] = conn.execute("SELECT prior_role_id FROM main.provisioning_requests WHERE request_id = ?",
                                      [request["request_id"]]).fetchall()
    assert prior_role_id == held_role_id


@pytest.mark.parametrize("read", ["member lookup", "org listing"])
def test_a_grant_a_dead_run_wrote_then_changed_by_hand_keeps_the_role_its_first_write_replaced(live, monkeypatch, read):
    """A run dies right after its role change reached LangSmith; someone then gives the member
    a third role by hand, so the next run writes the grant's role again. The grant's prior role
    is still the one its first write replaced (what its end restores), not the hand-given one."""
    sandbox, org, conn = live
    workspace, member, held_role_id, role, request = grant_a_dead_run_wrote(live, monkeypatch)
    by_hand = next(r for r in org.roles_by_scope("workspace") if r.id not in (held_role_id, role.id))
    org.set_workspace_role(workspace.id, member.ls_user_id, by_hand.id)

    outcome = (provision_by_listing if read == "org listing" else provision)(sandbox, conn, request)[
        request["request_id"]]

    assert outcome.status == "applied" and outcome.writes == 2, outcome  # the dead run's write counts too
    assert org.membership(workspace.id, member.ls_user_id).role_id == role.id
    [(prior_role_id,)] = conn.execute("SELECT prior_role_id FROM main.provisioning_requests WHERE request_id = ?",
                                      [request["request_id"]]).fetchall()
    assert prior_role_id == held_role_id


@pytest.mark.parametrize("read", ["member lookup", "org listing"])
def test_a_time_bound_grant_two_dead_runs_wrote_for_runs_from_the_first_write(live, read):
    """Two runs died after sending a write for the same grant (the second one's took): the member
    may have held the role since the first, so the grant's hour runs from the first write. The
    membership is read live even in a batch read from the org listing, which lacks the workspace
    identity the grant's end checks."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, viewer, status="in_progress", access_duration_seconds=3600)
    first_write = queue.now_utc() - timedelta(hours=3)
    for at, run_id in ((first_write, "dead-run-1"), (first_write + timedelta(hours=1), "dead-run-2")):
        queue.record_event(conn, request["request_id"], "write_sent", {"method": "POST"}, at=at, run_id=run_id)
    identity = org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=viewer.id).id

    outcome = (provision_by_listing if read == "org listing" else provision)(sandbox, conn, request)[
        request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert writes(sandbox) == []
    [(expires_at,)] = conn.execute("SELECT expires_at FROM main.provisioning_requests WHERE request_id = ?",
                                   [request["request_id"]]).fetchall()
    assert expires_at == first_write + timedelta(hours=1)
    assert observations(conn, request["request_id"]) == [(viewer.id, identity, "verified")]


def test_a_grant_a_dead_run_wrote_runs_its_duration_in_hours_across_a_clock_change_of_the_hosts_zone(live):
    """DuckDB hands the dead run's write time back in the session's zone (the host's: here New
    York's), and Python adds a duration to such a time by the wall clock: a grant of whole days
    across a clock change there would end an hour early or late. Its end is the write plus the
    duration in hours, whatever the host's zone."""
    sandbox, org, conn = live
    conn.execute("SET TimeZone = 'America/New_York'")
    new_york = ZoneInfo("America/New_York")
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    first_write = queue.now_utc() - timedelta(hours=3)
    # The fewest whole days from the write that cross New York's next clock change (under a year).
    days = next(d for d in range(1, 366) if (first_write + timedelta(days=d)).astimezone(new_york).utcoffset()
                != first_write.astimezone(new_york).utcoffset())
    duration = timedelta(days=days)
    request = queued(conn, "grant", member, workspace, viewer, status="in_progress",
                     access_duration_seconds=int(duration.total_seconds()))
    queue.record_event(conn, request["request_id"], "write_sent", {"method": "POST"}, at=first_write,
                       run_id="dead-run")
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=viewer.id)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied", outcome
    [(expires_at,)] = conn.execute("SELECT expires_at FROM main.provisioning_requests WHERE request_id = ?",
                                   [request["request_id"]]).fetchall()
    assert expires_at == first_write + duration  # aware times of different zones: compared as instants


def test_a_requests_events_are_in_order_even_where_the_clock_does_not_move(live, monkeypatch):
    """Events are ordered by time: a clock that gives the same instant twice (a coarse one) still
    gives each event of a request a later time than the one before."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    frozen = queue.now_utc()
    monkeypatch.setattr(queue, "now_utc", lambda: frozen)

    assert provision(sandbox, conn, request)[request["request_id"]].status == "applied"

    rows = conn.execute('SELECT kind, "at" FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"',
                        [request["request_id"]]).fetchall()
    assert [kind for kind, _ in rows] == ["validated_live", "read_live", "planned", "write_sent", "write_answered",
                                          "verified", "settled"]
    assert all(earlier < later for (_, earlier), (_, later) in zip(rows, rows[1:])), rows


@pytest.mark.parametrize("refused", ["the verifying listing", "the listing and the read-back"])
def test_a_verifying_listing_that_is_refused_is_replaced_by_reading_the_request_back(live, refused):
    """The listing after the batch's writes is refused (403, not an outage): each write is read
    back on its own instead. A read-back refused in turn fails that request, and the run goes on."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    listings, lines = [], []

    def refuse_after_the_write(respond, r):
        written = bool(writes(sandbox))
        if r.method == "GET" and r.path == ORG_LISTING_PATH:
            listings.append(r.path)
            if written:
                return ApiResponse(403, {"detail": "Forbidden"})
        if r.method == "GET" and r.path == WORKSPACE_MEMBERS_PATH and written and refused != "the verifying listing":
            return ApiResponse(403, {"detail": "Forbidden"})
        return respond(r)

    wrap_respond(sandbox, refuse_after_the_write)

    outcome = provision_by_listing(sandbox, conn, request, log=lines.append)[request["request_id"]]

    assert len(listings) == 2 and any("the verifying listing failed" in line for line in lines), lines
    assert org.membership(workspace.id, member.ls_user_id) is not None
    if refused == "the verifying listing":
        assert outcome.status == "applied", outcome
        assert dict(events(conn, request["request_id"]))["verified"]["path"] == WORKSPACE_MEMBERS_PATH
    else:
        assert outcome.status == "failed" and "403" in outcome.detail, outcome
        # The cause and the fix, as for a request failed before its write was verified.
        assert outcome.detail.endswith(f". Fix: {PermissionDeniedError.fix}"), outcome
    assert status_of(conn, request["request_id"]) == (outcome.status, outcome.detail)


def test_a_rejected_request_and_a_failed_end_of_a_grant_are_notified_as_failed(live):
    """``request.failed`` for a request refused live as for one whose write failed; the end of a
    grant that failed has ended nothing, so it is no ``access.expired``."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    too_late = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"),
                      access_until=queue.now_utc() - timedelta(minutes=1))
    holder, _, held_role_id = holder_and_workspace(org)  # the same workspace
    role = org.role(held_role_id)
    grant = queued(conn, "grant", holder, workspace, role, status="applied", prior_role_id=None,
                   updated_at=queue.now_utc() - timedelta(hours=1))
    end = queued(conn, "revoke", holder, workspace, role, parent_request_id=grant["request_id"],
                 requested_by="langsmith-access", reason="expired")
    wrap_respond(sandbox, lambda respond, r: ApiResponse(409, {"detail": "no"}) if r.method == "DELETE"
                 else respond(r))

    outcomes = provision(sandbox, conn, too_late, end, notifier=Notifier(org="acme", enabled=True))

    assert {o.request_id: o.status for o in outcomes.values()} == {
        too_late["request_id"]: "rejected", end["request_id"]: "failed"}
    notified = {json.loads(payload)["request_id"]: (event, json.loads(payload)) for event, payload in conn.execute(
        "SELECT event, payload FROM main.notifications").fetchall()}
    assert {request_id: event for request_id, (event, _) in notified.items()} == {
        too_late["request_id"]: "request.failed", end["request_id"]: "request.failed"}
    payload = notified[too_late["request_id"]][1]
    assert (payload["user"], payload["workspace"], payload["role"], payload["detail"]) == (
        member.email, workspace.display_name, "Viewer", status_of(conn, too_late["request_id"])[1])


def test_each_settled_request_is_notified_once_however_many_commits_follow(live):
    """Requests read one by one settle, and commit, one after another: each commit raises only
    the notifications of what it settles, so a request applied first is not notified again
    with every later request's status."""
    sandbox, org, conn = live
    workspace = org.shared_workspaces()[0]
    viewer = workspace_role(org, "Viewer")
    requests = [queued(conn, "grant", member, workspace, viewer) for member in outsiders(org, workspace)[:3]]

    outcomes = provision(sandbox, conn, *requests, notifier=Notifier(org="acme", enabled=True))

    assert {o.status for o in outcomes.values()} == {"applied"}, outcomes
    notified = sorted((json.loads(payload)["request_id"], event) for event, payload in conn.execute(
        "SELECT event, payload FROM main.notifications").fetchall())
    assert notified == sorted((r["request_id"], "request.applied") for r in requests)


@pytest.mark.parametrize("read", ["member lookup", "org listing"])
def test_once_langsmith_stops_answering_the_run_tries_no_further_request(live, read):
    """LangSmith stops answering right after the first write. Read per request, the read
    verifying that write is the run's last call; read from the org listing, the second request's
    write (unanswered: it may have gone through) and the read after it are, and no verifying
    listing is tried. No other request is even validated: each would only fail the same way.
    A request whose write went out stays in progress for the next run, the others are pending."""
    sandbox, org, conn = live
    workspace = org.shared_workspaces()[0]
    requests = [queued(conn, "grant", m, workspace, workspace_role(org, "Viewer"), status="in_progress")
                for m in outsiders(org, workspace)[:3]]
    client = client_for(sandbox, max_retries=0)
    snapshot = OrgSnapshot.read(client) if read == "org listing" else None
    unanswered = down_after_writes(sandbox, 1)
    provisioner = Provisioner(client, conn, run_id="run-1", snapshot=snapshot)

    assert provisioner.process_all(requests) == [] and provisioner.unreachable is not None
    if read == "member lookup":
        assert unanswered == [("GET", WORKSPACE_MEMBERS_PATH)]
    else:
        assert unanswered == [("POST", "/api/v1/workspaces/current/members"), ("GET", WORKSPACE_MEMBERS_PATH)]
    written = 1 if read == "member lookup" else 2
    assert provisioner.release_unsettled(requests) == [r["request_id"] for r in requests[written:]]
    assert [status_of(conn, r["request_id"])[0] for r in requests] == (
        ["in_progress"] * written + ["pending"] * (3 - written))
    assert [[d for kind, d in events(conn, r["request_id"]) if kind == "released"] for r in requests] == (
        [[]] * written + [[{"error": str(provisioner.unreachable)}]] * (3 - written))


def test_a_time_bound_grants_clock_starts_when_it_is_applied_not_when_its_write_went_out(live):
    """DESIGN.md section 10: ``expires_at = applied_at + duration``. The write takes a while to
    be answered; the hour counts from the grant's verification, after the answer."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"), access_duration_seconds=3600)
    answered = []

    def slow_write(respond, r):
        response = respond(r)
        if r.method in WRITES:
            time.sleep(0.5)
            answered.append(queue.now_utc())
        return response

    wrap_respond(sandbox, slow_write)

    assert provision(sandbox, conn, request)[request["request_id"]].status == "applied"

    [(expires_at,)] = conn.execute("SELECT expires_at FROM main.provisioning_requests WHERE request_id = ?",
                                   [request["request_id"]]).fetchall()
    assert expires_at >= answered[0] + timedelta(hours=1)


def an_ended_hour_of_editor(org, conn):
    """An hour of Editor that added an outsider (Editor in LangSmith), ended an hour ago, and its
    end queued: the member, the workspace, Editor, the grant and its end."""
    member, workspace = outsider_and_workspace(org)
    editor = workspace_role(org, "Editor")
    now = queue.now_utc()
    hour = queued(conn, "grant", member, workspace, editor, status="applied", prior_role_id=None,
                  updated_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=editor.id)
    end = queued(conn, "revoke", member, workspace, editor, parent_request_id=hour["request_id"],
                 requested_by="langsmith-access", reason="expired")
    return member, workspace, editor, hour, end


def an_hour_of_editor_taken_over_by_admin(org, conn, *, later_prior, later_ends):
    """An hour of Editor that added an outsider, ended an hour ago; a later applied grant made
    them Admin (in LangSmith too), over ``later_prior``, ending at ``later_ends``; and the hour's
    end queued. The later grant and the end."""
    member, workspace = outsider_and_workspace(org)
    editor, admin = workspace_role(org, "Editor"), workspace_role(org, "Admin")
    now = queue.now_utc()
    hour = queued(conn, "grant", member, workspace, editor, status="applied", prior_role_id=None,
                  updated_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))
    later = queued(conn, "grant", member, workspace, admin, status="applied", prior_role_id=later_prior.id,
                   updated_at=now - timedelta(minutes=30), expires_at=later_ends)
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=admin.id)
    end = queued(conn, "revoke", member, workspace, editor, parent_request_id=hour["request_id"],
                 requested_by="langsmith-access", reason="expired")
    return later, end


@pytest.mark.parametrize("later_prior", ["Editor", "Viewer"])
def test_the_end_of_a_grant_a_later_grant_took_over_passes_on_only_what_it_replaced(live, later_prior):
    """An hour of Editor added the member; a later grant made them Admin, replacing either the
    hour's Editor (it built on it: it inherits what the hour replaced, here no membership) or
    a Viewer someone gave by hand meanwhile (it owes the hour nothing: it keeps giving back
    Viewer). Either way the hour's end finds Admin there and writes nothing."""
    sandbox, org, conn = live
    later, end = an_hour_of_editor_taken_over_by_admin(
        org, conn, later_prior=workspace_role(org, later_prior), later_ends=queue.now_utc() + timedelta(hours=1))

    outcome = provision(sandbox, conn, end)[end["request_id"]]

    assert outcome.status == "already_satisfied" and writes(sandbox) == [], outcome
    [(prior_role_id, expires_at)] = conn.execute(
        "SELECT prior_role_id, expires_at FROM main.provisioning_requests WHERE request_id = ?",
        [later["request_id"]]).fetchall()
    assert expires_at == later["expires_at"]
    if later_prior == "Editor":
        assert "took over this grant's Editor: when it ends" in outcome.detail
        assert "removes the member" in outcome.detail
        assert prior_role_id is None
    else:
        assert "changed this membership since the grant; nothing to undo" in outcome.detail
        assert prior_role_id == workspace_role(org, "Viewer").id


def test_the_end_of_a_grant_a_later_grant_with_no_end_took_over_says_the_access_goes_on(live):
    """As above, a later Admin grant built on the hour's Editor, but this one has no end: the
    hour's end writes nothing, and says the access it took over has no end (nothing undoes it)."""
    sandbox, org, conn = live
    later, end = an_hour_of_editor_taken_over_by_admin(
        org, conn, later_prior=workspace_role(org, "Editor"), later_ends=None)

    outcome = provision(sandbox, conn, end)[end["request_id"]]

    assert outcome.status == "already_satisfied" and writes(sandbox) == [], outcome
    assert (f"continued by request {later['request_id']} (grant of Admin), which took over this grant's "
            "Editor: it has no end") in outcome.detail, outcome


class NotifierFailingOnce:
    """A notifier whose first notification fails (as a write to the database can), inside the
    transaction that settles a request."""

    def __init__(self):
        self.failures = 0

    def notify(self, conn, event, **fields):
        if not self.failures:
            self.failures += 1
            raise duckdb.IOException("simulated: could not write the notification")
        return None


def test_a_commit_that_fails_loses_no_audit_event(live):
    """The transaction settling a request fails: it is rolled back, and its events (the write's
    answer, the verification, the settling) are still written by the next commit, the one that
    hands the request back when the run fails."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"), status="in_progress")
    provisioner = Provisioner(client_for(sandbox), conn, run_id="run-1", notifier=NotifierFailingOnce())

    with pytest.raises(duckdb.IOException, match="simulated") as failed:
        provisioner.process_all([request])
    provisioner.release_unsettled([request], failure=failed.value)

    kinds = [kind for kind, _ in events(conn, request["request_id"])]
    assert kinds == ["validated_live", "read_live", "planned", "write_sent", "write_answered", "verified", "settled"]
    assert status_of(conn, request["request_id"])[0] == "in_progress"  # a write went out: settled from live state


def test_an_outage_while_reading_back_a_batchs_writes_stops_at_the_first_read_back(live, monkeypatch):
    """The listing after a batch's writes lags them (it shows the state before), so each write
    is read back on its own; LangSmith stops answering at the first read-back. The run stops
    there: no other read-back is tried, and both requests stay in progress (their writes went
    out) for the next run to settle from LangSmith's state."""
    sandbox, org, conn = live
    workspace = org.shared_workspaces()[0]
    requests = [queued(conn, "grant", m, workspace, workspace_role(org, "Viewer"), status="in_progress")
                for m in outsiders(org, workspace)[:2]]
    client = client_for(sandbox, max_retries=0)
    before = OrgSnapshot.read(client)
    monkeypatch.setattr(OrgSnapshot, "read", staticmethod(lambda client: before))
    unanswered = down_after_writes(sandbox, len(requests))
    provisioner = Provisioner(client, conn, run_id="run-1", snapshot=before)

    assert provisioner.process_all(requests) == [] and provisioner.unreachable is not None
    assert unanswered == [("GET", WORKSPACE_MEMBERS_PATH)]
    assert provisioner.release_unsettled(requests) == []
    assert [status_of(conn, r["request_id"])[0] for r in requests] == ["in_progress", "in_progress"]


def test_an_outage_on_the_verifying_listing_stops_the_run_before_any_read_back(live):
    """LangSmith stops answering after a batch's write, at the listing that would verify it: an
    outage, not a refusal, so the run stops there (no read-back is tried) and the request stays
    in progress (its write went out) for the next run to settle from LangSmith's state."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"), status="in_progress")
    client = client_for(sandbox, max_retries=0)
    snapshot = OrgSnapshot.read(client)
    unanswered = down_after_writes(sandbox, 1)
    provisioner = Provisioner(client, conn, run_id="run-1", snapshot=snapshot)

    assert provisioner.process_all([request]) == [] and provisioner.unreachable is not None
    assert unanswered == [("GET", ORG_LISTING_PATH)]
    assert provisioner.release_unsettled([request]) == []
    assert status_of(conn, request["request_id"])[0] == "in_progress"


def test_the_end_of_a_grant_that_found_its_role_held_raises_no_access_expired(live):
    """A grant found Editor already held through another grant of Editor still in force (prior
    role Editor). Its end gives back Editor, which the member holds: nothing to undo, and no
    ``access.expired``: the member's access goes on."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    role = org.role(held_role_id)
    now = queue.now_utc()
    extension = queued(conn, "grant", member, workspace, role, status="already_satisfied", prior_role_id=role.id,
                       updated_at=now - timedelta(hours=2), expires_at=now - timedelta(minutes=1))
    end = queued(conn, "revoke", member, workspace, role, parent_request_id=extension["request_id"],
                 requested_by="langsmith-access", reason="expired")

    outcome = provision(sandbox, conn, end, notifier=Notifier(org="acme", enabled=True))[end["request_id"]]

    assert outcome.status == "already_satisfied" and "nothing to undo" in outcome.detail, outcome
    assert writes(sandbox) == [] and org.membership(workspace.id, member.ls_user_id).role_id == role.id
    assert conn.execute("SELECT event FROM main.notifications").fetchall() == []


def test_a_role_provisioning_verified_that_grants_does_not_show_yet_is_not_taken_for_a_hand_change(live):
    """``grants`` still shows the role a member had before a request provisioning verified (dbt
    has not built that observation yet). A later request on the membership compares the live
    role with that newer observation, not with ``grants``: nothing was changed by hand, so
    nothing is recorded as found (which the refresh would list as drift)."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    first_role, then_role = roles_other_than(org, held_role_id)[:2]
    first, then = (queued(conn, "grant", member, workspace, role) for role in (first_role, then_role))

    outcomes = provision(sandbox, conn, first, then)

    assert [outcomes[r["request_id"]].status for r in (first, then)] == ["applied", "applied"], outcomes
    assert conn.execute(f"SELECT request_id, role_id, observed FROM {RAW_SCHEMA}.provisioning_observations "
                        "ORDER BY verified_at").fetchall() == [
        (first["request_id"], first_role.id, "verified"), (then["request_id"], then_role.id, "verified")]


def test_a_grant_langsmith_answered_but_did_not_keep_fails_verification(live):
    """The POST is answered 200, but the member is not in the workspace when read back: the
    request fails verification (never applied on the answer alone) and no role is recorded."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))

    def add_not_kept(respond, r):
        response = respond(r)
        if r.method == "POST":
            org.remove_workspace_membership(workspace.id, member.ls_user_id)
        return response

    wrap_respond(sandbox, add_not_kept)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "failed" and outcome.detail.startswith("verification failed"), outcome
    assert "the live role is none (not a member). Fix: the change did not hold" in outcome.detail, outcome
    assert outcome.detail.endswith(VERIFICATION_FIX)  # a failed request's status_detail says the fix
    assert status_of(conn, request["request_id"]) == ("failed", outcome.detail)
    assert observations(conn, request["request_id"]) == []  # not a member, as grants shows: nothing new


def test_a_role_someone_else_set_when_verification_failed_is_recorded_as_found(live):
    """The role change is answered 200, but someone gives the member another role before it is
    read back: the request fails verification, and the role it read (not the one grants shows,
    not the one asked for) is recorded as found, so the history and drift show it now."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    asked, set_by_someone = roles_other_than(org, held_role_id)[:2]
    request = queued(conn, "grant", member, workspace, asked)

    def overridden(respond, r):
        response = respond(r)
        org.set_workspace_role(workspace.id, member.ls_user_id, set_by_someone.id)
        return response

    answer_writes(sandbox, overridden)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "failed" and outcome.detail.startswith("verification failed"), outcome
    assert roles_observed(conn, request["request_id"]) == [
        (set_by_someone.id, "found")]


@pytest.mark.parametrize("grant_did", ["added", "replaced"])
@pytest.mark.parametrize("lost", ["the run died", "the answer was lost"])
def test_the_end_of_a_grant_that_our_own_earlier_write_made_says_so(live, monkeypatch, grant_did, lost):
    """The revoke ending an hour of Editor sends its write (removing the member the grant added,
    or giving back the Viewer it replaced); the run dies, or LangSmith's answer is lost. Read
    again, the member holds what that write left: applied, and said as that write, not as a
    change someone made "since the grant" and "left alone"."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    editor, viewer = workspace_role(org, "Editor"), workspace_role(org, "Viewer")
    now = queue.now_utc()
    hour = queued(conn, "grant", member, workspace, editor, status="applied",
                  prior_role_id=viewer.id if grant_did == "replaced" else None,
                  updated_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=editor.id)
    end = queued(conn, "revoke", member, workspace, editor, parent_request_id=hour["request_id"],
                 requested_by="langsmith-access", reason="expired")
    if lost == "the run died":
        write = "remove_workspace_member" if grant_did == "added" else "set_workspace_member_role"
        provision_dying_after_the_write(monkeypatch, write, sandbox, conn, end)
    else:
        answer_writes(sandbox, applied_answer_lost)

    outcome = provision(sandbox, conn, end, notifier=Notifier(org="acme", enabled=True))[end["request_id"]]

    assert outcome.status == "applied" and len(writes(sandbox)) == 1, outcome
    assert outcome.detail == (
        "verified: remove Editor from the workspace (the grant added them)" if grant_did == "added"
        else "verified: restore Viewer, the role before the grant of Editor"), outcome
    live_role = org.membership(workspace.id, member.ls_user_id)
    assert (live_role.role_id if live_role else None) == (viewer.id if grant_did == "replaced" else None)
    [(event, payload)] = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    assert (event, json.loads(payload)["detail"]) == (
        "access.expired", f"{outcome.detail} (revoke {end['request_id']})")


def test_the_end_of_a_grant_changed_by_hand_after_our_own_earlier_write_says_someone_changed_it(live, monkeypatch):
    """The revoke ending an hour of Editor removed the member, and its run died; someone then
    added them back as Viewer by hand. What the member holds is not what our write left: the
    end says someone changed it, and does not claim the removal."""
    sandbox, org, conn = live
    member, workspace, editor, hour, end = an_ended_hour_of_editor(org, conn)
    viewer = workspace_role(org, "Viewer")
    provision_dying_after_the_write(monkeypatch, "remove_workspace_member", sandbox, conn, end)
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=viewer.id)

    outcome = provision(sandbox, conn, end)[end["request_id"]]

    assert outcome.detail == ("verified: holds Viewer, not the granted Editor: changed by someone since the grant; "
                              "left alone"), outcome
    assert org.membership(workspace.id, member.ls_user_id).role_id == viewer.id


@pytest.mark.parametrize("gone", ["workspace deleted", "member left"])
def test_the_end_of_a_grant_whose_workspace_or_member_is_gone_settles_as_ended(live, gone):
    """An hour of Editor ends after its workspace was deleted, or after the member left the
    org: the access ended with them. Nothing to undo (not ``rejected``), and the grant's end is
    reported as ``access.expired``, not as ``request.failed``."""
    sandbox, org, conn = live
    member, workspace, editor, hour, end = an_ended_hour_of_editor(org, conn)
    if gone == "workspace deleted":
        org.delete_workspace(workspace.id)
    else:
        org.remove_member(member.ls_user_id)

    outcome = provision(sandbox, conn, end, notifier=Notifier(org="acme", enabled=True))[end["request_id"]]

    says = "is deleted now" if gone == "workspace deleted" else "is not an active org member any more"
    assert outcome.status == "already_satisfied" and outcome.detail.endswith(f"{says}: nothing to undo"), outcome
    assert status_of(conn, end["request_id"]) == ("already_satisfied", outcome.detail)
    assert writes(sandbox) == []
    [(event, payload)] = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    assert (event, json.loads(payload)["request_id"]) == ("access.expired", hour["request_id"])


@pytest.mark.parametrize("shown", [True, False])
def test_a_member_found_gone_from_the_org_is_recorded_gone_from_the_workspace_where_grants_shows_them(live, shown):
    """An hour of Editor ends after the member left the org, while grants (the last build) still
    shows them as Editor there: the end settles with nothing to undo and records that they hold no
    role there any more (found, not caused), so grants and grant_history stop showing the access
    now, not at the next sync. Where grants shows nothing there, nothing is recorded."""
    sandbox, org, conn = live
    member, workspace, editor, hour, end = an_ended_hour_of_editor(org, conn)
    grants_showing(conn, member, workspace, editor.id if shown else None)
    org.remove_member(member.ls_user_id)

    outcome = provision(sandbox, conn, end)[end["request_id"]]

    assert outcome.status == "already_satisfied" and outcome.detail.endswith("nothing to undo"), outcome
    recorded = conn.execute(f"SELECT request_id, workspace_id, ls_user_id, role_id, observed "
                            f"FROM {RAW_SCHEMA}.provisioning_observations").fetchall()
    assert recorded == ([(end["request_id"], workspace.id, member.ls_user_id, None, "found")] if shown else [])
    assert writes(sandbox) == []


def test_the_end_of_a_grant_whose_replaced_role_was_deleted_fails_saying_so_and_sends_no_write(live):
    """A grant of Admin replaced a custom role, which was deleted since: the end cannot give it
    back (LangSmith refuses a deleted role), so it sends nothing, fails saying the member still
    holds Admin and what to do, and is notified as failed (not as access.expired)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    custom = next(r for r in org.custom_roles() if r.access_scope == "workspace")
    admin = workspace_role(org, "Admin")
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=admin.id)
    now = queue.now_utc()
    grant = queued(conn, "grant", member, workspace, admin, status="applied", prior_role_id=custom.id,
                   updated_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))
    end = queued(conn, "revoke", member, workspace, admin, parent_request_id=grant["request_id"],
                 requested_by="langsmith-access", reason="expired")
    del org.roles[custom.id]
    conn.execute("CREATE TABLE main.roles AS SELECT ? AS role_id, ? AS display_name", [custom.id, custom.display_name])

    outcome = provision(sandbox, conn, end, notifier=Notifier(org="acme", enabled=True))[end["request_id"]]

    assert outcome.status == "failed", outcome
    assert outcome.detail.startswith(
        f"cannot give back {custom.display_name} ({custom.id}), the role the grant of Admin replaced: it no longer "
        "exists in LangSmith (deleted since the grant), so the member still holds Admin. Fix: in LangSmith, "), outcome
    assert status_of(conn, end["request_id"]) == ("failed", outcome.detail)
    assert writes(sandbox) == [] and org.membership(workspace.id, member.ls_user_id).role_id == admin.id
    [(event, payload)] = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    assert (event, json.loads(payload)["request_id"]) == ("request.failed", end["request_id"])


@pytest.mark.parametrize("mode", ["per request", "org listing"])
def test_a_workspace_deleted_during_the_run_rejects_its_request_as_deleted(live, mode):
    """The run read the workspaces, then the workspace was deleted: its member routes answer
    404 from then on (first the live read, or with an org listing, the write). The request is
    rejected as at validation, after one more read of the workspaces, not failed with a 404
    nobody can fix; the end of a time-bound grant there has nothing left to undo."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer, editor = workspace_role(org, "Viewer"), workspace_role(org, "Editor")
    grant = queued(conn, "grant", member, workspace, viewer)
    now = queue.now_utc()
    holder = next(m for m in org.active_members() if m.ls_user_id in workspace.memberships and not m.is_disabled)
    hour = queued(conn, "grant", holder, workspace, editor, status="applied", prior_role_id=None,
                  updated_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))
    end = queued(conn, "revoke", holder, workspace, editor, parent_request_id=hour["request_id"],
                 requested_by="langsmith-access", reason="expired")

    def deleted_when_its_members_are_first_asked_for(respond, r):
        if r.path.startswith("/api/v1/workspaces/current/members") and not workspace.is_deleted:
            org.delete_workspace(workspace.id)
        return respond(r)

    wrap_respond(sandbox, deleted_when_its_members_are_first_asked_for)
    outcomes = (provision if mode == "per request" else provision_by_listing)(sandbox, conn, grant, end)

    deleted = f"workspace {workspace.display_name!r} is deleted now"
    assert (outcomes[grant["request_id"]].status, outcomes[grant["request_id"]].detail) == ("rejected", deleted)
    assert status_of(conn, grant["request_id"]) == ("rejected", deleted)
    assert status_of(conn, end["request_id"]) == ("already_satisfied", f"{deleted}: nothing to undo")
    rereads = [e for e in events(conn, grant["request_id"]) if e[0] == "workspaces_read"]
    assert rereads == [("workspaces_read", {"method": "GET", "path": "/api/v1/workspaces", "status_code": 200,
                                            "workspace_id": workspace.id, "listed": True, "deleted": True})], events(conn, grant["request_id"])
    # The end of the grant there is refused from that read, before any call of its own: the
    # workspaces are read twice in all (the run's first read, and the one after the 404).
    assert [e for e in events(conn, end["request_id"]) if e[0] == "workspaces_read"] == []
    assert len([r for r in sandbox.request_log.snapshot() if r.path == "/api/v1/workspaces"]) == 2


def test_a_workspace_purged_during_the_run_rejects_its_request_and_the_audit_says_it_is_not_listed(live):
    """The workspace is gone altogether during the run (purged, or out of the key's sight), not
    listed even as deleted: the request is rejected as gone, and the read of the workspaces that
    found it out says it was not listed (as against a deleted workspace, still listed)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    grant = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))

    def purged_when_its_members_are_first_asked_for(respond, r):
        if r.path.startswith("/api/v1/workspaces/current/members"):
            org.workspaces.pop(workspace.id, None)
        return respond(r)

    wrap_respond(sandbox, purged_when_its_members_are_first_asked_for)
    outcome = provision(sandbox, conn, grant)[grant["request_id"]]

    gone = f"workspace {workspace.id} no longer exists in LangSmith"
    assert (outcome.status, outcome.detail) == ("rejected", gone), outcome
    assert writes(sandbox) == []
    rereads = [e for e in events(conn, grant["request_id"]) if e[0] == "workspaces_read"]
    assert rereads == [("workspaces_read", {"method": "GET", "path": "/api/v1/workspaces", "status_code": 200,
                                            "workspace_id": workspace.id, "listed": False, "deleted": True})], rereads


def test_a_workspace_deleted_during_the_run_whose_member_routes_answer_403_rejects_its_request_as_deleted(live):
    """A workspace deleted (or taken out of the key's sight) during the run may answer its member
    routes 403 rather than 404: the workspaces are read again all the same, and the request is
    rejected as deleted, not failed with a 403 whose fix (the key's permissions) is no fix."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    grant = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))

    def deleted_then_forbidden(respond, r):
        if r.path.startswith("/api/v1/workspaces/current/members"):
            org.delete_workspace(workspace.id)
            return ApiResponse(403, {"detail": "Forbidden"})
        return respond(r)

    wrap_respond(sandbox, deleted_then_forbidden)
    outcome = provision(sandbox, conn, grant)[grant["request_id"]]

    deleted = f"workspace {workspace.display_name!r} is deleted now"
    assert (outcome.status, outcome.detail) == ("rejected", deleted), outcome
    assert writes(sandbox) == []
    assert [e[1]["deleted"] for e in events(conn, grant["request_id"]) if e[0] == "workspaces_read"] == [True]


def test_a_404_from_a_workspace_that_is_still_there_fails_as_before(live):
    """The workspaces read again after a 404 still list the workspace, shared: not a deleted
    workspace, so the request fails with the error and its fix. The next request there that
    gets a 404 does not read them again."""
    sandbox, org, conn = live
    first, second = outsiders(org, workspace := org.shared_workspaces()[0])[:2]
    grant = queued(conn, "grant", first, workspace, workspace_role(org, "Viewer"))
    another = queued(conn, "grant", second, workspace, workspace_role(org, "Viewer"))

    def members_route_not_found(respond, r):
        if r.path.startswith("/api/v1/workspaces/current/members"):
            return ApiResponse(404, {"detail": "Not Found"})
        return respond(r)

    wrap_respond(sandbox, members_route_not_found)
    outcomes = provision(sandbox, conn, grant, another)

    for request in (grant, another):
        outcome = outcomes[request["request_id"]]
        assert outcome.status == "failed" and "404" in outcome.detail and "Fix:" in outcome.detail, outcome
    assert [e[1]["deleted"] for e in events(conn, grant["request_id"]) if e[0] == "workspaces_read"] == [False]
    assert [e for e in events(conn, another["request_id"]) if e[0] == "workspaces_read"] == []
    workspace_listings = [r for r in sandbox.request_log.snapshot() if r.path == "/api/v1/workspaces"]
    assert len(workspace_listings) == 2  # the run's first, and the one after the first 404


def test_a_workspace_found_there_after_a_404_is_read_again_once_that_is_old_and_found_deleted(live, monkeypatch):
    """A 404 in a workspace the run found still there after an earlier 404 is taken as the
    error only for a while (a minute; no time at all here): after that the workspaces are read
    again, and a workspace deleted since rejects the request as deleted, not failed with a 404."""
    sandbox, org, conn = live
    monkeypatch.setattr(executor, "WORKSPACE_FOUND_TRUSTED_SECONDS", 0.0)
    first, second = outsiders(org, workspace := org.shared_workspaces()[0])[:2]
    grant = queued(conn, "grant", first, workspace, workspace_role(org, "Viewer"))
    another = queued(conn, "grant", second, workspace, workspace_role(org, "Viewer"))
    asked = []

    def members_route_not_found_then_deleted(respond, r):
        if r.path.startswith("/api/v1/workspaces/current/members"):
            asked.append(r.path)
            if len(asked) == 2:  # the second request's first call there (the first made one)
                org.delete_workspace(workspace.id)
            return ApiResponse(404, {"detail": "Not Found"})
        return respond(r)

    wrap_respond(sandbox, members_route_not_found_then_deleted)
    outcomes = provision(sandbox, conn, grant, another)

    assert outcomes[grant["request_id"]].status == "failed", outcomes[grant["request_id"]]
    deleted = f"workspace {workspace.display_name!r} is deleted now"
    assert (outcomes[another["request_id"]].status, outcomes[another["request_id"]].detail) == ("rejected", deleted)
    assert [e[1]["deleted"] for e in events(conn, another["request_id"]) if e[0] == "workspaces_read"] == [True]


def test_an_outage_reading_the_workspaces_after_a_404_stops_the_run_rather_than_failing_the_request(live):
    """After a 404, LangSmith does not answer the read of the workspaces that tells whether the
    workspace was deleted (503 after every retry): an outage, so the run stops there and the
    request goes back to pending for the next run, rather than failing with a 404 that a
    deleted workspace may explain."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    grant = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    answered_404 = []

    def not_found_then_down(respond, r):
        if r.path.startswith("/api/v1/workspaces/current/members"):
            answered_404.append(r.path)
            return ApiResponse(404, {"detail": "Not Found"})
        if answered_404:
            return ApiResponse(503, {"detail": "Service Unavailable"})
        return respond(r)

    wrap_respond(sandbox, not_found_then_down)
    provisioner = Provisioner(client_for(sandbox, sleep=lambda seconds: None), conn, run_id="run-1")
    assert provisioner.process_all([grant]) == []
    assert provisioner.unreachable is not None and "503" in str(provisioner.unreachable)
    assert provisioner.release_unsettled([grant]) == [grant["request_id"]]
    status, detail = status_of(conn, grant["request_id"])
    assert status == "pending" and "LangSmith stopped answering" in detail, detail


# ---- mutation survivors of executor.py: behaviour no test above pinned down


def test_a_grant_then_a_revoke_of_one_membership_in_a_listed_batch_each_read_live(live):
    """The org listing of a big batch is taken before any write: a revoke queued after a grant
    of the same membership must not plan from it (there it would find no member, settle
    'already satisfied', and leave the role the grant gave). Each is read live, in order."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    grant = queued(conn, "grant", member, workspace, viewer)
    revoke = queued(conn, "revoke", member, workspace, viewer)

    outcomes = provision_by_listing(sandbox, conn, grant, revoke)

    assert {o.request_id: o.status for o in outcomes.values()} == {
        grant["request_id"]: "applied", revoke["request_id"]: "applied"}, outcomes
    assert [r.method for r in writes(sandbox)] == ["POST", "DELETE"]
    assert org.membership(workspace.id, member.ls_user_id) is None
    assert [d["path"] for kind, d in events(conn, revoke["request_id"]) if kind == "read_live"] == [
        WORKSPACE_MEMBERS_PATH]


def test_a_revoke_an_organization_admin_needs_nothing_for_still_says_admin_access_remains(live):
    """Asked to revoke a role the Organization Admin does not hold there, nothing is written,
    and the requester is told all the same that Admin access remains through the org role."""
    sandbox, org, conn = live
    admin, workspace = organization_admin_in_a_shared_workspace(org)
    held = workspace.memberships[admin.ls_user_id].role_id
    other = roles_other_than(org, held, ("Viewer", "Editor"))[0]
    revoke = queued(conn, "revoke", admin, workspace, other)

    outcome = provision(sandbox, conn, revoke)[revoke["request_id"]]

    assert outcome.status == "already_satisfied", outcome
    assert outcome.detail.endswith(ADMIN_ACCESS_REMAINS) and "nothing to remove" in outcome.detail, outcome
    assert status_of(conn, revoke["request_id"]) == ("already_satisfied", outcome.detail)
    assert writes(sandbox) == []


def test_a_grant_past_its_until_is_rejected_before_reading_even_where_the_member_holds_the_role(live):
    """Approved or claimed after its --until: refused by live validation, before any call.
    Found held, it must not settle 'already satisfied' (with terms that would make it the grant
    in force) on access whose window is over."""
    sandbox, org, conn = live
    workspace = org.shared_workspaces()[0]
    holder_id, membership = next((uid, m) for uid, m in workspace.memberships.items()
                                 if not org.members[uid].is_disabled)
    holder, role = org.members[holder_id], org.role(membership.role_id)
    request = queued(conn, "grant", holder, workspace, role, access_until=queue.now_utc() - timedelta(minutes=1))

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "rejected" and "has passed: nothing applied" in outcome.detail, outcome
    assert [kind for kind, _ in events(conn, request["request_id"])] == ["settled"]  # no lookup, no read
    assert conn.execute("SELECT prior_role_id, expires_at FROM main.provisioning_requests WHERE request_id = ?",
                        [request["request_id"]]).fetchone() == (None, None)
    assert writes(sandbox) == []


def test_a_listing_that_leaves_out_some_workspaces_is_not_used_and_a_revoke_there_removes_the_role(live):
    """A key without organization:manage gets an enriched listing of only some workspaces'
    memberships (``X-Members-List-All-Workspaces: false``). Planned from it, a revoke in a
    workspace it leaves out would find no member and settle with the role still held."""
    sandbox, org, conn = live
    sandbox.api.key_role = "org-user"  # default roles: Workspace Admin everywhere, no organization:manage
    listed = {w.id for w in sorted(org.all_workspaces(), key=lambda w: w.id)[::2]}  # as the sandbox lists them
    workspace, membership = next((w, m) for w in org.shared_workspaces() if w.id not in listed
                                 for m in w.memberships.values() if not org.members[m.ls_user_id].is_disabled)
    revoke = queued(conn, "revoke", org.members[membership.ls_user_id], workspace, org.role(membership.role_id))
    client = client_for(sandbox)

    assert OrgSnapshot.read(client) is None
    outcome = Provisioner(client, conn, run_id="run-1", snapshot=OrgSnapshot.read(client)).process_all([revoke])

    assert [(o.request_id, o.status) for o in outcome] == [(revoke["request_id"], "applied")], outcome
    assert org.membership(workspace.id, membership.ls_user_id) is None


def test_a_listing_whose_first_page_leaves_out_some_workspaces_is_not_used_whatever_later_pages_say(tmp_path):
    """The key is given organization:manage while the org listing is read: its first page lists
    only some workspaces' memberships (``X-Members-List-All-Workspaces: false``), its last says
    ``true``. Every page must list every workspace for the listing to be used: the first page's
    people would otherwise show as holding no role where their grants were left out, and a
    revoke there would settle with the role still held."""
    org = generate_org(seed=5, members=520, workspaces=4)  # 2 pages of the org listing
    said: list[str] = []
    with SandboxServer(org, api_key=API_KEY, key_role="org-user") as sandbox:
        def made_admin_after_the_first_page(respond, request):
            response = respond(request)
            if request.path == ORG_LISTING_PATH:
                said.append(response.headers.get("X-Members-List-All-Workspaces"))
                sandbox.api.key_role = "org-admin"
            return response

        wrap_respond(sandbox, made_admin_after_the_first_page)
        snapshot = OrgSnapshot.read(client_for(sandbox))

    assert snapshot is None
    assert said == ["false"]  # the reading stopped at the page that said so (the next says "true")


def test_every_event_a_run_records_names_that_run(live):
    """The audit ties each step to the Dagster run that took it (a request a dead run left is
    finished by another: its events say which did what)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))

    assert provision(sandbox, conn, request)[request["request_id"]].status == "applied"

    recorded = conn.execute("SELECT kind, run_id FROM main.provisioning_events WHERE request_id = ? ORDER BY \"at\"",
                            [request["request_id"]]).fetchall()
    assert [kind for kind, _ in recorded] == [
        "validated_live", "read_live", "planned", "write_sent", "write_answered", "verified", "settled"]
    assert {run_id for _, run_id in recorded} == {"run-1"}


def test_a_last_write_answered_with_an_unreadable_2xx_is_read_back_before_the_request_is_called_failed(live):
    """The first two writes are lost (502, nothing applied); the last one is applied but its 2xx
    answer cannot be read. That answer says nothing of whether it took: the request is settled
    from a read of the membership, and the audit says the write may have been applied."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    role = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, role)

    def applied_answered_unreadably(respond, r):
        respond(r)
        return ApiResponse(200, ["not", "a", "member"])

    sent = answer_writes(sandbox, *[lost] * (MAX_WRITE_ATTEMPTS - 1), applied_answered_unreadably)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert outcome.writes == MAX_WRITE_ATTEMPTS == len(sent)
    assert org.membership(workspace.id, member.ls_user_id).role_id == role.id
    uncertain = [d for kind, d in events(conn, request["request_id"]) if kind == "write_uncertain"]
    assert [d["maybe_applied"] for d in uncertain] == [True] * MAX_WRITE_ATTEMPTS, uncertain


def test_only_the_latest_unbuilt_observation_stands_for_what_grants_will_show(live):
    """Two grants of one membership are verified before dbt builds ``grants``, then a revoke of
    the second role: the revoke compares the live role with the latest of those observations,
    not the first, so it records no hand change (no ``found`` row, no false drift)."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    first_role, then_role = roles_other_than(org, held_role_id)[:2]
    first, then = (queued(conn, "grant", member, workspace, role) for role in (first_role, then_role))
    revoke = queued(conn, "revoke", member, workspace, then_role)

    outcomes = provision(sandbox, conn, first, then, revoke)

    assert [outcomes[r["request_id"]].status for r in (first, then, revoke)] == ["applied"] * 3, outcomes
    assert conn.execute(f"SELECT request_id, role_id, observed FROM {RAW_SCHEMA}.provisioning_observations "
                        "ORDER BY verified_at").fetchall() == [
        (first["request_id"], first_role.id, "verified"), (then["request_id"], then_role.id, "verified"),
        (revoke["request_id"], None, "verified")]


def test_a_role_change_verified_by_the_batch_listing_records_the_members_workspace_identity(live):
    """The batch's second listing confirms a role change but lists no workspace identity: the
    one the change wrote to is recorded (the grant's end checks it still undoes that membership)."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    role = roles_other_than(org, held_role_id, ("Viewer", "Editor"))[0]
    held_identity = org.membership(workspace.id, member.ls_user_id).id
    request = queued(conn, "grant", member, workspace, role)

    outcome = provision_by_listing(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.plan.kind == "change_role", outcome
    assert dict(events(conn, request["request_id"]))["verified"]["path"] == ORG_LISTING_PATH
    identity = org.membership(workspace.id, member.ls_user_id).id
    assert identity == held_identity and observations(conn, request["request_id"]) == [(role.id, identity, "verified")]


def test_the_writes_a_request_took_count_a_dead_runs_write_and_every_lost_answer(live):
    """A run that died sent the grant's write, which did not take; the next run's writes are all
    answered 502, the last one applied all the same. Read back, the request is applied, and
    its write count holds the dead run's write and each of this run's."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    role = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, role, status="in_progress")
    sent_by_a_dead_run(conn, request, plan="add")
    sent = answer_writes(sandbox, *[lost] * (MAX_WRITE_ATTEMPTS - 1), applied_answer_lost)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert len(sent) == MAX_WRITE_ATTEMPTS and outcome.writes == 1 + MAX_WRITE_ATTEMPTS, outcome


def test_a_last_write_refused_because_someone_made_the_change_is_read_back_and_settled(live):
    """The first two writes are lost (502, nothing applied); someone adds the member just before
    the last one, which LangSmith refuses (409). As after a conflict on an earlier attempt, the
    membership is read: the request is done, not failed; applied, since a lost write may be what
    made it so."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    viewer = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, viewer)

    taken = added_just_before(org, workspace, member, viewer)
    sent = answer_writes(sandbox, *[lost] * (MAX_WRITE_ATTEMPTS - 1), taken)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert outcome.writes == MAX_WRITE_ATTEMPTS == len(sent)
    assert [d["status_code"] for kind, d in events(conn, request["request_id"]) if kind == "write_answered"][-1] == 409
    assert status_of(conn, request["request_id"]) == ("applied", outcome.detail)
    assert [role_id for role_id, *_ in observations(conn, request["request_id"])] == [viewer.id]


def test_a_grant_whose_first_write_took_unanswered_then_changed_by_hand_keeps_the_role_it_replaced(live):
    """The grant's role change is applied but its answer lost (502); someone then gives the
    member a third role by hand, so the re-read plans the write again. As when a dead run sent
    the first write, the grant's prior role is the one that first write replaced."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    role, by_hand = roles_other_than(org, held_role_id)[:2]
    request = queued(conn, "grant", member, workspace, role, access_duration_seconds=3600)

    def applied_answer_lost_then_changed_by_hand(respond, r):
        answer = applied_answer_lost(respond, r)
        org.set_workspace_role(workspace.id, member.ls_user_id, by_hand.id)
        return answer

    answer_writes(sandbox, applied_answer_lost_then_changed_by_hand)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.writes == 2 == len(writes(sandbox)), outcome
    assert org.membership(workspace.id, member.ls_user_id).role_id == role.id
    [(prior_role_id,)] = conn.execute("SELECT prior_role_id FROM main.provisioning_requests WHERE request_id = ?",
                                      [request["request_id"]]).fetchall()
    assert prior_role_id == held_role_id


def test_the_settled_event_holds_the_status_and_detail_each_request_ended_with(live):
    """The audit's last word on a request is its outcome: its ``settled`` event holds the status
    and detail the request row ends with, for an applied request and a rejected one alike (the
    audit alone tells what became of each)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    applied = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    rejected = queued(conn, "grant", member, workspace, next(iter(org.roles_by_scope("organization"))))

    outcomes = provision(sandbox, conn, applied, rejected)

    assert [outcomes[r["request_id"]].status for r in (applied, rejected)] == ["applied", "rejected"]
    for request in (applied, rejected):
        outcome = outcomes[request["request_id"]]
        settled = [detail for kind, detail in events(conn, request["request_id"]) if kind == "settled"]
        assert settled == [{"status": outcome.status, "detail": outcome.detail}], settled
        assert status_of(conn, request["request_id"]) == (outcome.status, outcome.detail)


def test_a_read_retried_once_is_in_the_audit_of_the_read_it_was(live):
    """DESIGN.md section 4: one event per API call, retries included. The member lookup and the
    live read are each answered 429 once (Retry-After: 0): each read's own event records that
    attempt, and the calls that needed no retry record none."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    throttled = []

    def throttle_each_read_once(respond, r):
        route = next((path for path in (ORG_MEMBER_LOOKUP_PATH, WORKSPACE_MEMBERS_PATH) if r.path.startswith(path)),
                     None)
        if r.method == "GET" and route is not None and route not in throttled:
            throttled.append(route)
            return ApiResponse(429, {"detail": "Too many requests"}, {"Retry-After": "0"})
        return respond(r)

    wrap_respond(sandbox, throttle_each_read_once)
    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and len(throttled) == 2, (outcome, throttled)
    audit = dict(events(conn, request["request_id"]))
    for kind in ("validated_live", "read_live"):
        assert [(a["method"], a["status_code"]) for a in audit[kind]["retried"]] == [("GET", 429)], audit[kind]
    assert "retried" not in audit["verified"] and "retried" not in audit["write_answered"]


def listed_without_a_role(sandbox, workspace, member):
    """From now on LangSmith lists ``member`` in ``workspace`` without a role: a null ``role_id`` on
    the workspace's member row (the schema allows it), no ``role_id`` on the org listing's entry
    for that workspace (an optional field there)."""

    def strip(row):
        if isinstance(row, dict) and row.get("ls_user_id") == member.ls_user_id:
            if row.get("tenant_id") == workspace.id:
                return {**row, "role_id": None, "role_name": None}
            if isinstance(row.get("workspace_memberships"), list):
                return {**row, "workspace_memberships": [
                    {k: v for k, v in entry.items() if k not in ("role_id", "role_name")}
                    if entry.get("workspace_id") == workspace.id else entry
                    for entry in row["workspace_memberships"]]}
        return row

    def respond(original, r):
        response = original(r)
        if r.method == "GET" and isinstance(response.body, list):
            return replace(response, body=[strip(row) for row in response.body])
        return response

    wrap_respond(sandbox, respond)


@pytest.mark.parametrize("action", ["revoke", "grant"])
@pytest.mark.parametrize("read", ["org listing", "member lookup"])
def test_a_member_listed_without_a_role_fails_the_request_and_is_never_read_as_not_a_member(live, read, action):
    """A membership LangSmith lists with no role is a role provisioning cannot tell: never "not a
    member" (a revoke settled with nothing removed, the member dropped from grants). The request
    fails saying so, nothing is written, and nothing is recorded as observed."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    role = org.roles[held_role_id] if action == "revoke" else roles_other_than(org, held_role_id)[0]
    request = queued(conn, action, member, workspace, role)
    listed_without_a_role(sandbox, workspace, member)

    outcome = (provision_by_listing if read == "org listing" else provision)(sandbox, conn, request)[
        request["request_id"]]

    assert outcome.status == "failed", outcome
    assert "without a role" in outcome.detail and workspace.id in outcome.detail, outcome.detail
    assert writes(sandbox) == []
    assert roles_observed(conn, request["request_id"]) == []
    assert org.membership(workspace.id, member.ls_user_id).role_id == held_role_id


@pytest.mark.parametrize("read", ["org listing", "member lookup"])
def test_a_write_whose_member_is_then_listed_without_a_role_is_not_verified(live, read):
    """The grant's add went out, and LangSmith then lists the member without a role: not verified,
    so the request fails (never applied on a read that says nothing of the role), with what it
    wrote in its events and nothing recorded as verified."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))

    def strip_after_the_write(respond, r):
        response = respond(r)
        if r.method in WRITES:
            listed_without_a_role(sandbox, workspace, member)
        return response

    wrap_respond(sandbox, strip_after_the_write)
    outcome = (provision_by_listing if read == "org listing" else provision)(sandbox, conn, request)[
        request["request_id"]]

    assert outcome.status == "failed", outcome
    assert "without a role" in outcome.detail, outcome.detail
    assert [w.method for w in writes(sandbox)] == ["POST"]
    assert roles_observed(conn, request["request_id"]) == []


def test_a_removal_the_batch_listing_shows_listed_without_a_role_is_read_back_not_taken_as_done(live):
    """The revoke's DELETE is answered, but LangSmith did not keep it, and its listing then shows
    the member in the workspace without a role. A membership listed without a role confirms
    nothing, not even "not a member": the request is read back on its own, which cannot tell the
    role either, so it fails; never applied with the member still there."""
    sandbox, org, conn = live
    member, workspace, held_role_id = holder_and_workspace(org)
    grants_showing(conn, member, workspace, held_role_id)
    request = queued(conn, "revoke", member, workspace, org.roles[held_role_id])

    def removal_not_kept(respond, r):
        response = respond(r)
        if r.method == "DELETE":
            org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=held_role_id)
            listed_without_a_role(sandbox, workspace, member)
        return response

    wrap_respond(sandbox, removal_not_kept)
    outcome = provision_by_listing(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "failed", outcome
    assert "without a role" in outcome.detail, outcome.detail
    assert [w.method for w in writes(sandbox)] == ["DELETE"]
    assert roles_observed(conn, request["request_id"]) == []


def test_a_grant_a_dead_run_wrote_that_took_is_applied_counting_that_write(live):
    """A run that died sent the grant's write, and it took: the next run finds the member as
    asked, sends nothing, and settles it applied, its write count holding the dead run's write."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    role = workspace_role(org, "Viewer")
    request = queued(conn, "grant", member, workspace, role, status="in_progress")
    sent_by_a_dead_run(conn, request, plan="add")
    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=role.id)

    outcome = provision(sandbox, conn, request)[request["request_id"]]

    assert outcome.status == "applied" and outcome.detail.startswith("verified"), outcome
    assert outcome.writes == 1 and writes(sandbox) == [], outcome


def recorded_kinds(conn, request: dict) -> list[str]:
    return [kind for (kind,) in conn.execute(
        'SELECT kind FROM main.provisioning_events WHERE request_id = ? ORDER BY "at", event_id',
        [request["request_id"]]).fetchall()]


def test_a_run_dying_after_a_write_was_answered_still_records_the_answer(live, monkeypatch):
    """A run stops on an unexpected error right after its write was answered, before the read
    that verifies it: the answer (buffered with the verification, to be written in one
    transaction) is recorded all the same, so the trail says the write went through; the next
    run settles the request from live state."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    real_read_live = Provisioner._read_live

    def verifying_read_crashes(self, *args, kind="read_live"):
        if kind == "verified":
            raise RuntimeError("simulated crash before the verifying read")
        return real_read_live(self, *args, kind=kind)

    with monkeypatch.context() as patch:
        patch.setattr(Provisioner, "_read_live", verifying_read_crashes)
        with pytest.raises(RuntimeError, match="simulated crash"):
            provision(sandbox, conn, request)
    assert recorded_kinds(conn, request)[-2:] == ["write_sent", "write_answered"]
    [(status,)] = conn.execute("SELECT detail->>'status_code' FROM main.provisioning_events "
                               "WHERE request_id = ? AND kind = 'write_answered'", [request["request_id"]]).fetchall()
    assert status == "200"
    outcome = provision(sandbox, conn, request)[request["request_id"]]
    assert (outcome.status, outcome.writes) == ("applied", 1), outcome
    assert len(writes(sandbox)) == 1


class CommitFailingOnce:
    """A connection whose first COMMIT (or every one) fails as DuckDB's does when a transaction cannot be
    committed (a constraint it breaks at commit, a full disk): DuckDB rolls the transaction back
    and raises, and a ROLLBACK after that finds no transaction ("cannot rollback - no
    transaction is active", measured). A failure to commit cannot be caused here at will."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, *, every_time: bool = False):
        self.conn, self.failed, self.every_time = conn, False, every_time

    def execute(self, sql, *args):
        if sql == "COMMIT" and (self.every_time or not self.failed):
            self.failed = True
            self.conn.execute("ROLLBACK")
            raise duckdb.TransactionException("Failed to commit: simulated")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_commit_that_fails_raises_its_own_error_and_loses_no_event(live):
    """The commit recording a write before it goes out fails: the run stops with that error
    (not with the ROLLBACK's "no transaction is active", which said nothing of the cause), sends
    no write, and still records what it read (events a failed commit put back), but no write
    sent. The next run applies the request with one write."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    provisioner = Provisioner(client_for(sandbox), CommitFailingOnce(conn), run_id="run-1")
    with pytest.raises(duckdb.TransactionException, match="Failed to commit: simulated"):
        provisioner.process_all([request])
    assert writes(sandbox) == []
    kinds = recorded_kinds(conn, request)
    assert "read_live" in kinds and "planned" in kinds and "write_sent" not in kinds, kinds
    outcome = provision(sandbox, conn, request)[request["request_id"]]
    assert (outcome.status, outcome.writes) == ("applied", 1), outcome
    assert len(writes(sandbox)) == 1


def test_a_run_whose_every_commit_fails_stops_with_the_first_error_and_logs_what_it_could_not_record(live):
    """The database fails every commit (the disk stays full): the run stops with the error of
    its first failed commit, sending no write; its last try to record what it had buffered
    fails too, which it logs, and nothing of the run is in the database."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    logged: list[str] = []
    provisioner = Provisioner(client_for(sandbox), CommitFailingOnce(conn, every_time=True), run_id="run-1",
                              log=logged.append)
    with pytest.raises(duckdb.TransactionException, match="Failed to commit: simulated"):
        provisioner.process_all([request])
    assert writes(sandbox) == []
    assert recorded_kinds(conn, request) == []
    assert any("the run's last events could not be recorded (TransactionException" in line for line in logged), logged


def test_a_run_interrupted_in_the_calling_thread_takes_no_further_request_of_a_chain_under_way(live, monkeypatch):
    """A batch for two threads is cancelled (an interrupt in the calling thread: the Dagster UI,
    Ctrl-C) while a thread writes the first of one membership's two requests: that thread
    finishes the request and takes not the chain's next one, which waits for the next run
    (leaving the pool waits for its threads: without being told, the chain would run to its end)."""
    sandbox, org, conn = live
    viewer, editor = workspace_role(org, "Viewer"), workspace_role(org, "Editor")
    pairs = [(member, workspace) for workspace in org.shared_workspaces() for member in outsiders(org, workspace)]
    assert len(pairs) > executor.REQUESTS_PER_THREAD + 1  # two threads' worth besides the chain
    (chained, chain_workspace), *others = pairs
    first = queued(conn, "grant", chained, chain_workspace, viewer)
    then = queued(conn, "grant", chained, chain_workspace, editor)  # the chain's later request
    requests = [first, then, *(queued(conn, "grant", member, workspace, viewer) for member, workspace in others)]
    provisioner = Provisioner(client_for(sandbox), conn, run_id="run-1")
    real_add, writing = LangSmithClient.add_workspace_member, threading.Event()

    class Interrupted(BaseException):
        pass

    def the_chains_write_returns_once_the_run_is_stopping(self, workspace_id, *, org_identity_id, role_id):
        if (workspace_id, org_identity_id) == (chain_workspace.id, chained.id):
            writing.set()
            deadline = time.monotonic() + 10
            while not provisioner._stopping and time.monotonic() < deadline:
                time.sleep(0.01)
        return real_add(self, workspace_id, org_identity_id=org_identity_id, role_id=role_id)

    def interrupted_while_the_chain_writes(futures):
        assert writing.wait(60), "the chain's first write never went out"
        raise Interrupted("simulated cancel")

    monkeypatch.setattr(LangSmithClient, "add_workspace_member", the_chains_write_returns_once_the_run_is_stopping)
    monkeypatch.setattr(executor, "as_completed", interrupted_while_the_chain_writes)
    with pytest.raises(Interrupted):
        provisioner.process_all(requests)

    assert "PATCH" not in [w.method for w in writes(sandbox)], writes(sandbox)
    assert org.membership(chain_workspace.id, chained.ls_user_id).role_id == viewer.id
    assert status_of(conn, first["request_id"])[0] == "applied"
    assert status_of(conn, then["request_id"])[0] == "pending"


def test_an_event_buffered_while_another_commit_writes_is_written_by_its_own_commit(live, monkeypatch):
    """Group commit: a thread buffers its write-ahead event while another thread's commit, which
    took the events before it, is under way. Its own commit for that event writes it rather
    than taking it for written by the other (its write would go out unrecorded)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"))
    provisioner = Provisioner(client_for(sandbox), conn, run_id="run-1")
    real_record, buffered = queue.record_events, []

    def another_thread_buffers_its_event_meanwhile(conn, events, **kwargs):
        if not buffered:
            thread = threading.Thread(target=lambda: buffered.append(
                provisioner._event(request["request_id"], "write_sent", {"method": "POST"})))
            thread.start()
            thread.join(10)
        return real_record(conn, events, **kwargs)

    monkeypatch.setattr(queue, "record_events", another_thread_buffers_its_event_meanwhile)
    provisioner._event(request["request_id"], "planned", {"plan": "add"})
    provisioner._commit()
    [sequence] = buffered
    provisioner._commit(through=sequence)

    assert recorded_kinds(conn, request) == ["planned", "write_sent"]


def test_requests_a_failed_run_hands_back_say_why_with_the_fix(live):
    """The run fails on an answer no run can use (not an outage): each request it claimed and did
    not settle goes back to pending, its status_detail naming the failure and its fix, and its
    ``released`` event the failure (there is no outage to name)."""
    sandbox, org, conn = live
    member, workspace = outsider_and_workspace(org)
    request = queued(conn, "grant", member, workspace, workspace_role(org, "Viewer"), status="in_progress")
    failure = PermissionDeniedError("403 Forbidden", method="GET", path="/api/v1/workspaces")
    provisioner = Provisioner(client_for(sandbox), conn, run_id="run-1")

    assert provisioner.release_unsettled([request], failure=failure) == [request["request_id"]]

    status, detail = status_of(conn, request["request_id"])
    assert status == "pending", detail
    assert f"the run failed ({failure}; fix: {PermissionDeniedError.fix})" in detail, detail
    assert [d for kind, d in events(conn, request["request_id"]) if kind == "released"] == [{"error": str(failure)}]
