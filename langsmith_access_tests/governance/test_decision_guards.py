"""The refusals of an approval that the other governance tests do not reach: a grant whose
--until passed while it waited, an approver named by something other than an email, and which
later revokes have (and have not) the last word over a grant awaiting approval."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from langsmith_access.api import approve, deliver_notifications, deny, provision, request_grant, request_revoke
from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning.approvals import (
    decide,
    decide_on,
    expire_overdue,
    govern_pending_grants,
    overdue_requests,
)
from langsmith_access.provisioning.expiry import expiry_work_due
from langsmith_access.provisioning.queue import ChangeRequest, fetch_requests, submit_on
from langsmith_access.store.queries import typed_email
from langsmith_access.store.schema import ensure_schema
from langsmith_access.store.sql import email_key
from langsmith_access_tests.governance.support import (
    POLICY,
    WORKSPACE,
    cli,
    events,
    queued_before_admin_had_a_max,
    request_row,
    writes,
)
from langsmith_access_tests.helpers import query


def test_a_grant_whose_until_passed_while_it_awaited_approval_ends_approval_expired(governed):
    # Approved now, it would give nothing: the end it asked for came before its deadline. It
    # ends as a deadline ends a request (a decision after it is refused), saying why.
    sandbox, org, database, people, receiver = governed
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    with database.writer_lease("test: a request that has waited"), database.connect() as conn:
        waited = submit_on(conn, ChangeRequest("grant", people.outsiders[0].email, WORKSPACE, "Admin",
                                               until=datetime.now(UTC) - timedelta(hours=1)),
                           policy_path=Path(os.environ["LANGSMITH_ACCESS_POLICY"]),
                           notifier=Notifier("default", enabled=True), now=three_hours_ago)
    assert waited.status == "awaiting_approval", waited

    refused = approve(waited.request_id, by=people.admin.email)

    assert not refused.recorded and refused.status == "approval_expired", refused
    assert "which passed before it was approved, and is now approval_expired: ask for it again with a later --until" \
        in refused.message
    row = request_row(database, waited.request_id)
    assert row["status"] == "approval_expired"
    assert "its requested end (--until" in row["status_detail"] and "passed before it was approved" in row[
        "status_detail"]
    assert not deny(waited.request_id, by=people.admin.email).recorded
    deliver_notifications()
    [expired] = [b for b in receiver.bodies() if b["event"] == "request.approval_expired"]
    assert (expired["request_id"], expired["detail"]) == (waited.request_id, row["status_detail"])


def test_without_a_deadline_a_grant_awaiting_approval_ends_when_its_until_passes():
    # No ``wait_at_most``: the run ends it (``expire_overdue``) once the end it asked for has
    # come, saying so, with the usual event and notification; the expiry sensor wakes for it.
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    conn = duckdb.connect()
    ensure_schema(conn)
    for request_id, until in (("ends", at), ("later", at + timedelta(hours=1)), ("open", None)):
        conn.execute(
            "INSERT INTO main.provisioning_requests (request_id, action, user_id, user_email, workspace_id, "
            "workspace_name, role_id, role_name, status, requested_at, updated_at, access_until) "
            "VALUES (?, 'grant', 'u', 'ada@example.com', 'w', 'Production', 'r', 'Admin', 'awaiting_approval', "
            "?, ?, ?)", [request_id, at - timedelta(days=3), at - timedelta(days=3), until])

    assert [r["request_id"] for r in overdue_requests(conn, at - timedelta(microseconds=1))] == []
    assert expiry_work_due(conn, at, None) == ["ends"]
    assert expire_overdue(conn, at, Notifier("acme", enabled=True)) == ["ends"]

    statuses = dict(conn.execute("SELECT request_id, status FROM main.provisioning_requests").fetchall())
    assert statuses == {"ends": "approval_expired", "later": "awaiting_approval", "open": "awaiting_approval"}
    [detail] = [r["status_detail"] for r in fetch_requests(conn, "request_id = 'ends'")]
    assert detail == "its requested end (--until 2026-06-01T12:00Z) passed before it was approved"
    # The event keeps what ended it: no deadline, and the end it asked for.
    assert [(kind, json.loads(detail)) for kind, detail in conn.execute(
        "SELECT kind, detail FROM main.provisioning_events").fetchall()] == [
        ("approval_expired", {"deadline": None, "access_until": str(at)})]
    [(event, payload)] = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    assert event == "request.approval_expired" and json.loads(payload)["detail"] == detail


def test_an_approver_named_by_anything_but_an_email_is_refused(governed):
    sandbox, org, database, people, receiver = governed
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Admin")
    assert grant.status == "awaiting_approval", grant
    admin_id = people.admin.ls_user_id

    refused = approve(grant.request_id, by=admin_id)

    assert not refused.recorded and "--by must be the approver's email" in refused.message, refused
    assert request_row(database, grant.request_id)["status"] == "awaiting_approval"
    assert [d["reason"] for kind, d in events(database, grant.request_id) if kind == "decision_refused"] == [
        refused.message]


def test_a_later_revoke_that_was_rejected_or_ends_another_grant_does_not_block_an_approval(governed):
    # Only someone's revoke asked after the grant is its last word: one rejected changed
    # nothing, and the revoke that ends an earlier time-bound grant is nobody's word on this one.
    sandbox, org, database, people, receiver = governed
    rejected_after, expiry_after = people.outsiders[0], people.outsiders[1]
    grants = {}
    for grantee in (rejected_after, expiry_after):
        grants[grantee.email] = request_grant(grantee.email, WORKSPACE, "Admin")
        revoke = request_revoke(grantee.email, WORKSPACE, "Admin")
        assert grants[grantee.email].status == "awaiting_approval" and revoke.accepted
        with database.writer_lease("test: the revoke's fate"), database.connect() as conn:
            if grantee is rejected_after:
                conn.execute("UPDATE main.provisioning_requests SET status = 'rejected' WHERE request_id = ?",
                             [revoke.request_id])
            else:  # an expiry revoke, ending an earlier grant (any id will do: only its presence counts)
                conn.execute("UPDATE main.provisioning_requests SET parent_request_id = ? WHERE request_id = ?",
                             [grants[grantee.email].request_id, revoke.request_id])
        database.publish()

    for grantee in (rejected_after, expiry_after):
        approved = approve(grants[grantee.email].request_id, by=people.admin.email)
        assert approved.recorded and approved.status == "pending", (grantee.email, approved)


def test_a_later_grant_of_another_role_blocks_an_approval_while_it_holds_however_it_was_settled(governed):
    # Asked after the grant awaiting approval, a grant of another role that took effect is the
    # last word while it holds: found already given (already_satisfied), being applied (a run
    # took it), or given with no end (no policy max) as much as applied with an end to come.
    sandbox, org, database, people, receiver = governed
    found, applying, endless = people.outsiders[:3]
    admin = {grantee.email: request_grant(grantee.email, WORKSPACE, "Admin")
             for grantee in (found, applying, endless)}
    assert {grant.status for grant in admin.values()} == {"awaiting_approval"}
    viewer = {grantee.email: request_grant(grantee.email, WORKSPACE, "Viewer")
              for grantee in (found, applying, endless)}
    assert provision().success
    with database.writer_lease("test: how the later grants were settled"), database.connect() as conn:
        for grantee, settled in ((found, "status = 'already_satisfied'"),
                                 (applying, "status = 'in_progress', expires_at = NULL"),
                                 (endless, "expires_at = NULL")):
            conn.execute(f"UPDATE main.provisioning_requests SET {settled} WHERE request_id = ?",
                         [viewer[grantee.email].request_id])
    database.publish()

    for grantee in (found, applying, endless):
        refused = approve(admin[grantee.email].request_id, by=people.admin.email)
        assert not refused.recorded and refused.status == "awaiting_approval", (grantee.email, refused)
        assert f"a grant of Viewer in {WORKSPACE} to {grantee.email} was asked after this grant (request " \
               f"{viewer[grantee.email].request_id}, " in refused.message, refused.message

def test_a_revoke_asked_before_the_grant_does_not_block_its_approval(governed):
    # Revoke, then grant: the grant is the last word, and approving it gives the role.
    sandbox, org, database, people, receiver = governed
    grantee = people.outsiders[0]
    revoke = request_revoke(grantee.email, WORKSPACE, "Admin")
    grant = request_grant(grantee.email, WORKSPACE, "Admin")
    assert revoke.accepted and grant.status == "awaiting_approval", (revoke, grant)

    approved = approve(grant.request_id, by=people.admin.email)

    assert approved.recorded and approved.status == "pending", approved


def test_an_approver_who_asked_for_a_grant_may_deny_it_but_not_approve_it(governed):
    # Self-approval is about approving: withdrawing your own request by denying it is taken.
    sandbox, org, database, people, receiver = governed
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by=people.admin.email)
    assert grant.status == "awaiting_approval", grant

    refused = approve(grant.request_id, by=people.admin.email)
    assert not refused.recorded and refused.message.startswith("self-approval:"), refused
    withdrawn = deny(grant.request_id, by=people.admin.email, comment="asked by mistake")

    assert withdrawn.recorded and withdrawn.status == "denied", withdrawn
    row = request_row(database, grant.request_id)
    assert (row["status"], row["status_detail"]) == ("denied", f"denied by {people.admin.email}: asked by mistake")


def test_only_an_approver_may_deny_and_a_refused_denial_is_recorded_and_leaves_the_grant_waiting(governed):
    # DESIGN.md section 10: `deny` exits 2 when refused (not an approver), the refusal recorded
    # with its reason; a denial is a decision only an approver may take (only approving is
    # exempt from the self-approval rule, not denying from the approvers rule).
    sandbox, org, database, people, receiver = governed
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by="ops@example.com")
    assert grant.status == "awaiting_approval", grant
    refused = {
        "not an approver": (people.editors[0].email, f"is neither an Admin of {WORKSPACE}"),
        "disabled": (people.disabled.email, "disabled member"),
        "invitee": (people.invitee, "only a pending invite"),
        "stranger": ("nobody@example.com", "is not a member of the organization"),
    }
    for who, (email, reason) in refused.items():
        attempt = cli("deny", grant.request_id, "--by", email, "--comment", "no")
        assert attempt.returncode == 2, (who, attempt.stdout, attempt.stderr)
        assert reason in attempt.stderr, (who, attempt.stderr)
    row = request_row(database, grant.request_id)
    assert (row["status"], row["approved_by"]) == ("awaiting_approval", None)
    assert query(database.path, "SELECT count(*) FROM main.provisioning_approvals") == [(0,)]
    refusals = [d for kind, d in events(database, grant.request_id) if kind == "decision_refused"]
    assert len(refusals) == len(refused) and all(d["reason"] for d in refusals), refusals

    denied = cli("deny", grant.request_id, "--by", people.admin.email, "--comment", "not needed")
    assert denied.returncode == 0, denied.stderr
    assert request_row(database, grant.request_id)["status"] == "denied"
    assert writes(sandbox) == []


def test_a_grant_without_end_is_not_approved_once_the_policy_gives_its_role_a_max(governed, tmp_path, monkeypatch):
    # Queued when Admin had no max (no end), approved after the policy gave Admin 8h: approving
    # it would grant for ever what the policy now allows for 8 hours.
    sandbox, org, database, people, receiver = governed
    grant = queued_before_admin_had_a_max(tmp_path, monkeypatch, people.outsiders[0].email)
    assert request_row(database, grant.request_id)["expires_at"] is None

    refused = approve(grant.request_id, by=people.admin.email)

    assert not refused.recorded and refused.status == "awaiting_approval", refused
    assert ("it has no end, and the policy now gives Admin grants one: for 8h from when it is applied "
            "(the role's maximum)") in refused.message
    # The refusal says to deny it: a deny is taken whatever the terms.
    assert "deny it, and ask again within the policy" in refused.message
    denied = deny(grant.request_id, by=people.admin.email)
    assert denied.recorded and request_row(database, grant.request_id)["status"] == "denied", denied


def test_at_its_deadline_or_its_until_a_request_is_past_them():
    # The instant itself counts as past, for a decision as for a run (``provision`` expires
    # what ``overdue_requests`` lists): no request is approved at an instant a run would expire it.
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    conn = duckdb.connect()
    ensure_schema(conn)
    for request_id, deadline, until in (("waited", at, None), ("ends", None, at)):
        conn.execute(
            "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, status, "
            "requested_at, updated_at, approval_deadline, access_until) "
            "VALUES (?, 'grant', 'u', 'w', 'r', 'awaiting_approval', ?, ?, ?, ?)",
            [request_id, at - timedelta(hours=72), at - timedelta(hours=72), deadline, until])

    assert overdue_requests(conn, at - timedelta(microseconds=1)) == []
    assert [r["request_id"] for r in overdue_requests(conn, at)] == ["waited", "ends"]
    # What wakes the expiry sensor and a dry run.
    assert expiry_work_due(conn, at, None) == ["waited", "ends"]
    # Each ends for what came first: the deadline, or the end the grant asked for.
    conn.execute("UPDATE main.provisioning_requests SET access_until = ? WHERE request_id = 'waited'",
                 [at - timedelta(minutes=1)])
    conn.execute("UPDATE main.provisioning_requests SET approval_deadline = ? WHERE request_id = 'ends'",
                 [at - timedelta(minutes=1)])
    waited = decide_on(conn, "waited", "approved", "ada@example.com", now=at)
    assert (waited.recorded, waited.status) == (False, "approval_expired"), waited
    ends = decide_on(conn, "ends", "approved", "ada@example.com", now=at)
    assert (ends.recorded, ends.status) == (False, "approval_expired"), ends
    assert "waited past its approval deadline (2026-06-01T11:59Z)" in ends.message
    assert "which passed before it was approved" in waited.message
    details = dict(conn.execute("SELECT request_id, status_detail FROM main.provisioning_requests").fetchall())
    assert details == {"waited": "its requested end (--until 2026-06-01T11:59Z) passed before it was approved",
                       "ends": "no decision before 2026-06-01T11:59Z"}


def test_what_came_first_is_told_by_the_instant_even_in_the_hour_a_hosts_clocks_repeat():
    # DuckDB hands times back in the session's zone (the host's), and Python compares two times of
    # one ZoneInfo by their wall clock alone: in New York's repeated hour, the --until at 01:50 EDT
    # (05:50Z) would read as later than the deadline at 01:10 EST (06:10Z), and the request would
    # say it waited past its deadline when the end it asked for came 20 minutes before that.
    at = datetime(2027, 11, 7, 7, tzinfo=UTC)
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'America/New_York'")
    ensure_schema(conn)
    conn.execute(
        "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, status, "
        "requested_at, updated_at, approval_deadline, access_until) "
        "VALUES ('both', 'grant', 'u', 'w', 'r', 'awaiting_approval', ?, ?, ?, ?)",
        [at - timedelta(hours=72), at - timedelta(hours=72), datetime(2027, 11, 7, 6, 10, tzinfo=UTC),
         datetime(2027, 11, 7, 5, 50, tzinfo=UTC)])
    decided = decide_on(conn, "both", "approved", "ada@example.com", now=at)
    assert (decided.recorded, decided.status) == (False, "approval_expired"), decided
    assert "which passed before it was approved" in decided.message, decided.message
    [(detail,)] = conn.execute("SELECT status_detail FROM main.provisioning_requests").fetchall()
    assert detail == "its requested end (--until 2027-11-07T05:50Z) passed before it was approved"


def test_a_decision_at_the_instant_of_the_deadline_alone_finds_the_request_expired():
    # No --until to end it first: the deadline itself is what a decision at that very instant meets.
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    conn = duckdb.connect()
    ensure_schema(conn)
    conn.execute(
        "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, status, "
        "requested_at, updated_at, approval_deadline) VALUES ('due', 'grant', 'u', 'w', 'r', 'awaiting_approval', "
        "?, ?, ?)", [at - timedelta(hours=72), at - timedelta(hours=72), at])
    decided = decide_on(conn, "due", "approved", "ada@example.com", now=at)
    assert (decided.recorded, decided.status) == (False, "approval_expired"), decided
    assert "waited past its approval deadline (2026-06-01T12:00Z)" in decided.message


def test_a_grant_only_its_requester_or_grantee_could_approve_is_refused_at_once(governed, tmp_path, monkeypatch):
    # Without self-approval, a grant whose only approvers are its requester or its grantee can
    # never be approved: refused when asked (saying why and what to fix, and recorded), never
    # left waiting for its deadline. One that someone else may approve waits for them.
    sandbox, org, database, people, receiver = governed
    approver, other, third = people.outsiders[:3]
    only_one = tmp_path / "only-one-approver.yaml"
    only_one.write_text(f'approval:\n  required: ["Admin"]\n  approvers: ["{approver.email.upper()}"]\n')
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(only_one))

    for_the_approver = request_grant(approver.email, WORKSPACE, "Admin", requested_by="ops@example.com")
    by_the_approver = request_grant(other.email, WORKSPACE, "Admin", requested_by=approver.email.lower())
    for result, who in ((for_the_approver, "the request is for"), (by_the_approver, "asked for this request")):
        assert result.status == "rejected", result
        assert result.message.startswith("nobody could approve this request"), result.message
        assert who in result.message and "approval.approvers" in result.message, result.message
        assert request_row(database, result.request_id)["status"] == "rejected"

    by_someone_else = request_grant(other.email, WORKSPACE, "Admin", requested_by="ops@example.com")
    assert by_someone_else.status == "awaiting_approval", by_someone_else
    # Under workspace_admins, the workspace's other Admins and the Organization Admins may approve
    # what one Admin asks for.
    only_one.write_text(POLICY)
    by_an_admin = request_grant(third.email, WORKSPACE, "Admin", requested_by=people.admin.email)
    assert by_an_admin.status == "awaiting_approval", by_an_admin


def test_a_pending_grant_a_changed_policy_sends_to_nobody_who_could_approve_is_rejected(governed):
    # The policy changed while grants waited in the queue, and now sends them for approval. One
    # that nobody could approve (its only approver is its grantee or requester, without
    # self-approval; or the approvers it names are no active members) would wait out its deadline
    # for a decision that cannot come: a run rejects it, saying why, as it would be refused if it
    # were asked now. One that someone else may approve waits for them.
    sandbox, org, database, people, receiver = governed
    approver, other, third, fourth = people.outsiders[:4]
    queued = {
        "for_the_approver": request_grant(approver.email, WORKSPACE, "Editor", requested_by="ops@example.com"),
        "by_the_approver": request_grant(other.email, WORKSPACE, "Editor", requested_by=approver.email.lower()),
        "by_someone_else": request_grant(third.email, WORKSPACE, "Editor", requested_by="ops@example.com"),
    }
    assert {name: q.status for name, q in queued.items()} == {name: "pending" for name in queued}
    policy = Path(os.environ["LANGSMITH_ACCESS_POLICY"])
    policy.write_text(f'approval:\n  required: ["Editor"]\n  approvers: ["{approver.email.upper()}"]\n')

    shown = cli("provision", "--dry-run")  # said, not done
    assert shown.returncode == 0, shown.stderr
    for name in ("for_the_approver", "by_the_approver"):
        assert f"would be rejected {queued[name].request_id}" in shown.stdout, shown.stdout
    assert f"would be awaiting_approval {queued['by_someone_else'].request_id}" in shown.stdout, shown.stdout
    assert request_row(database, queued["for_the_approver"].request_id)["status"] == "pending"

    done = provision()
    assert done.success, done.failure
    assert sorted((c["request_id"], c["status"]) for c in done.outputs["apply_requests"]["policy_changes"]) == sorted([
        (queued["for_the_approver"].request_id, "rejected"), (queued["by_the_approver"].request_id, "rejected"),
        (queued["by_someone_else"].request_id, "awaiting_approval")])
    rows = {name: request_row(database, q.request_id) for name, q in queued.items()}
    for name, who in (("for_the_approver", "the request is for"), ("by_the_approver", "asked for this request")):
        detail = rows[name]["status_detail"]
        assert rows[name]["status"] == "rejected" and rows[name]["approval_deadline"] is None, rows[name]
        assert detail.startswith("the access policy changed since this grant was queued: it now needs approval, "
                                 "and nobody could approve this request"), detail
        assert who in detail and "approval.self_approval" in detail, detail
        assert [(kind, d.get("stage")) for kind, d in events(database, queued[name].request_id)] == [
            ("queued", None), ("rejected", "policy")]
    assert rows["by_someone_else"]["status"] == "awaiting_approval"
    assert writes(sandbox) == []
    assert all(org.membership(people.workspace.id, m.ls_user_id) is None for m in (approver, other, third))

    # Named approvers who are no members of the org: nobody could approve either.
    policy.write_text(POLICY)
    ghosted = request_grant(fourth.email, WORKSPACE, "Editor", requested_by="ops@example.com")
    assert ghosted.status == "pending", ghosted
    policy.write_text('approval:\n  required: ["Editor"]\n  approvers: [ghost@nowhere.example]\n')
    assert provision().success
    row = request_row(database, ghosted.request_id)
    assert row["status"] == "rejected", row
    assert "the policy's approvers (ghost@nowhere.example) are none of them active members" in row["status_detail"]
    assert org.membership(people.workspace.id, fourth.ls_user_id) is None

    deliver_notifications()
    said = [(b["event"], b["request_id"]) for b in receiver.bodies()]
    for request_id in (queued["for_the_approver"].request_id, queued["by_the_approver"].request_id,
                       ghosted.request_id):
        assert ("request.failed", request_id) in said
        assert ("request.awaiting_approval", request_id) not in said
    assert ("request.awaiting_approval", queued["by_someone_else"].request_id) in said


# LangSmith keeps an email as it was typed: it may send "Rene" + U+0301 (decomposed, as macOS
# input gives) where the approver types the composed "ren\u00e9" that looks the same.
DECOMPOSED_APPROVER, COMPOSED_APPROVER = "Rene\u0301@example.com", "ren\u00e9@example.com"
PROD_ID, ADMIN_ROLE, ORG_ADMIN_ROLE = "ws-prod", "role-admin", "role-org-admin"
GRANTEE, APPROVER = "user-ada", "user-rene"


def hand_synced() -> duckdb.DuckDBPyConnection:
    """A finished sync's tables, as small as approving needs: René, stored decomposed, is the
    Admin of Production; an invite to Zoé, stored decomposed, is pending."""
    conn = duckdb.connect()
    ensure_schema(conn)
    conn.execute("CREATE TABLE main.users AS SELECT * FROM (VALUES (?, 'oi-ada', 'ada@example.com', false, NULL), "
                 "(?, 'oi-rene', ?, false, NULL)) t(user_id, org_identity_id, email, is_disabled, org_role_id)",
                 [GRANTEE, APPROVER, DECOMPOSED_APPROVER])
    conn.execute("CREATE TABLE main.pending_invites AS SELECT 'inv-1' AS invite_id, 'Zoe\u0301@example.com' AS email")
    conn.execute("CREATE TABLE main.workspaces AS SELECT ? AS workspace_id, 'Production' AS display_name", [PROD_ID])
    conn.execute("CREATE TABLE main.roles AS SELECT * FROM (VALUES (?, 'WORKSPACE_ADMIN', 'Admin', 'workspace'), "
                 "(?, 'ORGANIZATION_ADMIN', 'Organization Admin', 'organization')) "
                 "t(role_id, name, display_name, access_scope)", [ADMIN_ROLE, ORG_ADMIN_ROLE])
    conn.execute("CREATE TABLE main.grants AS SELECT 'workspace_role' AS entitlement_type, ? AS workspace_id, "
                 "? AS role_id, ? AS user_id", [PROD_ID, ADMIN_ROLE, APPROVER])
    return conn


def queue_admin_grant(conn: duckdb.DuckDBPyConnection, request_id: str, status: str, at: datetime, **more) -> None:
    """A grant of Admin on Production to Ada, asked by ops@example.com at ``at``, in ``status``
    (``more``: other columns of the queue, such as access_until or run_id)."""
    columns = {"request_id": request_id, "action": "grant", "user_id": GRANTEE, "user_email": "ada@example.com",
               "workspace_id": PROD_ID, "workspace_name": "Production", "role_id": ADMIN_ROLE, "role_name": "Admin",
               "status": status, "requested_by": "ops@example.com", "requested_at": at, "updated_at": at, **more}
    conn.execute(f"INSERT INTO main.provisioning_requests ({', '.join(columns)}) "
                 f"VALUES ({', '.join('?' for _ in columns)})", list(columns.values()))


def test_an_approver_langsmith_sent_decomposed_decides_with_the_email_typed_composed(tmp_path):
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    conn = hand_synced()
    for request_id in ("to-approve", "to-deny"):
        queue_admin_grant(conn, request_id, "awaiting_approval", at)

    # The invitee is known as one (and refused as one), not taken for a stranger.
    invitee = decide_on(conn, "to-deny", "denied", "zo\u00e9@example.com", policy_path=policy, now=at)
    assert not invitee.recorded and "has only a pending invite" in invitee.message, invitee
    approved = decide_on(conn, "to-approve", "approved", COMPOSED_APPROVER, policy_path=policy, now=at)
    assert (approved.recorded, approved.status) == (True, "pending"), approved
    denied = decide_on(conn, "to-deny", "denied", COMPOSED_APPROVER.upper(), policy_path=policy, now=at)
    assert (denied.recorded, denied.status) == (True, "denied"), denied


def test_a_request_id_typed_in_capitals_or_braces_names_the_request(tmp_path):
    # Ids are written as lower-case UUIDs; one copied from a sheet in capitals is the same request.
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    conn = hand_synced()
    ids = {"approved": "5c2e4ff0-7067-4493-b02b-f2dbc07ddd63", "denied": "6d3f5001-8178-45a4-8c13-03cd18eee074"}
    for request_id in ids.values():
        queue_admin_grant(conn, request_id, "awaiting_approval", at)

    approved = decide_on(conn, ids["approved"].upper(), "approved", COMPOSED_APPROVER, policy_path=policy, now=at)
    denied = decide_on(conn, "{" + ids["denied"].upper() + "}", "denied", COMPOSED_APPROVER, policy_path=policy,
                       now=at)

    assert (approved.recorded, approved.request_id, approved.status) == (True, ids["approved"], "pending"), approved
    assert (denied.recorded, denied.request_id, denied.status) == (True, ids["denied"], "denied"), denied
    assert conn.execute("SELECT request_id, decision FROM main.provisioning_approvals ORDER BY decision").fetchall() \
        == [(ids["approved"], "approved"), (ids["denied"], "denied")]


def test_a_named_approver_langsmith_sent_decomposed_is_an_active_member_when_named_composed(tmp_path):
    # The policy names the approver as a person types the email (composed): a grant needing them
    # waits for their decision, not refused as if nobody could approve it.
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'approval:\n  required: ["Admin"]\n  approvers: ["{COMPOSED_APPROVER.upper()}"]\n')
    conn = hand_synced()

    queued = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Production", "Admin",
                                           requested_by="ops@example.com"), policy_path=policy)

    assert queued.status == "awaiting_approval", queued
    approved = decide_on(conn, queued.request_id, "approved", COMPOSED_APPROVER, policy_path=policy)
    assert (approved.recorded, approved.status) == (True, "pending"), approved


def test_a_grant_asked_by_its_only_approver_whose_email_langsmith_sent_decomposed_is_refused_at_once(tmp_path):
    # René, the Admin of Production, is its only approver; he asks with his email typed composed,
    # and LangSmith sent it decomposed. He may not approve his own request: nobody could, so it is
    # refused now rather than left to wait out its deadline.
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    conn = hand_synced()

    queued = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Production", "Admin",
                                           requested_by=COMPOSED_APPROVER), policy_path=policy)

    assert queued.status == "rejected", queued
    assert f"self-approval: {DECOMPOSED_APPROVER} asked for this request" in queued.message, queued.message


@pytest.mark.parametrize("asked_as, decided_as", [
    ("ilker@example.com", "\u0130LKER@EXAMPLE.COM"),  # a Turkish keyboard's capital i is \u0130 (dotted)
    ("\u0130lker@example.com", "ilker@example.com"),
])
def test_a_requester_who_approves_with_a_dotted_capital_i_is_still_self_approving(tmp_path, asked_as, decided_as):
    # The database takes "\u0130LKER@EXAMPLE.COM" for Ilker (SQL lower() makes \u0130 a plain i), so
    # he is found as the Admin of Production and may approve; the self-approval check must take
    # that spelling for him too. Python's lower() makes \u0130 "i" + U+0307 (a different string),
    # which let him approve the request he asked for, spelling his email once each way.
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    conn = hand_synced()
    conn.execute("INSERT INTO main.users VALUES ('user-ilker', 'oi-ilker', 'ilker@example.com', false, NULL)")
    conn.execute("INSERT INTO main.grants VALUES ('workspace_role', ?, ?, 'user-ilker')", [PROD_ID, ADMIN_ROLE])

    queued = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Production", "Admin", requested_by=asked_as),
                       policy_path=policy)
    assert queued.status == "awaiting_approval", queued  # René, the other Admin, could approve it
    decided = decide_on(conn, queued.request_id, "approved", decided_as, policy_path=policy)

    assert not decided.recorded and decided.message.startswith(f"self-approval: {decided_as} asked for this"), decided
    assert fetch_requests(conn, "request_id = ?", [queued.request_id])[0]["status"] == "awaiting_approval"
    assert conn.execute("SELECT count(*) FROM main.provisioning_approvals").fetchone() == (0,)


def test_emails_are_compared_in_python_as_the_database_compares_them():
    # typed_email is email_key's twin: two spellings one side takes for one person, the other must too,
    # or a check made in Python (self-approval, the launcher) disagrees with who SQL found.
    odysseus = "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3"  # in capitals: its last sigma ends a word
    spellings = ["\u0130lker@example.com", "IR\u0130S@example.com", f"{odysseus}@example.com",
                 "A\u03a3@example.com", "Rene\u0301@Example.com ", "\u1e9e@example.com"]
    conn = duckdb.connect()
    in_sql = [conn.execute(f"SELECT {email_key('?')}", [text]).fetchone()[0] for text in spellings]
    assert [typed_email(text) for text in spellings] == in_sql


def an_admin_grant_awaiting_approval(tmp_path):
    """A hand-synced org whose policy sends Admin grants for approval by workspace Admins, and
    request ``waiting`` (Admin in Production for Ada, asked by ops) awaiting it since ``at``."""
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    conn = hand_synced()
    queue_admin_grant(conn, "waiting", "awaiting_approval", at)
    return conn, policy, at


def test_a_run_launched_by_the_approver_with_the_email_spelt_decomposed_decides_as_them(tmp_path):
    # Dagster tags the launcher's email as the identity provider spells it, which may be
    # decomposed where the approver typed --by composed: the same person, not someone else.
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)

    approved = decide_on(conn, "waiting", "approved", COMPOSED_APPROVER, policy_path=policy, now=at,
                         launched_by=DECOMPOSED_APPROVER, run_id="launchpad-run")

    assert (approved.recorded, approved.status) == (True, "pending"), approved
    # The decision's event keeps the run it was typed into and who launched it, as a refusal's does.
    [(detail, run_id)] = conn.execute(
        "SELECT detail, run_id FROM main.provisioning_events WHERE kind = 'approved'").fetchall()
    assert (json.loads(detail)["launched_by"], run_id) == (DECOMPOSED_APPROVER, "launchpad-run"), detail


def test_a_decision_that_is_neither_approved_nor_denied_is_an_error_and_decides_nothing(governed):
    # From Python, "approve" (the command's verb) is not the table's "approved": taken as anything
    # but an error it would deny the request (every word but "approved" took the deny path).
    sandbox, org, database, people, receiver = governed
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Admin")
    assert grant.status == "awaiting_approval", grant

    for word in ("approve", "deny", "APPROVED", ""):
        with pytest.raises(ValueError, match="decision must be 'approved' or 'denied'"):
            decide(database, grant.request_id, word, people.admin.email)

    assert request_row(database, grant.request_id)["status"] == "awaiting_approval"
    assert sorted(kind for kind, _ in events(database, grant.request_id)) == ["approval_requested", "queued"]


def test_only_a_request_still_awaiting_approval_expires_past_its_deadline():
    # An approved, denied or applied request keeps the deadline it waited under: once decided,
    # that deadline passing expires nothing, records nothing and notifies nobody.
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    conn = duckdb.connect()
    ensure_schema(conn)
    for request_id, status in (("waiting", "awaiting_approval"), ("approved", "pending"), ("denied", "denied"),
                               ("applied", "applied")):
        conn.execute(
            "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, status, "
            "requested_at, updated_at, approval_deadline) VALUES (?, 'grant', 'u', 'w', 'r', ?, ?, ?, ?)",
            [request_id, status, at - timedelta(hours=72), at - timedelta(hours=72), at - timedelta(hours=1)])

    assert [r["request_id"] for r in overdue_requests(conn, at)] == ["waiting"]
    assert expiry_work_due(conn, at, None) == ["waiting"]
    assert expire_overdue(conn, at) == ["waiting"]

    statuses = dict(conn.execute("SELECT request_id, status FROM main.provisioning_requests").fetchall())
    assert statuses == {"waiting": "approval_expired", "approved": "pending", "denied": "denied", "applied": "applied"}
    assert conn.execute("SELECT request_id, kind FROM main.provisioning_events").fetchall() == [
        ("waiting", "approval_expired")]


def test_a_grant_a_changed_policy_sends_for_approval_waits_its_full_wait_from_then(tmp_path):
    # Queued days ago when nothing needed approval, then the policy sent Admin grants for
    # approval: the wait starts when the run sends it, not when it was asked (it would be
    # overdue, and expired, at once).
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    asked = at - timedelta(days=5)
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  wait_at_most: 48h\n')
    conn = hand_synced()
    queue_admin_grant(conn, "queued", "pending", asked)
    # One whose --until has passed is the run's to settle (it applies nothing), not the policy's.
    queue_admin_grant(conn, "ended", "pending", asked, access_until=at)

    changes = govern_pending_grants(conn, at, policy)

    assert [(c.request_id, c.status) for c in changes] == [("queued", "awaiting_approval")]
    [row] = fetch_requests(conn, "request_id = 'queued'")
    assert (row["status"], row["approval_deadline"]) == ("awaiting_approval", at + timedelta(hours=48))
    # Its event says the policy sent it, not the requester: it was queued as a plain grant.
    [(kind, detail)] = conn.execute(
        "SELECT kind, detail FROM main.provisioning_events WHERE request_id = 'queued'").fetchall()
    assert (kind, json.loads(detail)["policy_changed"]) == ("approval_requested", True), detail
    assert json.loads(detail)["deadline"] == str(at + timedelta(hours=48)), detail
    assert overdue_requests(conn, at + timedelta(hours=47)) == []
    assert fetch_requests(conn, "request_id = 'ended'")[0]["status"] == "pending"


def test_a_run_for_some_request_ids_measures_only_those_against_the_policy(tmp_path):
    # A run launched for one request (the Launchpad's request_ids, or its dry run) governs that
    # one: another pending grant the changed policy also catches waits for a run that takes it.
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  wait_at_most: 48h\n')
    conn = hand_synced()
    for request_id in ("asked", "other"):
        queue_admin_grant(conn, request_id, "pending", at)

    said = govern_pending_grants(conn, at, policy, request_ids=["asked"], dry_run=True)
    assert [(c.request_id, c.status) for c in said] == [("asked", "awaiting_approval")]
    changes = govern_pending_grants(conn, at, policy, request_ids=["asked"])
    assert [(c.request_id, c.status) for c in changes] == [("asked", "awaiting_approval")]
    assert fetch_requests(conn, "request_id = 'other'")[0]["status"] == "pending"


def test_an_approved_grant_waiting_for_its_run_is_not_sent_for_approval_again(tmp_path):
    # Approved, then pending until a run takes it: the run measures it against the policy
    # (``govern_pending_grants``), which still sends Admin grants for approval. The approval it
    # already has stands: it stays pending, with no second deadline and no second notification.
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)
    approved = decide_on(conn, "waiting", "approved", COMPOSED_APPROVER, policy_path=policy, now=at)
    assert (approved.recorded, approved.status) == (True, "pending"), approved

    changes = govern_pending_grants(conn, at + timedelta(minutes=5), policy, Notifier("acme", enabled=True))

    assert changes == []
    [row] = fetch_requests(conn, "request_id = 'waiting'")
    assert (row["status"], row["approved_by"]) == ("pending", COMPOSED_APPROVER)
    assert conn.execute("SELECT count(*) FROM main.notifications").fetchone() == (0,)


def test_a_grant_a_dead_run_claimed_but_never_wrote_is_measured_against_the_policy_as_a_pending_one(tmp_path):
    # Claimed by a run that died before sending its write, then the policy sent Admin grants for
    # approval: the next run takes it as pending again (queue.claim), so the policy as it is now
    # holds it for an approver, as it holds a pending one; one whose write went out is not held
    # (LangSmith may have it already: the run settles it from live state).
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    conn = hand_synced()
    for request_id in ("claimed", "written"):
        queue_admin_grant(conn, request_id, "in_progress", at, run_id="dead-run")
    conn.execute("INSERT INTO main.provisioning_events (event_id, request_id, \"at\", kind, detail) "
                 "VALUES ('e1', 'written', ?, 'write_sent', '{}')", [at])

    assert [(c.request_id, c.status) for c in govern_pending_grants(conn, at, policy, dry_run=True)] == [
        ("claimed", "awaiting_approval")]
    changes = govern_pending_grants(conn, at, policy, request_ids=["claimed", "written"])

    assert [(c.request_id, c.status) for c in changes] == [("claimed", "awaiting_approval")]
    statuses = dict(conn.execute("SELECT request_id, status FROM main.provisioning_requests").fetchall())
    assert statuses == {"claimed": "awaiting_approval", "written": "in_progress"}


def test_a_decision_typed_with_bytes_that_are_not_utf8_is_refused_and_recorded(tmp_path):
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)
    for request_id, by in (("waiting\udcff", COMPOSED_APPROVER), ("waiting", "ren\udce9@example.com")):
        refused = decide_on(conn, request_id, "approved", by, policy_path=policy, now=at)
        assert not refused.recorded and "not UTF-8" in refused.message, refused
    assert conn.execute("SELECT request_id FROM main.provisioning_events WHERE kind = 'decision_refused' "
                        "ORDER BY request_id").fetchall() == [("waiting",), ("waiting\\xff",)]
    assert fetch_requests(conn, "request_id = 'waiting'")[0]["status"] == "awaiting_approval"


def test_a_later_grant_of_another_role_stops_blocking_an_approval_at_the_instant_it_ends(tmp_path):
    # A later Viewer grant holds the membership until its expires_at; at that very instant its
    # end is due (``expiry.due_grants``), so it is no longer the last word: an approval a moment
    # before is refused, one at the instant is recorded.
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)
    queue_admin_grant(conn, "viewer", "applied", at, role_id="role-viewer", role_name="Viewer",
                      expires_at=at + timedelta(hours=1))
    before = at + timedelta(hours=1) - timedelta(microseconds=1)

    refused = decide_on(conn, "waiting", "approved", COMPOSED_APPROVER, policy_path=policy, now=before)
    assert (refused.recorded, refused.status) == (False, "awaiting_approval"), refused
    assert "a grant of Viewer in Production to ada@example.com was asked after this grant (request viewer, " \
           "applied)" in refused.message, refused.message

    approved = decide_on(conn, "waiting", "approved", COMPOSED_APPROVER, policy_path=policy,
                         now=at + timedelta(hours=1))
    assert (approved.recorded, approved.status) == (True, "pending"), approved


def test_a_denial_after_the_deadline_finds_the_request_expired_as_an_approval_does(tmp_path):
    # Past its deadline a request is over, whichever decision comes: a denial then is refused
    # (exit 2), records no decision, and the request ends approval_expired, notified as such.
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)
    conn.execute("UPDATE main.provisioning_requests SET approval_deadline = ? WHERE request_id = 'waiting'", [at])

    refused = decide_on(conn, "waiting", "denied", COMPOSED_APPROVER, policy_path=policy, now=at,
                        notifier=Notifier("acme", enabled=True))

    assert (refused.recorded, refused.status) == (False, "approval_expired"), refused
    assert conn.execute("SELECT count(*) FROM main.provisioning_approvals").fetchone() == (0,)
    assert [event for (event,) in conn.execute("SELECT event FROM main.notifications").fetchall()] == [
        "request.approval_expired"]


def test_a_denial_is_notified_with_who_denied_it_and_why(tmp_path):
    # The request.denied notification tells the requester who said no and their comment, as the
    # request's status_detail does.
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)

    denied = decide_on(conn, "waiting", "denied", COMPOSED_APPROVER, "not during the freeze", policy_path=policy,
                       now=at, notifier=Notifier("acme", enabled=True))

    assert (denied.recorded, denied.status) == (True, "denied"), denied
    detail = f"denied by {COMPOSED_APPROVER}: not during the freeze"
    assert fetch_requests(conn, "request_id = 'waiting'")[0]["status_detail"] == detail
    [(event, payload)] = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    payload = json.loads(payload)
    assert (event, payload["request_id"], payload["user"], payload["workspace"], payload["role"],
            payload["detail"]) == ("request.denied", "waiting", "ada@example.com", "Production", "Admin", detail)


def test_a_changed_policy_notifies_why_it_held_or_rejected_a_queued_grant(tmp_path):
    # The policy changed while grants waited in the queue: the requester learns from the
    # notification what the run did and why (whom to ask, or what the policy no longer allows).
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    policy, notifier = tmp_path / "policy.yaml", Notifier("acme", enabled=True)
    conn = hand_synced()
    queue_admin_grant(conn, "held", "pending", at)
    policy.write_text('approval:\n  required: ["Admin"]\n  approvers: workspace_admins\n')
    assert [c.status for c in govern_pending_grants(conn, at, policy, notifier)] == ["awaiting_approval"]
    queue_admin_grant(conn, "endless", "pending", at)
    policy.write_text('duration:\n  max: {"Admin": 8h}\n')
    assert [c.status for c in govern_pending_grants(conn, at, policy, notifier)] == ["rejected"]

    said = {json.loads(payload)["request_id"]: (event, json.loads(payload)["detail"])
            for event, payload in conn.execute("SELECT event, payload FROM main.notifications").fetchall()}
    rows = {row["request_id"]: row for row in fetch_requests(conn)}
    held_event, held_detail = said["held"]
    assert held_event == "request.awaiting_approval", said
    # The approvers its status names, then by when (the default wait, 72h) and how to decide (in
    # its org: with several, a command without --org is refused).
    needs = rows["held"]["status_detail"].split("it now ", 1)[1]
    assert needs == "needs approval by an Admin of Production or an Organization Admin", rows["held"]
    assert held_detail == (
        f"{needs} before 2026-06-04T12:00Z: decide with `langsmith-access approve held --by EMAIL --org acme` (or deny)")
    assert said["endless"] == ("request.failed", rows["endless"]["status_detail"]), said
    assert "it has no end" in rows["endless"]["status_detail"]


def test_a_request_whose_until_and_deadline_come_at_once_is_said_to_have_ended_with_its_until(tmp_path):
    # Its --until came no later than its deadline: asking again needs a later --until, and
    # that is the reason given (the deadline alone would send the requester to ask the same).
    conn, policy, at = an_admin_grant_awaiting_approval(tmp_path)
    conn.execute("UPDATE main.provisioning_requests SET approval_deadline = ?, access_until = ? "
                 "WHERE request_id = 'waiting'", [at, at])

    refused = decide_on(conn, "waiting", "approved", COMPOSED_APPROVER, policy_path=policy, now=at)

    assert (refused.recorded, refused.status) == (False, "approval_expired"), refused
    assert "asked for access until 2026-06-01T12:00Z, which passed before it was approved" in refused.message
    assert fetch_requests(conn, "request_id = 'waiting'")[0]["status_detail"] == (
        "its requested end (--until 2026-06-01T12:00Z) passed before it was approved")
