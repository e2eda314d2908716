"""A corpus of bad provisioning requests: unicode tricks, overlong values, SQL-like text, empty
values, wrong types (in the Python API and in the Launchpad's run config), unknown ids. Each is
rejected with a message saying what is wrong, the queue keeps every earlier request as it was,
and nothing reaches the LangSmith API.

(test_validation_and_planning.py checks each rejection rule once on a hand-made database; here
the corpus runs against a real synced database: a sample through the Python API, the rest
through the same validation under the writer lease, the run config through the Dagster job,
two through the console script.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from langsmith_access import runner
from langsmith_access.api import PROVISION_JOB, list_requests, provision, request_grant, request_revoke
from langsmith_access.provisioning.queue import ChangeRequest, submit, submit_on
from langsmith_access_tests.helpers import query
from langsmith_access_tests.reliability.conftest import writes

CLI = str(Path(sys.executable).with_name("langsmith-access"))
FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz"}


def corpus(org) -> list[tuple[str, ChangeRequest, str]]:
    """(id, request, what the rejection must say). Every other field of a request is valid."""
    member = next(m for m in org.active_members() if not m.is_disabled and "." in m.email)
    workspace = next(w for w in org.shared_workspaces() if len(org.workspaces_named(w.display_name)) == 1)
    personal = next(w for w in org.all_workspaces() if w.is_personal)
    deleted = next(w for w in org.all_workspaces() if w.is_deleted)
    invite = org.pending_org_invites()[0]
    membership = next(iter(workspace.memberships.values()))
    org_role = org.role_by_name("ORGANIZATION_ADMIN")
    email = member.email

    def grant(user=email, ws=workspace.id, role="Editor", **extra):
        return ChangeRequest("grant", user, ws, role, **extra)

    cases = [
        # --- empty
        ("user-empty", grant(user=""), "user is empty"),
        ("user-blank", grant(user="   \u3000 "), "user is empty"),
        ("user-none", grant(user=None), "user is empty"),
        ("workspace-empty", grant(ws=""), "workspace is empty"),
        ("role-empty", grant(role=""), "role is empty"),
        ("role-none", grant(role=None), "role is empty"),
        ("action-empty", ChangeRequest("", email, workspace.id, "Editor"), "action is empty"),
        # --- wrong types
        ("user-int", grant(user=42), "user must be text, got int"),
        ("user-float", grant(user=3.5), "user must be text, got float"),
        ("user-bool", grant(user=True), "user must be text, got bool"),
        ("user-list", grant(user=[email]), "user must be text, got list"),
        ("user-dict", grant(user={"email": email}), "user must be text, got dict"),
        ("user-bytes", grant(user=email.encode()), "user must be text, got bytes"),
        ("workspace-int", grant(ws=7), "workspace must be text, got int"),
        ("role-list", grant(role=["Editor"]), "role must be text, got list"),
        ("reason-int", grant(reason=5), "reason must be text, got int"),
        ("requested_by-list", grant(requested_by=["me"]), "requested_by must be text, got list"),
        ("action-unknown", ChangeRequest("promote", email, workspace.id, "Editor"), "action must be 'grant' or 'revoke'"),
        ("action-uppercase", ChangeRequest("GRANT", email, workspace.id, "Editor"), "action must be 'grant' or 'revoke'"),
        # --- overlong
        ("user-321-chars", grant(user="u" * 321), "at most 320 are allowed"),
        ("user-100k-chars", grant(user="u" * 100_000), "at most 320 are allowed"),
        ("workspace-10k-chars", grant(ws="W" * 10_000), "at most 320 are allowed"),
        ("role-321-chars", grant(role="r" * 321), "at most 320 are allowed"),
        ("reason-2001-chars", grant(reason="x" * 2001), "reason is 2001 characters long; at most 2000"),
        ("requested_by-1000-chars", grant(requested_by="p" * 1000), "requested_by is 1000 characters long"),
        # --- control and invisible characters
        ("user-newline", grant(user=email.replace("@", "@\n")), "control or invisible characters"),
        ("user-nul", grant(user="\x00" + email), "control or invisible characters"),
        ("user-zero-width-space", grant(user=email.replace("@", "\u200b@")), "control or invisible characters"),
        ("user-rtl-override", grant(user="\u202e" + email), "control or invisible characters"),
        ("workspace-tab", grant(ws=workspace.display_name[:1] + "\t" + workspace.display_name[1:]), "control or invisible characters"),
        ("role-escape", grant(role="Edi\x1b[31mtor"), "control or invisible characters"),
        ("requested_by-bell", grant(requested_by="\x07me"), "control or invisible characters"),
        ("reason-bom", grant(reason="\ufeffon-call"), "control or invisible characters"),
        # --- unicode look-alikes: never fuzzy-matched to a real user, workspace or role
        ("user-fullwidth", grant(user="".join(FULLWIDTH.get(c, c) for c in email)), "unknown user"),
        ("user-cyrillic-a", grant(user=email.replace("a", "\u0430", 1) if "a" in email else "\u0430" + email), "unknown user"),
        ("user-emoji", grant(user="\U0001f600@example.com"), "unknown user"),
        ("user-combining-accent", grant(user=email.replace("@", "\u0301@")), "unknown user"),
        ("role-combining-accent", grant(role="Admin\u0301"), "unknown role"),
        ("workspace-fullwidth", grant(ws="".join(FULLWIDTH.get(c, c) for c in workspace.display_name.lower())), "unknown workspace"),
        # --- SQL-like text is data, never SQL; LIKE wildcards match nothing
        ("user-sql-or", grant(user="' OR '1'='1"), "unknown user"),
        ("user-sql-drop", grant(user="x'; DROP TABLE main.provisioning_requests; --"), "unknown user"),
        ("user-sql-comment", grant(user=email + "' --"), "unknown user"),
        ("user-percent", grant(user="%"), "unknown user"),
        ("user-percent-at", grant(user="%@%"), "unknown user"),
        ("user-underscore", grant(user="_" * len(email)), "unknown user"),
        ("workspace-sql-or", grant(ws="' OR 1=1 --"), "unknown workspace"),
        ("workspace-percent", grant(ws="%"), "unknown workspace"),
        ("role-sql", grant(role="Editor' OR name <> '"), "unknown role"),
        ("role-wildcard", grant(role="%"), "unknown role"),
        # --- unknown or unusable ids and names
        ("user-unknown-uuid", grant(user=str(uuid.uuid4())), "unknown user: no active org member has id"),
        ("user-workspace-identity-id", grant(user=membership.id), "unknown user: no active org member has id"),
        ("user-pending-invite", grant(user=invite.email), "pending invite but is not yet an accepted org member"),
        ("user-unknown-email", grant(user="nobody.at.all@example.com"), "no active org member has the email"),
        ("user-neither-email-nor-id", grant(user="ada"), "'ada' is neither an email address nor a user id"),
        ("workspace-unknown-uuid", grant(ws=str(uuid.uuid4())), "unknown workspace: no workspace has id"),
        ("workspace-org-id", grant(ws=org.organization_id), "unknown workspace: no workspace has id"),
        ("workspace-personal", grant(ws=personal.id), "is a personal workspace"),
        ("workspace-deleted", grant(ws=deleted.id), "is a deleted workspace"),
        ("workspace-unknown-name", grant(ws="No Such Workspace"), "unknown workspace"),
        ("role-unknown-uuid", grant(role=str(uuid.uuid4())), "unknown role"),
        ("role-custom-by-system-name", grant(role="CUSTOM"), "'CUSTOM' is LangSmith's name for every custom role"),
        ("role-org-by-display-name", grant(role="Organization Admin"), "is an organization role"),
        ("role-org-by-name", grant(role="ORGANIZATION_ADMIN"), "is an organization role"),
        ("role-org-by-id", grant(role=org_role.id), "is an organization role"),
        ("revoke-org-role", ChangeRequest("revoke", email, workspace.id, org_role.id), "is an organization role"),
    ]
    return cases


def test_every_bad_request_is_rejected_clearly_and_the_queue_stays_intact(start_env):
    sandbox, org, database = start_env()
    workspace = org.shared_workspaces()[4]
    good = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships][:2]
    queued = [request_grant(m.ls_user_id, workspace.id, "Viewer", reason="good one") for m in good]
    assert all(q.accepted for q in queued)
    before = {r["request_id"]: r for r in list_requests()}

    cases = corpus(org)
    assert len(cases) >= 60
    results = {}

    def check(case_id, result, message):
        assert result.status == "rejected", (case_id, result)
        assert message in result.message, (case_id, result.message)
        assert len(result.message) < 600, case_id  # says what is wrong; never echoes 100k characters
        results[case_id] = result

    # A sample through the Python API (each call takes the writer lease and publishes)...
    public, bulk = cases[::8], [case for i, case in enumerate(cases) if i % 8]
    for case_id, change, message in public:
        if change.action == "grant":
            result = request_grant(change.user, change.workspace, change.role, reason=change.reason,
                                   requested_by=change.requested_by)
        elif change.action == "revoke":
            result = request_revoke(change.user, change.workspace, change.role)
        else:
            result = submit(database, change)
        check(case_id, result, message)
    # ...and the rest through what that API runs under the lease, then one publish.
    with database.writer_lease("test: the bad-request corpus"):
        with database.connect() as conn:
            for case_id, change, message in bulk:
                check(case_id, submit_on(conn, change), message)
        database.publish()

    rows = {r["request_id"]: r for r in list_requests()}
    # Each rejection is recorded, once, with its reason; earlier requests are untouched.
    assert len(rows) == len(before) + len(cases)
    assert {rid: rows[rid] for rid in before} == before
    rejected = {r.request_id for r in results.values()}
    assert {rid for rid, r in rows.items() if r["status"] == "rejected"} == rejected
    assert all(rows[r.request_id]["status_detail"] == r.message for r in results.values())
    assert [rid for rid, r in rows.items() if r["status"] == "pending"] == list(before)
    events = dict(query(database.path, "SELECT kind, count(*) FROM main.provisioning_events GROUP BY ALL"))
    assert events == {"queued": 2, "rejected": len(cases)}
    assert len(sandbox.request_log) == 0, "validation never calls LangSmith"

    # Provisioning applies the two good requests and leaves every rejected one alone.
    outcome = provision()
    assert outcome.success, outcome.failure
    assert sorted(o["request_id"] for o in outcome.outputs["apply_requests"]["outcomes"]) == sorted(before)
    assert [w.method for w in writes(sandbox)] == ["POST", "POST"]
    after = {r["request_id"]: r["status"] for r in list_requests()}
    assert {rid: after[rid] for rid in before} == {rid: "applied" for rid in before}
    assert all(after[rid] == "rejected" for rid in rejected)
    print(f"\nbad requests: {len(cases)} queued ({len(public)} through the Python API), all rejected, "
          "queue intact, 0 API requests")


def launch(config: dict):
    return runner.run_job(PROVISION_JOB, {"ops": {"select_requests": {"config": config}}})


@pytest.mark.parametrize("config, says", [
    ({"request_ids": "not-a-list"}, "request_ids"),
    ({"request_ids": [1, 2]}, "request_ids"),
    ({"dry_run": "maybe"}, "dry_run"),
    ({"change": {"action": 5, "user": "a@b.c", "workspace": "W", "role": "Editor"}}, "action"),
    ({"change": {"action": "grant", "user": "a@b.c", "workspace": "W"}}, "role"),
    ({"change": {"action": "grant", "user": ["a@b.c"], "workspace": "W", "role": "Editor"}}, "user"),
    ({"users": ["a@b.c"]}, "users"),
], ids=["ids-a-string", "ids-numbers", "dry_run-a-string", "action-a-number", "role-missing", "user-a-list",
        "unknown-field"])
def test_wrong_types_in_run_config_are_refused_before_the_run(start_env, config, says):
    sandbox, org, database = start_env()
    with pytest.raises(dg.DagsterInvalidConfigError) as caught:
        launch(config)
    assert says in str(caught.value)
    assert len(sandbox.request_log) == 0 and list_requests() == []


def test_bad_values_in_run_config_fail_the_run_with_the_reason(start_env):
    sandbox, org, database = start_env()
    workspace = org.shared_workspaces()[0]
    member = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    cases = [
        ({"request_ids": [str(uuid.uuid4())]}, "Unknown request ids"),
        ({"request_ids": ["x' OR '1'='1"]}, """(this run's partition): "x' OR '1'='1"."""),  # quoted as typed
        ({"request_ids": ["a"], "change": {"action": "grant", "user": member.email, "workspace": workspace.id,
                                            "role": "Editor"}}, "either request_ids or one change"),
        ({"change": {"action": "grant", "user": member.email, "workspace": workspace.id,
                     "role": "Organization Admin"}}, "is an organization role"),
        ({"change": {"action": "grant", "user": "'; DELETE FROM main.grants; --", "workspace": workspace.id,
                     "role": "Editor"}}, "unknown user"),
        # Terms refused in the Launchpad's own words: its fields, not the CLI's flags.
        ({"change": {"action": "grant", "user": member.email, "workspace": workspace.id, "role": "Editor",
                     "duration": "400d"}}, "change.duration '400d' is longer than the ceiling"),
        ({"change": {"action": "grant", "user": member.email, "workspace": workspace.id, "role": "Editor",
                     "until": "2020-01-01T00:00Z"}}, "change.until 2020-01-01T00:00Z is in the past"),
    ]
    grants_before = query(database.path, "SELECT count(*) FROM main.grants")
    for config, says in cases:
        outcome = launch(config)
        assert not outcome.success and says in outcome.failure, (config, outcome.failure)
    assert len(sandbox.request_log) == 0
    assert [r["status"] for r in list_requests()] == ["rejected"] * 4
    assert query(database.path, "SELECT count(*) FROM main.grants") == grants_before


def test_the_console_script_rejects_with_exit_2_and_a_reason(start_env):
    sandbox, org, database = start_env()
    workspace = org.shared_workspaces()[0]
    env = os.environ.copy()
    done = subprocess.run(
        [CLI, "request", "grant", "--user", "' OR '1'='1", "--workspace", workspace.id, "--role", "Editor", "--json"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "rejected" and "unknown user" in answer["message"]
    done = subprocess.run([CLI, "request", "revoke", "--user", "\u202eada@example.com", "--workspace", "x",
                           "--role", "Organization Admin"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "rejected (" in done.stderr and "control or invisible characters" in done.stderr
    assert len(sandbox.request_log) == 0
    assert [r["status"] for r in list_requests()] == ["rejected", "rejected"]
