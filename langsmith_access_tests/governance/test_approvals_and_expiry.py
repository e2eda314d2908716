"""Approvals and time-bound access for real: the console script and the Python API against a
synced DuckDB file and the sandbox (the ``env`` fixture), a policy file, and a webhook receiver
on 127.0.0.1.

Time is never waited for: a request queued "in the past" (``submit_on(now=...)``) stands for
one that has waited, and expiry revokes are queued with the clock passed in
(``queue_due_expiries(now=...)``), as the provisioning run does with the real clock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from langsmith_access.api import (
    approve,
    deliver_notifications,
    deny,
    list_requests,
    provision,
    request_grant,
    request_revoke,
)
from langsmith_access.defs.orgs import org_tags
from langsmith_access.defs.provisioning.definitions import REFUSED_INPUT_TAG
from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning.expiry import queue_due_expiries
from langsmith_access.provisioning.queue import ChangeRequest, iso_minutes, submit_on
from langsmith_access_tests.governance.support import POLICY, WORKSPACE, cli, events, request_row, writes
from langsmith_access_tests.helpers import cli_killed_before_publishing, query


def test_a_grant_that_needs_approval_waits_for_an_approver_then_is_applied(governed):
    sandbox, org, database, people, receiver = governed
    grantee = people.outsiders[0]
    queued = cli("request", "grant", "--user", grantee.email, "--workspace", WORKSPACE, "--role", "Admin",
                 "--duration", "8h", "--requested-by", people.editors[0].email.upper(), "--json")
    assert queued.returncode == 0, queued.stderr
    answer = json.loads(queued.stdout)
    request_id = answer["request_id"]
    assert answer["status"] == "awaiting_approval" and "awaiting approval" in answer["message"]

    # Not for provisioning until approved.
    assert provision().success
    assert writes(sandbox) == [] and request_row(database, request_id)["status"] == "awaiting_approval"
    # Named (as in the Launchpad's request_ids): refused, saying how it is decided first.
    named = provision(request_ids=[request_id])
    assert not named.success and (
        f"Nothing to apply: {request_id} is awaiting_approval (decide it first: decide_access_request, or "
        "`langsmith-access approve`). Only pending requests are applied.") in named.failure, named.failure
    assert writes(sandbox) == [] and request_row(database, request_id)["status"] == "awaiting_approval"

    refused = {
        "requester": (people.editors[0].email.lower(), "self-approval"),
        "grantee": (grantee.email, "self-approval"),
        "not an approver": (people.editors[1].email, "is neither an Admin of Search Relevance"),
        "disabled": (people.disabled.email, "disabled member"),
        "invitee": (people.invitee, "only a pending invite"),
    }
    for who, (email, reason) in refused.items():
        attempt = cli("approve", request_id, "--by", email)
        assert attempt.returncode == 2, (who, attempt.stdout, attempt.stderr)
        assert reason in attempt.stderr, (who, attempt.stderr)
    unknown = cli("approve", "no-such-request", "--by", people.admin.email)
    assert unknown.returncode == 2 and "unknown request id no-such-request" in unknown.stderr

    approved = cli("approve", request_id, "--by", people.admin.email, "--comment", "incident 42")
    assert approved.returncode == 0, approved.stderr
    again = cli("approve", request_id, "--by", people.admin.email)
    assert again.returncode == 2 and f"already approved by {people.admin.email}" in again.stderr
    late_deny = cli("deny", request_id, "--by", people.admin.email)
    assert late_deny.returncode == 2 and "already approved" in late_deny.stderr

    row = request_row(database, request_id)
    assert (row["status"], row["approved_by"]) == ("pending", people.admin.email)
    assert row["status_detail"] == f"approved by {people.admin.email}: incident 42"
    assert query(database.path, "SELECT decision, decided_by, comment FROM main.provisioning_approvals") == [
        ("approved", people.admin.email, "incident 42")]
    refusals = [d for kind, d in events(database, request_id) if kind == "decision_refused"]
    assert len(refusals) == len(refused) + 2 and all(d["reason"] for d in refusals)
    assert [d["reason"] for kind, d in events(database, "no-such-request") if kind == "decision_refused"]

    before = datetime.now(UTC)
    outcome = provision()
    after = datetime.now(UTC)
    assert outcome.success, outcome.failure
    assert [o["status"] for o in outcome.outputs["apply_requests"]["outcomes"]] == ["applied"]
    assert org.membership(people.workspace.id, grantee.ls_user_id).role_id == people.roles["Admin"]
    row = request_row(database, request_id)
    assert row["prior_role_id"] is None  # the grant added them
    assert before + timedelta(hours=8) <= row["expires_at"] <= after + timedelta(hours=8)
    kinds = [kind for kind, _ in events(database, request_id)]
    assert {"queued", "approval_requested", "approved", "settled"} <= set(kinds)

    deliver_notifications()
    # 8h is inside the 24h warning window from the start: the run that applies it warns of it.
    assert [(b["event"], b["request_id"]) for b in receiver.bodies()] == [
        ("request.awaiting_approval", request_id), ("request.applied", request_id),
        ("access.expiring", request_id)]
    assert receiver.bodies()[0]["org"] == "default" and receiver.bodies()[0]["user"] == grantee.email
    assert receiver.bodies()[1]["role"] == "Admin" and receiver.bodies()[1]["workspace"] == WORKSPACE
    # Who decides, by when and how: whoever reads it in a chat channel acts without looking it up.
    deadline = iso_minutes(request_row(database, request_id)["approval_deadline"])
    assert receiver.bodies()[0]["detail"] == (
        f"needs approval by an Admin of {WORKSPACE} or an Organization Admin before {deadline}: "
        f"decide with `langsmith-access approve {request_id} --by EMAIL` (or deny)")

    # The webhook URL is a secret: in no file beside the database (working file, analysts' copy,
    # Parquet, dbt's target, logs) and in no command's output.
    secret = receiver.path.rsplit("/", 1)[1].encode()
    files = [f for f in database.path.parent.rglob("*") if f.is_file()]
    assert files and [f for f in files if secret in f.read_bytes()] == []
    listed = cli("requests", "--json")
    outputs = [queued, listed, approved, again, late_deny, unknown]
    assert not any(secret.decode() in run.stdout + run.stderr for run in outputs)
    # Its times are UTC with a Z, whatever the host's time zone (as access-at prints them).
    [row] = [r for r in json.loads(listed.stdout) if r["request_id"] == request_id]
    times = [row[name] for name in ("requested_at", "updated_at", "approved_at", "expires_at")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", t) for t in times), times


def test_an_approval_killed_before_it_was_published_is_kept_and_applied_once(governed):
    # The decision is committed, the analysts' copy (what `requests` and the queue sensor read)
    # not yet: the approver saw no answer and approves again. That is refused as already
    # approved, by them, naming no fault of theirs; it publishes, so the request shows pending and
    # the next provisioning run applies it once. Nothing taken twice: one decision, one write.
    sandbox, org, database, people, receiver = governed
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", duration="1h",
                          requested_by="ops@example.com")
    assert grant.status == "awaiting_approval"
    cli_killed_before_publishing("approve", grant.request_id, "--by", people.admin.email)
    assert request_row(database, grant.request_id)["status"] == "awaiting_approval"  # not published yet

    again = cli("approve", grant.request_id, "--by", people.admin.email)
    assert again.returncode == 2 and f"already approved by {people.admin.email}" in again.stderr, again.stderr
    row = request_row(database, grant.request_id)
    assert (row["status"], row["approved_by"]) == ("pending", people.admin.email)
    assert query(database.path, "SELECT decision, decided_by FROM main.provisioning_approvals") == [
        ("approved", people.admin.email)]

    assert provision().success
    assert provision().success  # and again: nothing left to do
    assert request_row(database, grant.request_id)["status"] == "applied"
    assert [(w.method, w.status) for w in writes(sandbox)] == [("POST", 200)]
    assert org.membership(people.workspace.id, people.outsiders[0].ls_user_id).role_id == people.roles["Admin"]


def test_denied_and_expired_approvals_are_never_applied(governed):
    sandbox, org, database, people, receiver = governed
    denied = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by="ops@example.com")
    assert denied.status == "awaiting_approval"
    deny = cli("deny", denied.request_id, "--by", people.admin.email, "--comment", "not needed")
    assert deny.returncode == 0, deny.stderr
    assert request_row(database, denied.request_id)["status"] == "denied"
    assert cli("approve", denied.request_id, "--by", people.admin.email).returncode == 2

    # Queued four days ago: past its 72 h wait.
    policy, notifier = Path(os.environ["LANGSMITH_ACCESS_POLICY"]), Notifier("default", enabled=True)
    four_days_ago = datetime.now(UTC) - timedelta(days=4)
    with database.writer_lease("test: a request that has waited"), database.connect() as conn:
        old = submit_on(conn, ChangeRequest("grant", people.outsiders[1].email, WORKSPACE, "Admin",
                                            requested_by="ops@example.com"),
                        policy_path=policy, notifier=notifier, now=four_days_ago)
        stale = submit_on(conn, ChangeRequest("grant", people.outsiders[2].email, WORKSPACE, "Admin"),
                          policy_path=policy, notifier=notifier, now=four_days_ago)
    assert old.status == stale.status == "awaiting_approval"
    # Approving one that waited too long is refused, and it is expired on the spot.
    too_late = approve(stale.request_id, by=people.admin.email)
    assert not too_late.recorded and "waited past its approval deadline" in too_late.message
    assert too_late.status == "approval_expired"
    assert request_row(database, stale.request_id)["status"] == "approval_expired"  # on the spot
    again = approve(stale.request_id, by=people.admin.email)
    assert not again.recorded and "is approval_expired (no decision before " in again.message
    assert again.message.endswith("ask for it again."), again.message
    # provision ends the other one, applies nothing, and says what it did (not "no pending requests").
    ended = cli("provision", "--json")
    assert ended.returncode == 0 and "no pending requests" not in ended.stderr, ended
    answer = json.loads(ended.stdout)
    assert answer["requests"] == [] and answer["done_first"] == {
        "approvals_expired": [old.request_id], "expiry_warnings_sent": [], "expiry_revokes_queued": []}, answer
    assert request_row(database, old.request_id)["status"] == "approval_expired"
    assert writes(sandbox) == []
    # Each decision or expiry is also an event of its documented kind (DESIGN.md section 10),
    # the deadline it missed in it.
    [decided] = [d for kind, d in events(database, denied.request_id) if kind == "denied"]
    assert (decided["by"], decided["comment"]) == (people.admin.email, "not needed"), decided
    for request_id in (stale.request_id, old.request_id):
        [expired] = [d for kind, d in events(database, request_id) if kind == "approval_expired"]
        assert expired["deadline"], expired

    deliver_notifications()
    assert sorted((b["event"], b["request_id"]) for b in receiver.bodies()) == sorted([
        ("request.awaiting_approval", denied.request_id), ("request.denied", denied.request_id),
        ("request.awaiting_approval", old.request_id), ("request.awaiting_approval", stale.request_id),
        ("request.approval_expired", stale.request_id), ("request.approval_expired", old.request_id)])


def test_an_expired_grant_is_revoked_undoing_only_what_it_did(governed):
    sandbox, org, database, people, receiver = governed
    workspace, roles = people.workspace, people.roles
    added, changed, overridden, satisfied = people.outsiders[0], *people.editors[:3]
    readded = people.outsiders[1]
    # Editor needs no approval; Admin in this workspace does (approved below).
    grants = {
        "added": request_grant(added.email, WORKSPACE, "Editor", duration="1h"),
        "changed": request_grant(changed.email, WORKSPACE, "Admin", duration="2h", requested_by="ops@example.com"),
        "overridden": request_grant(overridden.email, WORKSPACE, "Admin", until=(
            datetime.now(UTC) + timedelta(hours=3)).isoformat()),
        "satisfied": request_grant(satisfied.email, WORKSPACE, "Editor", duration="4h"),
        "readded": request_grant(readded.email, WORKSPACE, "Editor", duration="5h"),
    }
    assert [g.status for g in grants.values()] == [
        "pending", "awaiting_approval", "awaiting_approval", "pending", "pending"]
    for name in ("changed", "overridden"):
        assert approve(grants[name].request_id, by=people.admin.email).recorded
    assert provision().success
    rows = {name: request_row(database, g.request_id) for name, g in grants.items()}
    assert {name: row["status"] for name, row in rows.items()} == {
        "added": "applied", "changed": "applied", "overridden": "applied", "satisfied": "already_satisfied",
        "readded": "applied"}
    assert rows["added"]["prior_role_id"] is None
    assert rows["changed"]["prior_role_id"] == rows["overridden"]["prior_role_id"] == roles["Editor"]
    assert rows["satisfied"]["expires_at"] is None  # nothing to expire
    # grant_history names the request whose write opened each current interval; a sync
    # listed the one already satisfied.
    opened = dict(query(database.path, "SELECT user_id, opened_by_request_id FROM main.grant_history "
                                       "WHERE workspace_id = ? AND is_current", [workspace.id]))
    assert opened[added.ls_user_id] == grants["added"].request_id
    assert opened[changed.ls_user_id] == grants["changed"].request_id
    assert opened[satisfied.ls_user_id] is None
    assert rows["overridden"]["expires_at"] == rows["overridden"]["access_until"]

    # Someone changes one member's role by hand after the grant; another they remove and add
    # again, with the granted role (LangSmith gives the membership a new workspace identity).
    org.set_workspace_role(workspace.id, overridden.ls_user_id, roles["Viewer"])
    granted_identity = org.membership(workspace.id, readded.ls_user_id).id
    org.remove_workspace_membership(workspace.id, readded.ls_user_id)
    assert org.add_workspace_membership(workspace.id, readded.ls_user_id, roles["Editor"]).id != granted_identity

    # An hour from now only the first is due; a day from now all three. Each is revoked once.
    with database.writer_lease("test: expiry due"), database.connect() as conn:
        first = queue_due_expiries(conn, datetime.now(UTC) + timedelta(minutes=61))
        rest = queue_due_expiries(conn, datetime.now(UTC) + timedelta(days=1))
        assert queue_due_expiries(conn, datetime.now(UTC) + timedelta(days=2)) == []
    assert len(first) == 1 and len(rest) == 3
    sandbox.reset_log()
    outcome = provision()
    assert outcome.success, outcome.failure
    revokes = {r["parent_request_id"]: r for r in list_requests(database=database.path) if r["parent_request_id"]}
    assert set(revokes) == {grants[n].request_id for n in ("added", "changed", "overridden", "readded")}
    for revoke in revokes.values():
        assert (revoke["action"], revoke["requested_by"], revoke["reason"]) == ("revoke", "langsmith-access", "expired")
    assert revokes[grants["added"].request_id]["request_id"] == first[0]

    assert org.membership(workspace.id, added.ls_user_id) is None  # the grant added them: removed
    assert org.membership(workspace.id, changed.ls_user_id).role_id == roles["Editor"]  # restored
    assert org.membership(workspace.id, overridden.ls_user_id).role_id == roles["Viewer"]  # left alone
    assert org.membership(workspace.id, satisfied.ls_user_id).role_id == roles["Editor"]
    assert org.membership(workspace.id, readded.ls_user_id).role_id == roles["Editor"]  # not the grant's any more
    assert sorted(w.method for w in writes(sandbox)) == ["DELETE", "PATCH"]
    left_alone = revokes[grants["overridden"].request_id]
    assert left_alone["status"] == "already_satisfied"
    assert "holds Viewer, not the granted Admin: changed by someone since the grant; left alone" in (
        left_alone["status_detail"])
    planned = [d for kind, d in events(database, left_alone["request_id"]) if kind == "planned"]
    assert "changed by someone since the grant" in planned[0]["explanation"]
    not_the_grants = revokes[grants["readded"].request_id]
    assert not_the_grants["status"] == "already_satisfied"
    assert "holds Editor through a membership added since the grant (removed and added again by someone)" in (
        not_the_grants["status_detail"])
    assert ("expiry_queued" in [kind for kind, _ in events(database, grants["added"].request_id)])

    # grants (dbt, rebuilt after the run) shows the undone access at once.
    current = dict(query(database.path, "SELECT user_id, role_id FROM main.grants WHERE workspace_id = ? "
                                        "AND entitlement_type = 'workspace_role'", [workspace.id]))
    assert added.ls_user_id not in current and current[changed.ls_user_id] == roles["Editor"]

    deliver_notifications()
    expired = {b["request_id"]: b["detail"] for b in receiver.bodies() if b["event"] == "access.expired"}
    assert sorted(expired) == sorted(grants[n].request_id for n in ("added", "changed", "overridden", "readded"))
    assert "removed and added again by someone" in expired[grants["readded"].request_id]


def test_a_dry_run_says_what_the_real_run_does_before_the_queue(governed, monkeypatch, refused_port):
    # A grant whose end is due: the real run queues its revoke first; one whose end is near
    # (within a warning that grew since it was applied): the real run sends access.expiring. The
    # dry run says so, and changes nothing.
    sandbox, org, database, people, receiver = governed
    grantee, warned = people.outsiders[1], people.outsiders[2]
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")
    grant = request_grant(grantee.email, WORKSPACE, "Editor", duration="1s")
    ending = request_grant(warned.email, WORKSPACE, "Editor", duration="2h")
    assert grant.status == ending.status == "pending" and provision().success
    time.sleep(1.5)
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "3h")
    dry = cli("provision", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["before_the_queue"] == {
        "expiries_due": [grant.request_id], "approvals_overdue": [], "expiry_warnings_due": [ending.request_id]}
    shown = cli("provision", "--dry-run")
    assert f"{'would expire':<17} {grant.request_id}  its end is due" in shown.stdout, shown.stdout
    assert f"{'would warn':<17} {ending.request_id}  its end is near" in shown.stdout, shown.stdout
    assert not [r for r in list_requests(database=database.path) if r["parent_request_id"] == grant.request_id]
    # Without a webhook nothing is sent, so nothing is due a warning.
    monkeypatch.delenv("LANGSMITH_ACCESS_WEBHOOK_URL")
    quiet = cli("provision", "--dry-run", "--json")
    assert json.loads(quiet.stdout)["before_the_queue"]["expiry_warnings_due"] == [], quiet.stdout
    # A receiver that is down: the warning is queued, not "sent", and stderr says it did not go.
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", f"http://127.0.0.1:{refused_port}/hook")
    assert "expiry_warned" not in [kind for kind, _ in events(database, ending.request_id)]
    done = cli("provision")  # which says what it did first, as the dry run said it would
    assert done.returncode == 0, done.stderr
    assert (f"{'warned':<17} {ending.request_id}  its end is near: access.expiring queued for the webhook"
            in done.stdout), done.stdout
    assert "access.expiring sent" not in done.stdout and " not delivered yet " in done.stderr, done
    [revoke] = [r for r in list_requests(database=database.path) if r["parent_request_id"] == grant.request_id]
    assert f"{'applied':<17} {revoke['request_id']}  " in done.stdout, done.stdout
    assert revoke["status"] == "applied" and org.membership(people.workspace.id, grantee.ls_user_id) is None


def test_bad_requests_are_refused_clearly_and_recorded(governed, tmp_path, monkeypatch):
    sandbox, org, database, people, _ = governed
    user = people.outsiders[0].email

    def refused(*extra: str) -> str:
        done = cli("request", "grant", "--user", user, "--workspace", WORKSPACE, *extra)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        return done.stderr

    assert "--duration '0s' is zero" in refused("--role", "Editor", "--duration", "0s")
    assert "--duration '-1h' is not a duration" in refused("--role", "Editor", "--duration=-1h")
    assert "--duration '-2d' is not a duration" in refused("--role", "Editor", "--duration", "-2d")
    assert "longer than the ceiling of 365d" in refused("--role", "Editor", "--duration", "9999d")
    assert "--duration 'abc' is not a duration" in refused("--role", "Editor", "--duration", "abc")
    assert "longer than the policy's maximum for Admin (8h)" in refused("--role", "Admin", "--duration", "9h")
    assert "is in the past" in refused("--role", "Editor", "--until", "2020-01-01T00:00Z")
    assert "either --duration or --until, not both" in refused(
        "--role", "Editor", "--duration", "1h", "--until", "2030-01-01T00:00Z")
    revoke = cli("request", "revoke", "--user", user, "--workspace", WORKSPACE, "--role", "Editor",
                 "--duration", "1h")
    assert revoke.returncode == 2, revoke.stderr  # a revoke takes effect when applied: refused, recorded
    assert "--duration and --until are for grants" in revoke.stderr

    # A policy naming an unknown role refuses every grant, naming the file and the line.
    bad_policy = tmp_path / "bad-policy.yaml"
    bad_policy.write_text('approval:\n  required: ["Admin"]\nduration:\n  max: {"Admn": 8h}\n')
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(bad_policy))
    message = refused("--role", "Editor")
    assert str(bad_policy) in message and "line 4: duration.max: unknown role 'Admn'" in message
    # Approvers that are no members of the org: nobody could ever approve, so it is refused now.
    ghosts = tmp_path / "ghost-approvers.yaml"
    ghosts.write_text('approval:\n  required: ["Admin"]\n  approvers: [ghost@nowhere.example]\n')
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(ghosts))
    assert "nobody could approve this request" in refused("--role", "Admin")
    assert cli("request", "grant", "--user", user, "--workspace", WORKSPACE, "--role", "Editor").returncode == 0

    rows = list_requests(database=database.path)
    assert [r["status"] for r in rows] == ["rejected"] * 11 + ["pending"]
    assert all(r["status_detail"] for r in rows if r["status"] == "rejected")
    assert writes(sandbox) == []


def test_every_command_that_serves_an_org_delivers_what_is_due(governed, tmp_path):
    """DESIGN.md section 10: each command delivers due notifications, reading ones included,
    so an install without the outbox sensor still sends them."""
    sandbox, org, database, people, receiver = governed
    commands = {"requests": ["requests", "--json"], "export": ["export", "--format", "csv", "--out", str(tmp_path / "out")],
                "doctor": ["doctor"]}
    assert len(people.outsiders) >= len(commands)
    for grantee, (name, command) in zip(people.outsiders, commands.items(), strict=False):
        # Queued from Python: raised, in the outbox, delivered by nobody yet.
        queued = request_grant(grantee.email, WORKSPACE, "Admin", requested_by=people.editors[0].email)
        assert queued.accepted and queued.status == "awaiting_approval"
        delivered_before = len(receiver.bodies())
        done = cli(*command)
        assert [(b["event"], b["request_id"]) for b in receiver.bodies()[delivered_before:]] == [
            ("request.awaiting_approval", queued.request_id)], (name, done.returncode, done.stderr)


def test_a_key_typed_into_a_field_is_never_echoed_or_stored(governed):
    """DESIGN.md section 1: the key never appears in DuckDB or CLI output, even pasted where a
    user, a workspace, a reason or an approver belongs: it is kept only as its prefix."""
    sandbox, org, database, people, receiver = governed
    key = "lsv2_sk_" + "7e57ab1e" * 4
    outsider = people.outsiders[0].email
    runs = [
        cli("request", "grant", "--user", key, "--workspace", WORKSPACE, "--role", "Viewer"),
        cli("request", "grant", "--user", outsider, "--workspace", key, "--role", "Viewer"),
        cli("request", "grant", "--user", outsider, "--workspace", WORKSPACE, "--role", "Viewer",
            "--reason", f"ticket 7, my key is {key}", "--requested-by", key),
        cli("approve", "no-such-request", "--by", key, "--comment", key),
        cli("approve", key, "--by", people.admin.email),
        cli("access-at", "--time", "now", "--user", key),
    ]
    # A real key's secret part (32 hex digits, "_", 10 more), pasted without its prefix.
    body = "5ec2e7ab" * 4 + "_" + "5ec2e7ab00"
    runs.insert(-1, cli("request", "grant", "--user", outsider, "--workspace", WORKSPACE, "--role", body,
                        "--reason", f"ticket 8 {body}"))
    for run in runs:
        assert "7e57ab1e" not in run.stdout + run.stderr, run
        assert "5ec2e7ab" not in run.stdout + run.stderr, run
    assert runs[0].returncode == 2 and "lsv2_***" in runs[0].stderr, runs[0].stderr
    assert runs[-1].returncode == 2 and "lsv2_***" in runs[-1].stderr, runs[-1].stderr  # unknown user
    assert runs[2].returncode == 0, runs[2].stderr  # queued: the reason kept, the key cut from it
    reasons = query(database.working_path, "SELECT reason, requested_by FROM main.provisioning_requests "
                                           "WHERE reason LIKE 'ticket 7%'")
    assert reasons == [("ticket 7, my key is lsv2_***", "lsv2_***")]
    files = [f for f in database.path.parent.rglob("*") if f.is_file()]
    assert database.working_path in files
    assert [f for f in files if b"7e57ab1e" in f.read_bytes() or b"5ec2e7ab" in f.read_bytes()] == []


def test_the_webhook_url_typed_into_a_reason_or_a_comment_is_never_stored(governed):
    """A Slack webhook URL is its own credential, in its path (no key shape or query string to
    cut): pasted into a reason or an approver's comment, it is replaced before it is kept."""
    sandbox, org, database, people, receiver = governed
    url = receiver.url
    queued = cli("request", "grant", "--user", people.outsiders[0].email, "--workspace", WORKSPACE, "--role",
                 "Admin", "--duration", "8h", "--requested-by", people.editors[0].email,
                 "--reason", f"ticket 9, post to {url}", "--json")
    assert queued.returncode == 0, queued.stderr
    request_id = json.loads(queued.stdout)["request_id"]
    denied = cli("deny", request_id, "--by", people.admin.email, "--comment", f"use {url} instead")
    assert denied.returncode == 0, denied.stderr
    # A revoke's reason too (a revoke consults no policy, but is typed by a person all the same).
    member = people.editors[0]
    revoked = cli("request", "revoke", "--user", member.email, "--workspace", WORKSPACE, "--role", "Editor",
                  "--reason", f"left, see {url}", "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert request_row(database, json.loads(revoked.stdout)["request_id"])["reason"] == "left, see <secret>"
    assert request_row(database, request_id)["reason"] == "ticket 9, post to <secret>"
    assert query(database.working_path, "SELECT comment FROM main.provisioning_approvals WHERE request_id = ?",
                 [request_id]) == [("use <secret> instead",)]
    # Pasted as the request's id or as --by: refused, and the refusal (recorded as a
    # decision_refused event, and the lease's purpose in the lock file) names <secret> instead.
    misdecided = cli("approve", url, "--by", url)
    assert misdecided.returncode == 2 and "got '<secret>'" in misdecided.stdout + misdecided.stderr, misdecided
    [(event_request_id, detail)] = query(database.working_path, "SELECT request_id, detail FROM "
                                         "main.provisioning_events WHERE kind = 'decision_refused'")
    assert event_request_id == "<secret>" and json.loads(detail)["by"] == "<secret>", detail
    for run in (queued, denied, revoked, misdecided):
        assert url not in run.stdout + run.stderr, run
    files = [f for f in database.path.parent.rglob("*") if f.is_file()]
    assert database.working_path in files
    assert [f for f in files if url.encode() in f.read_bytes()] == []


def test_the_same_change_with_other_terms_is_refused_not_folded_into_the_queued_one(governed):
    sandbox, org, database, people, receiver = governed
    ask = ("request", "grant", "--user", people.outsiders[0].email, "--workspace", WORKSPACE, "--role", "Viewer")
    first = cli(*ask, "--duration", "8h", "--reason", "ticket 1")
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.strip()
    same = cli(*ask, "--duration", "8h", "--reason", "ticket 1", "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["duplicate_of"] == first_id, (first.stdout, first.stderr, same.stdout)
    # Another reason, the same access: the queued one, and the answer says whose reason stays.
    reason = json.loads(cli(*ask, "--duration", "8h", "--reason", "ticket 2", "--json").stdout)
    assert reason["duplicate_of"] == first_id and "its reason stays 'ticket 1'" in reason["message"]
    refused = cli(*ask, "--duration", "30d", "--reason", "ticket 1", "--json")
    answer = json.loads(refused.stdout)
    assert refused.returncode == 2 and answer["status"] == "rejected", refused.stdout
    assert answer["duplicate_of"] == first_id and "already queued" in answer["message"]
    assert request_row(database, answer["request_id"])["status"] == "rejected"  # recorded, as refusals are
    assert "lasts for 8h" in json.loads(cli(*ask, "--duration", "1d", "--reason", "ticket 1", "--json").stdout)["message"]
    row = request_row(database, first_id)  # the queued one is as it was asked
    assert (row["status"], row["access_duration_seconds"], row["reason"]) == ("pending", 8 * 3600, "ticket 1")


def test_an_approval_checks_the_terms_against_the_policy_as_it_is_now(governed, monkeypatch, tmp_path):
    sandbox, org, database, people, receiver = governed
    eight_hours = request_grant(people.editors[0].email, WORKSPACE, "Admin", duration="8h")
    unbounded = request_grant(people.editors[1].email, WORKSPACE, "Admin")  # the policy's max: 8h
    assert (eight_hours.status, unbounded.status) == ("awaiting_approval", "awaiting_approval")
    # While they wait, the policy lowers Admin's max to an hour.
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(POLICY.replace('"Admin": 8h', '"Admin": 1h'))
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(stricter))
    refused = approve(eight_hours.request_id, by=people.admin.email)
    assert not refused.recorded and refused.status == "awaiting_approval"
    assert refused.message == (
        f"request {eight_hours.request_id} asks for access for 8h from when it is applied, which the access "
        "policy no longer allows (--duration 8h is longer than the policy's maximum for Admin (1h): ask for at "
        "most 1h.): deny it, and ask again within the policy.")
    # Its 8 hours were the max then: recorded as a duration like any other, refused the same way.
    assert not approve(unbounded.request_id, by=people.admin.email).recorded
    assert request_row(database, eight_hours.request_id)["status"] == "awaiting_approval"
    assert [d["reason"] for kind, d in events(database, eight_hours.request_id) if kind == "decision_refused"] == [
        refused.message]
    # Denying it is still possible.
    assert deny(eight_hours.request_id, by=people.admin.email).recorded


def test_a_revoke_asked_after_a_grant_awaiting_approval_has_the_last_word(governed):
    # Asked in this order: grant Admin (awaiting approval), then revoke Admin. The revoke is
    # applied first (nothing to remove); an approval after it would give the role back, so it is
    # refused, naming the revoke. A denial is still taken.
    sandbox, org, database, people, receiver = governed
    grantee = people.outsiders[0]
    grant = request_grant(grantee.email, WORKSPACE, "Admin", requested_by=people.editors[0].email)
    assert grant.status == "awaiting_approval", grant
    revoke = request_revoke(grantee.email, WORKSPACE, "Admin", requested_by=people.editors[1].email)
    assert revoke.accepted, revoke
    assert provision().success
    refused = approve(grant.request_id, by=people.admin.email)
    assert not refused.recorded and f"asked after this grant (request {revoke.request_id}" in refused.message
    assert request_row(database, grant.request_id)["status"] == "awaiting_approval"
    assert "decision_refused" in [kind for kind, _ in events(database, grant.request_id)]
    assert deny(grant.request_id, by=people.admin.email).recorded
    assert provision().success
    assert org.membership(people.workspace.id, grantee.ls_user_id) is None


def test_a_grant_of_another_role_asked_later_and_applied_has_the_last_word(governed):
    # Grant Admin (awaiting approval), then grant Viewer (no approval needed), applied. In the
    # order asked, Viewer is what the member ends with: approving Admin now would overturn it, so
    # the approval is refused, naming the Viewer grant. Still pending, the later grant would run
    # after the approved one (the last word as asked): no refusal; nor once its time has ended.
    sandbox, org, database, people, receiver = governed
    overtaken, still_pending, ended = people.outsiders[0], people.outsiders[1], people.outsiders[2]
    admin = {grantee.email: request_grant(grantee.email, WORKSPACE, "Admin")
             for grantee in (overtaken, still_pending, ended)}
    assert {grant.status for grant in admin.values()} == {"awaiting_approval"}
    viewer = request_grant(overtaken.email, WORKSPACE, "Viewer")
    bounded = request_grant(ended.email, WORKSPACE, "Viewer", duration="1h")
    assert provision().success
    assert request_row(database, viewer.request_id)["status"] == "applied"
    request_grant(still_pending.email, WORKSPACE, "Viewer")
    with database.writer_lease("test: the Viewer hour has passed"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_requests SET expires_at = now() - INTERVAL 1 MINUTE "
                     "WHERE request_id = ?", [bounded.request_id])
    database.publish()

    refused = approve(admin[overtaken.email].request_id, by=people.admin.email)
    assert not refused.recorded and refused.status == "awaiting_approval", refused
    assert refused.message == (
        f"a grant of Viewer in {WORKSPACE} to {overtaken.email} was asked after this grant (request "
        f"{viewer.request_id}, applied): deny this one, and ask again if the access is still wanted.")
    for grantee in (still_pending, ended):
        approved = approve(admin[grantee.email].request_id, by=people.admin.email)
        assert approved.recorded and approved.status == "pending", (grantee.email, approved)
    assert provision().success
    assert org.membership(people.workspace.id, overtaken.ls_user_id).role_id == people.roles["Viewer"]
    assert org.membership(people.workspace.id, ended.ls_user_id).role_id == people.roles["Admin"]


def test_the_requests_listing_says_when_a_time_bound_grant_ends(governed):
    sandbox, org, database, people, receiver = governed
    queued = cli("request", "grant", "--user", people.outsiders[0].email, "--workspace", WORKSPACE,
                 "--role", "Viewer", "--duration", "8h")
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip()
    assert provision().success
    ends = request_row(database, request_id)["expires_at"]
    [line] = [line for line in cli("requests").stdout.splitlines() if line.startswith(request_id)]
    # To the second it ends: cut to the minute, it read earlier than the grant's real end.
    assert ends.second or ends.microsecond, ends  # (applied_at + 8h: now's seconds)
    assert f" until {ends.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z" in line, line


def test_a_grant_asking_no_terms_ends_at_the_policys_default_cut_to_the_max_else_at_the_roles_max(
        governed, tmp_path, monkeypatch):
    # DESIGN.md section 10: "a grant with neither gets duration.default, else the role's max,
    # else no expiry", and the clock starts when the grant is applied, through the command line
    # and a real run (test_decisions.py pins the rule itself; this pins that the queue keeps it).
    sandbox, org, database, people, receiver = governed
    viewer, editor, unbounded = people.outsiders[:3]

    def ends_after(request_id: str) -> timedelta | None:
        row = request_row(database, request_id)
        assert row["status"] == "applied", row
        [(applied_at,)] = query(database.path, "SELECT max(\"at\") FROM main.provisioning_events "
                                "WHERE request_id = ? AND kind = 'settled'", [request_id])
        return None if row["expires_at"] is None else row["expires_at"] - applied_at

    def grant_without_terms(member, role: str) -> str:
        queued = cli("request", "grant", "--user", member.email, "--workspace", WORKSPACE, "--role", role)
        assert queued.returncode == 0, queued.stderr
        return queued.stdout.strip()

    # No default: the role's max ("*": 90d).
    at_max = grant_without_terms(viewer, "Viewer")
    # A default longer than Editor's max: cut to the max.
    policy = Path(os.environ["LANGSMITH_ACCESS_POLICY"])
    policy.write_text(POLICY.replace('duration:\n', 'duration:\n  default: 30d\n').replace('"*": 90d', '"*": 7d'))
    cut_to_max = grant_without_terms(editor, "Editor")
    # A policy with neither for the role: no expiry.
    no_limits = tmp_path / "no-limits.yaml"
    no_limits.write_text(POLICY.split("duration:")[0])
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(no_limits))
    forever = grant_without_terms(unbounded, "Viewer")
    assert provision().success

    def close_to(span: timedelta | None, expected: timedelta) -> bool:
        return span is not None and abs(span - expected) < timedelta(seconds=5)

    assert close_to(ends_after(at_max), timedelta(days=90)), ends_after(at_max)
    assert close_to(ends_after(cut_to_max), timedelta(days=7)), ends_after(cut_to_max)
    assert ends_after(forever) is None


def test_a_run_applies_what_the_policy_allows_when_it_applies(governed, tmp_path):
    # The policy changed while grants waited in the queue: a run measures each against the policy
    # as it is when it applies them. A lower maximum rejects a grant that asks for longer; a role
    # that now needs approval waits for an approver; the rest, and every revoke, are applied.
    sandbox, org, database, people, receiver = governed
    workspace, roles = people.workspace, people.roles
    too_long, now_approved, unchanged = people.outsiders[:3]
    revoked = people.editors[0]
    queued = {
        "too_long": request_grant(too_long.email, WORKSPACE, "Editor", duration="30d"),
        "now_approved": request_grant(now_approved.email, WORKSPACE, "Editor", duration="2d"),
        "unchanged": request_grant(unchanged.email, WORKSPACE, "Viewer", duration="1h"),
        "revoke": request_revoke(revoked.email, WORKSPACE, "Editor"),
    }
    assert {name: q.status for name, q in queued.items()} == {name: "pending" for name in queued}
    policy = Path(os.environ["LANGSMITH_ACCESS_POLICY"])
    policy.write_text(POLICY.replace('required: ["Admin"]', 'required: ["Admin", "Editor"]')
                      .replace('"*": 90d', '"*": 7d'))

    shown = cli("provision", "--dry-run")  # said, not done
    assert shown.returncode == 0, shown.stderr
    assert f"would be rejected {queued['too_long'].request_id}  the access policy changed" in shown.stdout
    assert f"would be awaiting_approval {queued['now_approved'].request_id}" in shown.stdout, shown.stdout
    planned = [line.split()[1] for line in shown.stdout.splitlines() if line.startswith("planned")]
    assert sorted(planned) == sorted([queued["unchanged"].request_id, queued["revoke"].request_id])
    assert request_row(database, queued["too_long"].request_id)["status"] == "pending"

    # Named by hand (the Launchpad's request_ids), it is measured the same way.
    named = provision(request_ids=[queued["too_long"].request_id])
    assert named.success, named.failure
    assert [(c["request_id"], c["status"]) for c in named.outputs["apply_requests"]["policy_changes"]] == [
        (queued["too_long"].request_id, "rejected")]
    assert named.outputs["apply_requests"]["outcomes"] == [] and writes(sandbox) == []

    done = cli("provision", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [(c["request_id"], c["status"]) for c in answer["policy_changes"]] == [
        (queued["now_approved"].request_id, "awaiting_approval")]
    assert sorted(r["request_id"] for r in answer["requests"]) == sorted(
        [queued["unchanged"].request_id, queued["revoke"].request_id])
    rows = {name: request_row(database, q.request_id) for name, q in queued.items()}
    assert {name: row["status"] for name, row in rows.items()} == {
        "too_long": "rejected", "now_approved": "awaiting_approval", "unchanged": "applied", "revoke": "applied"}
    assert "no longer allows access for 30d" in rows["too_long"]["status_detail"]
    assert "longer than the policy's maximum for Editor (7d)" in rows["too_long"]["status_detail"]
    assert "now needs approval by an Admin of Search Relevance" in rows["now_approved"]["status_detail"]
    assert rows["now_approved"]["approval_deadline"] is not None
    assert org.membership(workspace.id, too_long.ls_user_id) is None
    assert org.membership(workspace.id, now_approved.ls_user_id) is None
    assert org.membership(workspace.id, unchanged.ls_user_id).role_id == roles["Viewer"]
    assert org.membership(workspace.id, revoked.ls_user_id) is None
    assert [kind for kind, _ in events(database, queued["now_approved"].request_id)] == ["queued", "approval_requested"]

    # Approved, it is applied like any grant that waited for approval.
    assert approve(queued["now_approved"].request_id, by=people.admin.email).recorded
    assert provision().success
    assert org.membership(workspace.id, now_approved.ls_user_id).role_id == roles["Editor"]

    deliver_notifications()
    said = [(b["event"], b["request_id"]) for b in receiver.bodies()]
    assert ("request.failed", queued["too_long"].request_id) in said
    assert ("request.awaiting_approval", queued["now_approved"].request_id) in said
    # Held for approval by a run, it says who decides, by when and how, as one queued so does.
    [held] = [b for b in receiver.bodies() if b["event"] == "request.awaiting_approval"]
    deadline = iso_minutes(rows["now_approved"]["approval_deadline"])
    assert held["detail"] == (
        f"needs approval by an Admin of {WORKSPACE} or an Organization Admin before {deadline}: "
        f"decide with `langsmith-access approve {queued['now_approved'].request_id} --by EMAIL` (or deny)")


def test_a_policy_that_cannot_be_read_holds_the_grants_and_lets_revokes_through(governed):
    sandbox, org, database, people, receiver = governed
    workspace = people.workspace
    grantee, revoked = people.outsiders[0], people.editors[0]
    grant = request_grant(grantee.email, WORKSPACE, "Editor")
    policy = Path(os.environ["LANGSMITH_ACCESS_POLICY"])
    policy.write_text("approval: [unclosed\n")
    revoke = request_revoke(revoked.email, WORKSPACE, "Editor")  # a revoke needs no policy
    assert revoke.status == "pending"

    named = provision(request_ids=[grant.request_id])  # named by hand: held all the same
    assert not named.success and "1 grant(s) not applied (1 left pending)" in named.failure
    assert request_row(database, grant.request_id)["status"] == "pending" and writes(sandbox) == []

    outcome = provision()
    assert not outcome.success
    assert "1 grant(s) not applied (1 left pending): the access policy cannot be read" in outcome.failure
    assert str(policy) in outcome.failure
    assert request_row(database, grant.request_id)["status"] == "pending"
    assert request_row(database, revoke.request_id)["status"] == "applied"
    assert org.membership(workspace.id, revoked.ls_user_id) is None
    assert org.membership(workspace.id, grantee.ls_user_id) is None

    policy.write_text(POLICY)  # fixed: the next run applies the grant
    assert provision().success
    assert request_row(database, grant.request_id)["status"] == "applied"


def test_a_run_the_policy_held_re_executed_from_failure_says_it_took_no_request(governed, instance):
    """The Dagster UI's "Re-execute from failure" of a run whose grants an unreadable policy held:
    only refresh_access_history runs again, from the first run's outputs. It re-raised the
    first run's policy failure after the policy was fixed, and counted as one more failed run in
    the sensors' wait; it now says it took no request and what retries them, and applies nothing."""
    sandbox, org, database, people, receiver = governed
    job = ReconstructableRepository.for_module("langsmith_access.definitions", "defs").get_reconstructable_job(
        "provision_workspace_roles")
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Editor")
    # A revoke goes ahead while the policy holds the grant: the first run applies it and builds it
    # into grants before it fails.
    revoke = request_revoke(people.editors[0].email, WORKSPACE, "Editor")
    policy = Path(os.environ["LANGSMITH_ACCESS_POLICY"])
    policy.write_text("approval: [unclosed\n")
    with dg.execute_job(job, instance=instance, tags={"dagster/partition": "default", **org_tags("default")}) as held:
        assert not held.success
    assert _refresh_said(instance, held.run_id) == [
        "grants, reports and grant_history rebuilt with 1 verified change(s)."]
    policy.write_text(POLICY)  # fixed
    writes_before = writes(sandbox)

    with dg.execute_job(job, instance=instance,
                        reexecution_options=dg.ReexecutionOptions.from_failure(held.run_id, instance)) as again:
        [failure] = [event.step_failure_data for event in again.all_events if event.is_step_failure]
        assert not again.success
    # Built by the first run already: not rebuilt (a dbt build for nothing) nor said to be.
    assert _refresh_said(instance, again.run_id) == ["No grant changed: nothing to rebuild."]
    assert request_row(database, revoke.request_id)["status"] == "applied"
    said = failure.user_failure_data.description
    assert f"Re-executed from the failure of run {held.run_id}, this run took no request" in said, said
    assert "the access policy cannot be read" in said and "re-execute it with all steps" in said, said
    assert REFUSED_INPUT_TAG in instance.get_run_by_id(again.run_id).tags
    assert request_row(database, grant.request_id)["status"] == "pending" and writes(sandbox) == writes_before


def test_the_run_logs_its_expiry_warnings_as_queued_for_the_webhook(governed, instance, monkeypatch):
    # The run only queues access.expiring in the outbox: the sensor (or the command) delivers it
    # later, if the receiver is up. Its log said "sent" all the same.
    sandbox, org, database, people, receiver = governed
    job = ReconstructableRepository.for_module("langsmith_access.definitions", "defs").get_reconstructable_job(
        "provision_workspace_roles")
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")
    applied_before = request_grant(people.outsiders[0].email, WORKSPACE, "Editor", duration="2h")
    assert provision().success and "expiry_warned" not in [k for k, _ in events(database, applied_before.request_id)]
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "3h")  # its end is near now, and so is the next one's
    request_grant(people.outsiders[1].email, WORKSPACE, "Editor", duration="2h")
    with dg.execute_job(job, instance=instance, tags={"dagster/partition": "default", **org_tags("default")}) as run:
        assert run.success
    said = [entry.user_message for entry in instance.all_logs(run.run_id) if "access.expiring" in entry.user_message]
    assert said == ["1 time-bound grant(s) end soon: access.expiring queued for the webhook",
                    "1 grant(s) applied end within the warning window: access.expiring queued for the webhook"], said


def _refresh_said(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What refresh_access_history logged at INFO in the run."""
    return [entry.user_message for entry in instance.all_logs(run_id)
            if entry.step_key == "refresh_access_history" and entry.level == logging.INFO]


def test_a_request_a_dead_run_left_in_progress_is_taken_while_the_policy_holds_grants(governed):
    # The run takes every pending request and every one a dead run left in progress, except the
    # grants the policy holds back: holding one must not leave the dead run's request stuck.
    sandbox, org, database, people, receiver = governed
    grantee, revoked = people.outsiders[0], people.editors[0]
    grant = request_grant(grantee.email, WORKSPACE, "Editor")
    revoke = request_revoke(revoked.email, WORKSPACE, "Editor")
    with database.writer_lease("test"), database.connect() as conn:  # claimed by a run that died
        conn.execute("UPDATE main.provisioning_requests SET status = 'in_progress', run_id = 'a-dead-run' "
                     "WHERE request_id = ?", [revoke.request_id])
    database.publish()
    Path(os.environ["LANGSMITH_ACCESS_POLICY"]).write_text("approval: [unclosed\n")

    outcome = provision()
    assert not outcome.success and "1 grant(s) not applied (1 left pending)" in outcome.failure
    assert request_row(database, grant.request_id)["status"] == "pending"
    assert request_row(database, revoke.request_id)["status"] == "applied"
    assert org.membership(people.workspace.id, revoked.ls_user_id) is None


def test_a_grant_a_dead_run_claimed_is_said_to_stay_in_progress_while_the_policy_cannot_be_read(governed):
    # A run died after claiming a grant, before sending its write; the policy then cannot be
    # read. The grant is held as it is (in_progress, for the next run to take), and the run's
    # failure says so: not that it was left pending.
    sandbox, org, database, people, receiver = governed
    claimed, waiting = people.outsiders[:2]
    dead = request_grant(claimed.email, WORKSPACE, "Editor")
    grant = request_grant(waiting.email, WORKSPACE, "Editor")
    with database.writer_lease("test"), database.connect() as conn:  # claimed by a run that died
        conn.execute("UPDATE main.provisioning_requests SET status = 'in_progress', run_id = 'a-dead-run' "
                     "WHERE request_id = ?", [dead.request_id])
    database.publish()
    policy = Path(os.environ["LANGSMITH_ACCESS_POLICY"])
    policy.write_text("approval: [unclosed\n")

    outcome = provision()

    assert not outcome.success
    assert ("2 grant(s) not applied (1 left pending, 1 left in_progress (claimed by a run that died before "
            "sending its write)): the access policy cannot be read") in outcome.failure
    assert request_row(database, dead.request_id)["status"] == "in_progress"
    assert request_row(database, grant.request_id)["status"] == "pending"
    assert writes(sandbox) == []

    policy.write_text(POLICY)  # fixed: the next run applies both
    assert provision().success
    assert request_row(database, dead.request_id)["status"] == "applied"
    assert request_row(database, grant.request_id)["status"] == "applied"
