"""Provisioning for real: queue in DuckDB, the op job in-process, writes over HTTP to the sandbox.

One sync builds a template database; each test copies it and serves a fresh copy of the same
generated org, so tests start from identical, independent states.
"""

import errno
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.errors import DagsterExecutionInterruptedError

from langsmith_access import runner
from langsmith_access.api import list_requests, provision, request_grant, request_revoke
from langsmith_access.defs.orgs import org_tags
from langsmith_access.defs.provisioning.definitions import REFUSED_INPUT_TAG, failed_runs_backoff
from langsmith_access.langsmith import LangSmithClient, ProvisioningInterruptedError
from langsmith_access.provisioning import executor, queue
from langsmith_access.provisioning.executor import Provisioner
from langsmith_access.sandbox import SandboxServer
from langsmith_access.sandbox.api import ApiResponse
from langsmith_access.store import export
from langsmith_access.store.database import PublishFailedError
from langsmith_access.store.queries import grants_held_at
from langsmith_access_tests.helpers import (
    actual_org_grants,
    actual_workspace_grants,
    copy_of,
    expected_org_grants,
    expected_workspace_grants,
    point_at,
    query,
    run_sync,
)
from langsmith_access_tests.langsmith.sandbox_client_support import ids_in_capitals, wrap_respond
from langsmith_access_tests.provisioning.conftest import API_KEY, WRITES, new_org


def writes(sandbox):
    return [r for r in sandbox.request_log.snapshot() if r.method in WRITES]


def pick(org):
    """An outsider and two members of the first shared workspace, and the workspace roles."""
    workspace = org.shared_workspaces()[0]
    members = list(workspace.memberships.values())
    outsider = next(
        m for m in org.active_members()
        if m.ls_user_id not in workspace.memberships and not m.is_disabled
    )
    roles = {r.display_name: r.id for r in org.roles_by_scope("workspace")}
    return workspace, outsider, members[0], members[1], roles


def test_grant_change_and_revoke_closed_loop(env):
    sandbox, org, database = env
    workspace, outsider, changer, leaver, roles = pick(org)
    new_role = next(name for name, rid in roles.items() if rid != changer.role_id and name != "Admin")
    leaver_role = org.role(leaver.role_id).display_name
    changer_old_role, leaver_old_role = changer.role_id, leaver.role_id  # the sandbox edits these in place
    added = request_grant(outsider.email.upper(), workspace.display_name if len(org.workspaces_named(workspace.display_name)) == 1 else workspace.id, "Viewer", reason="onboarding", requested_by="tests")
    changed = request_grant(changer.ls_user_id, workspace.id, new_role)
    revoked = request_revoke(leaver.ls_user_id, workspace.id, leaver_role)
    assert added.accepted and changed.accepted and revoked.accepted, (added, changed, revoked)

    # Dry run: plans from live state, sends no writes, leaves statuses as they were.
    dry = provision(dry_run=True)
    assert dry.success, dry.failure
    plans = {o["request_id"]: o["plan"] for o in dry.outputs["apply_requests"]["outcomes"]}
    assert plans == {added.request_id: "add", changed.request_id: "change_role", revoked.request_id: "remove"}
    assert writes(sandbox) == []
    assert {r["status"] for r in list_requests()} == {"pending"}

    outcome = provision()
    assert outcome.success, outcome.failure
    # Exactly one write per needed change, and LangSmith now has the result.
    assert_applied_with_one_write_each(sandbox, org, workspace, [added, changed, revoked], {
        outsider.ls_user_id: roles["Viewer"], changer.ls_user_id: roles[new_role], leaver.ls_user_id: None})

    # grants and grant_history changed at once, without a sync.
    current = set(query(database.path,
        "SELECT user_id, role_id FROM main.grants WHERE workspace_id = ? AND entitlement_type = 'workspace_role'",
        [workspace.id]))
    assert (outsider.ls_user_id, roles["Viewer"]) in current
    assert (changer.ls_user_id, roles[new_role]) in current
    assert not any(user == leaver.ls_user_id for user, _ in current)
    open_intervals = dict(((u, r), vt) for u, r, vt in query(database.path,
        "SELECT user_id, role_id, valid_to FROM main.grant_history WHERE workspace_id = ?", [workspace.id]))
    assert open_intervals[(outsider.ls_user_id, roles["Viewer"])] is None
    assert open_intervals[(changer.ls_user_id, changer_old_role)] is not None
    assert open_intervals[(changer.ls_user_id, roles[new_role])] is None
    assert open_intervals[(leaver.ls_user_id, leaver_old_role)] is not None

    # The audit trail: each decision and call, in order, for the added user.
    kinds = [k for (k,) in query(database.path,
        'SELECT kind FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"', [added.request_id])]
    assert kinds == ["queued", "claimed", "validated_live", "read_live", "planned", "write_sent",
                     "write_answered", "verified", "settled"]
    # Every API call it records names its method, path and the status LangSmith answered.
    calls = query(database.path,
        "SELECT kind, detail->>'method', detail->>'path', detail->>'status_code' FROM main.provisioning_events "
        "WHERE request_id = ? AND kind IN ('validated_live', 'read_live', 'write_answered', 'verified') "
        'ORDER BY "at"', [added.request_id])
    assert len(calls) == 4 and all(method and path.startswith("/api/v1/") and status == "200"
                                   for _, method, path, status in calls), calls

    # A second provision makes zero writes.
    sandbox.reset_log()
    again = provision()
    assert again.success and again.outputs["apply_requests"]["outcomes"] == []
    assert writes(sandbox) == []
    # Asking again for what is already true is settled without a write.
    same = request_grant(outsider.ls_user_id, workspace.id, "Viewer")
    assert provision().outputs["apply_requests"]["outcomes"][0]["status"] == "already_satisfied"
    assert writes(sandbox) == [] and same.accepted


def test_ids_the_api_spells_in_capitals_are_synced_and_provisioned_in_one_spelling(env):
    """LangSmith's ids are UUIDs, in any spelling: an org whose answers spell them in capitals
    syncs to the same tables, in LangSmith's own spelling (so ids typed in either spelling find
    them), and its members are found, changed and verified by provisioning, one write each."""
    sandbox, org, database = env
    ids_in_capitals(sandbox)
    outcome = run_sync()
    assert outcome.success, outcome.failure
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)
    assert actual_org_grants(database.path) == expected_org_grants(org)
    listed = {table: {row[0] for row in query(database.path, f"SELECT {column} FROM raw.{table}")}
              for table, column in (("org_members", "ls_user_id"), ("workspaces", "workspace_id"),
                                    ("roles", "role_id"), ("workspace_memberships", "role_id"))}
    assert listed["org_members"] == {m.ls_user_id for m in org.active_members()}
    assert listed["workspaces"] == {w.id for w in org.all_workspaces()}
    assert listed["roles"] == set(org.roles)
    assert listed["workspace_memberships"] <= set(org.roles)

    workspace, outsider, changer, leaver, roles = pick(org)
    new_role = next(name for name, rid in roles.items() if rid != changer.role_id and name != "Admin")
    leaver_role = org.role(leaver.role_id).display_name
    added = request_grant(outsider.ls_user_id.upper(), workspace.id, "Viewer")
    changed = request_grant(changer.ls_user_id, workspace.id.upper(), new_role)
    revoked = request_revoke(leaver.ls_user_id, workspace.id, leaver_role)
    assert added.accepted and changed.accepted and revoked.accepted, (added, changed, revoked)
    outcome = provision()
    assert outcome.success, outcome.failure
    assert_applied_with_one_write_each(sandbox, org, workspace, [added, changed, revoked], {
        outsider.ls_user_id: roles["Viewer"], changer.ls_user_id: roles[new_role], leaver.ls_user_id: None})
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)


def assert_applied_with_one_write_each(sandbox, org, workspace, requested, roles_now):
    """An add, a role change and a removal (``requested``, in that order) all applied with one
    POST, PATCH and DELETE; ``roles_now``: each user's role in ``workspace`` now (None: none)."""
    assert {r["request_id"]: r["status"] for r in list_requests()} == {r.request_id: "applied" for r in requested}
    assert [w.method for w in writes(sandbox)] == ["POST", "PATCH", "DELETE"]
    for user_id, role_id in roles_now.items():
        membership = org.membership(workspace.id, user_id)
        assert (membership.role_id if membership else None) == role_id, user_id


def test_a_self_hosted_install_is_provisioned_through_its_api_v1_endpoint(env, monkeypatch):
    """DESIGN.md section 8: provisioning works unchanged on a self-hosted install set as its docs
    say (``https://<host>/api/v1/``), where every path outside /api is the web UI's page: an
    add, a role change and a removal are applied, verified and recorded, every call under /api/v1/."""
    _cloud, _org, database = env
    with SandboxServer(new_org(), api_key=API_KEY, deployment="self-hosted") as hosted:
        point_at(monkeypatch, hosted, database.path)
        monkeypatch.setenv("LANGSMITH_ENDPOINT", f"{hosted.url}/api/v1/")
        org = hosted.org
        workspace, outsider, changer, leaver, roles = pick(org)
        new_role = next(name for name, rid in roles.items() if rid != changer.role_id and name != "Admin")
        requested = [request_grant(outsider.ls_user_id, workspace.id, "Viewer"),
                     request_grant(changer.ls_user_id, workspace.id, new_role),
                     request_revoke(leaver.ls_user_id, workspace.id, org.role(leaver.role_id).display_name)]
        assert all(r.accepted for r in requested), requested
        outcome = provision()
        assert outcome.success, outcome.failure
        assert_applied_with_one_write_each(hosted, org, workspace, requested, {
            outsider.ls_user_id: roles["Viewer"], changer.ls_user_id: roles[new_role], leaver.ls_user_id: None})
        calls = hosted.request_log.snapshot()
    assert all(call.path.startswith("/api/v1/") and call.status < 400 for call in calls), calls


def test_the_last_word_on_a_membership_is_never_merged_into_an_earlier_request(env):
    """Revoke, grant, revoke: the third is the same change as the first, but merged into it it
    would run before the grant it overturns, and the member would keep the role."""
    sandbox, org, database = env
    workspace, _, member, _, roles = pick(org)
    role = org.role(member.role_id).display_name
    first = request_revoke(member.ls_user_id, workspace.id, role, reason="leaving")
    regrant = request_grant(member.ls_user_id, workspace.id, role)
    last = request_revoke(member.ls_user_id, workspace.id, role, reason="security: remove now")
    assert first.accepted and regrant.accepted and last.accepted
    assert last.duplicate_of is None and last.request_id != first.request_id
    again = request_revoke(org.member(member.ls_user_id).email.upper(), workspace.id, role)  # as the latest: one request
    assert again.duplicate_of == last.request_id
    assert provision().success
    assert org.membership(workspace.id, member.ls_user_id) is None
    assert {r["request_id"]: r["status"] for r in list_requests()} == {
        first.request_id: "applied", regrant.request_id: "applied", last.request_id: "applied"}


def test_roles_given_and_taken_in_one_batch_are_in_the_history(env):
    # "Who had access when": a grant revoked in the same batch, and a role replaced by the
    # next request of the batch, were held in LangSmith between two verifications though no
    # build's grants ever listed them. grant_history keeps them, dated by those verifications.
    sandbox, org, database = env
    workspace, outsider, changer, single, roles = pick(org)
    first, second = [name for name, rid in roles.items() if rid != changer.role_id][:2]
    single_role = next(name for name, rid in roles.items() if rid != single.role_id)
    changer_before = org.role(changer.role_id).display_name
    queued = [
        request_grant(outsider.ls_user_id, workspace.id, "Viewer"),
        request_revoke(outsider.ls_user_id, workspace.id, "Viewer"),
        request_grant(changer.ls_user_id, workspace.id, first),
        request_grant(changer.ls_user_id, workspace.id, second),
        request_grant(single.ls_user_id, workspace.id, single_role),
    ]
    assert all(request.accepted for request in queued), queued
    outcome = provision()
    assert outcome.success, outcome.failure
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert org.membership(workspace.id, changer.ls_user_id).role_id == roles[second]

    verified = {request_id: at for request_id, at in query(database.path,
        "SELECT request_id, max(verified_at) FROM raw.provisioning_observations GROUP BY request_id")}
    granted, revoked, changed_first, changed_second, single_at = (verified[q.request_id] for q in queued)
    intervals = sorted(query(database.path,
        "SELECT user_id, role_id, valid_from, valid_to FROM main.grant_history "
        "WHERE workspace_id = ? AND user_id IN (?, ?, ?)",
        [workspace.id, outsider.ls_user_id, changer.ls_user_id, single.ls_user_id]), key=str)
    assert (outsider.ls_user_id, roles["Viewer"], granted, revoked) in intervals, intervals
    assert (changer.ls_user_id, roles[first], changed_first, changed_second) in intervals, intervals
    assert (changer.ls_user_id, roles[second], changed_second, None) in intervals, intervals
    # A membership changed once has its two intervals, as before.
    assert [(role, valid_from, valid_to) for user, role, valid_from, valid_to in intervals
            if user == single.ls_user_id and valid_from >= single_at] == [(roles[single_role], single_at, None)]

    # access-at sees them between the two verifications...
    with duckdb.connect(str(database.path), read_only=True) as conn:
        between = grants_held_at(conn, granted + (revoked - granted) / 2,
                                 user_ids=[outsider.ls_user_id], workspace_id=workspace.id)
        assert [(grant.role_id, grant.role_name) for grant in between] == [(roles["Viewer"], "Viewer")]
        assert grants_held_at(conn, revoked, user_ids=[outsider.ls_user_id], workspace_id=workspace.id) == []
        # ...and the changes report lists each step.
        changes = conn.execute(
            "SELECT change_type, old_role_name, new_role_name FROM main.report_grant_changes "
            "WHERE user_id = ? AND workspace_id = ? ORDER BY changed_at",
            [changer.ls_user_id, workspace.id]).fetchall()
        # Provisioning made every one of them: none is drift.
        drift = conn.execute(
            "SELECT user_id FROM main.report_unexplained_changes WHERE user_id IN (?, ?)",
            [outsider.ls_user_id, changer.ls_user_id]).fetchall()
    assert changes == [("role_changed", changer_before, first), ("role_changed", first, second)]
    assert drift == []


def test_a_role_taken_and_given_back_in_one_batch_has_its_gap_and_keeps_its_return(env):
    """A revoke and a grant of the same role in one batch: every build lists the grant, so the
    snapshot holds one interval across them, but the member held no role between the two
    verifications. grant_history shows that gap, and when a later sync sees the role removed by
    hand, the time after the regrant stays in the history (ending it at the revoke's
    verification would say the member lost access there, hiding the access they had since)."""
    sandbox, org, database = env
    workspace, _, member, _, _roles = pick(org)
    role = org.role(member.role_id).display_name
    revoke = request_revoke(member.ls_user_id, workspace.id, role)
    regrant = request_grant(member.ls_user_id, workspace.id, role)
    assert revoke.accepted and regrant.accepted
    assert provision().success
    assert {r["status"] for r in list_requests()} == {"applied"}
    verified = dict(query(database.path,
        "SELECT request_id, max(verified_at) FROM raw.provisioning_observations GROUP BY request_id"))
    revoked, regranted = verified[revoke.request_id], verified[regrant.request_id]

    def roles_held_at(at):
        with duckdb.connect(str(database.path), read_only=True) as conn:
            return [grant.role_id for grant in grants_held_at(conn, at, user_ids=[member.ls_user_id],
                                                              workspace_id=workspace.id)
                    if grant.source == "direct"]  # not an Organization Admin's implicit Admin

    assert roles_held_at(revoked - timedelta(microseconds=1)) == [member.role_id]
    assert roles_held_at(revoked + (regranted - revoked) / 2) == []
    assert roles_held_at(regranted) == [member.role_id]
    # Provisioning made both changes: neither is drift.
    assert query(database.path, "SELECT change FROM main.report_unexplained_changes WHERE user_id = ?",
                 [member.ls_user_id]) == []

    org.remove_workspace_membership(workspace.id, member.ls_user_id)  # by hand, seen by the next sync
    before_sync = datetime.now(UTC)
    outcome = run_sync()
    assert outcome.success, outcome.failure
    assert roles_held_at(revoked + (regranted - revoked) / 2) == []
    assert roles_held_at(regranted) == [member.role_id]
    assert roles_held_at(before_sync) == [member.role_id]
    assert roles_held_at(datetime.now(UTC)) == []
    intervals = query(database.path,
        "SELECT valid_from, valid_to, opened_by_request_id FROM main.grant_history "
        "WHERE user_id = ? AND workspace_id = ? AND valid_from >= ? ORDER BY valid_from",
        [member.ls_user_id, workspace.id, regranted])
    assert [(valid_from, opened_by) for valid_from, _to, opened_by in intervals] == [(regranted, regrant.request_id)]


def test_adhoc_change_from_run_config_is_queued_and_audited(env):
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    config = {"ops": {"select_requests": {"config": {"change": {
        "action": "grant", "user": outsider.email, "workspace": workspace.id, "role": "Editor",
        "reason": "launchpad", "requested_by": "operator"}}}}}
    outcome = runner.run_job("provision_workspace_roles", config)
    assert outcome.success, outcome.failure
    [request] = list_requests()
    assert (request["status"], request["reason"], request["requested_by"]) == ("applied", "launchpad", "operator")
    assert org.membership(workspace.id, outsider.ls_user_id) is not None

    bad = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {"change": {
        "action": "grant", "user": outsider.email, "workspace": workspace.id, "role": "Organization Admin"}}}}})
    assert not bad.success and "organization role" in bad.failure
    assert [r["status"] for r in list_requests()] == ["applied", "rejected"]
    # No requested_by typed: the run it came from is named, for the refusal too.
    assert list_requests()[1]["requested_by"] == f"dagster run {bad.run_id}"
    # ... and the request and its refusal carry that run's id.
    rejected_id = list_requests()[1]["request_id"]
    assert query(database.path, "SELECT run_id FROM main.provisioning_requests WHERE request_id = ?",
                 [rejected_id]) == [(bad.run_id,)]
    assert query(database.path, "SELECT kind, run_id FROM main.provisioning_events WHERE request_id = ?",
                 [rejected_id]) == [("rejected", bad.run_id)]


def test_a_change_with_its_fields_left_empty_names_each_and_queues_nothing(env):
    """``change`` typed in the Launchpad with user, workspace and role left empty: one run names
    every one to fill in, and no rejected request is queued for what is a form left blank."""
    sandbox, org, database = env
    blank = {"action": "grant", "user": "", "workspace": " ", "role": ""}
    for dry_run in (False, True):
        refused = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {
            "change": blank, "dry_run": dry_run}}}})
        assert not refused.success
        assert ("change.user, change.workspace, change.role are empty: fill them in (user: an email or user id; "
                "workspace: a name or id; role: a workspace role's name or id). Nothing was queued."
                ) in refused.failure, refused.failure
    assert list_requests() == []


def test_a_launchpad_change_with_requested_by_left_blank_names_its_run(env):
    """requested_by typed as spaces is left out, not an anonymous request: the run is named."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    outcome = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {"change": {
        "action": "grant", "user": outsider.email, "workspace": workspace.id, "role": "Editor",
        "requested_by": "   "}}}}})
    assert outcome.success, outcome.failure
    [request] = list_requests()
    assert request["requested_by"] == f"dagster run {outcome.run_id}"


def test_run_config_reading_the_environment_is_refused_before_anything_is_recorded(env, monkeypatch):
    """{env: VAR} would copy a variable of the run worker (the webhook URL, a database password)
    into the queue, its audit and a refusal: both Launchpad jobs refuse it, naming the fields."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    secret = "https://hooks.example.com/T0-not-for-the-queue"
    monkeypatch.setenv("DEPLOYMENT_SECRET_FOR_TEST", secret)
    change = {"action": "grant", "user": {"env": "DEPLOYMENT_SECRET_FOR_TEST"}, "workspace": workspace.id,
              "role": "Editor", "reason": {"env": "DEPLOYMENT_SECRET_FOR_TEST"}}
    refused = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {"change": change}}}})
    assert not refused.success
    assert "reads change.reason, change.user from the environment" in refused.failure
    assert "Nothing was queued or recorded" in refused.failure and secret not in refused.failure
    assert list_requests() == []

    queued = request_grant(outsider.email, workspace.id, "Editor")
    decided = runner.run_job("decide_access_request", {"ops": {"decide_request": {"config": {
        "request_id": queued.request_id, "decision": "approve", "by": "ops@example.com",
        "comment": {"env": "DEPLOYMENT_SECRET_FOR_TEST"}}}}})
    assert not decided.success and "reads comment from the environment" in decided.failure
    assert secret not in decided.failure
    for table in ("provisioning_requests", "provisioning_events", "provisioning_approvals"):
        [(rows,)] = query(database.path, f"SELECT count(*) FROM main.{table} AS row WHERE CAST(row AS VARCHAR) "
                          "LIKE '%T0-not-for-the-queue%'")
        assert rows == 0, table


def test_a_request_id_read_from_the_environment_is_refused_and_never_echoed(env, monkeypatch):
    """request_ids is a list: an {env: VAR} entry would otherwise be echoed back as an unknown id."""
    secret = "https://hooks.example.com/T0-not-for-the-queue"
    monkeypatch.setenv("DEPLOYMENT_SECRET_FOR_TEST", secret)
    refused = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {
        "request_ids": [str(uuid.uuid4()), {"env": "DEPLOYMENT_SECRET_FOR_TEST"}]}}}})
    assert not refused.success and "reads request_ids[1] from the environment" in refused.failure, refused.failure
    assert secret not in refused.failure


def test_a_key_pasted_into_request_ids_is_not_echoed_in_the_refusal(env):
    """The failure goes into Dagster's event log, where no key may be (DESIGN.md section 1): a key
    pasted where an id belongs is named by its prefix only, as the decision job names it."""
    pasted = "lsv2_sk_" + "0123456789abcdef" * 2 + "_pastedhere"
    refused = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {
        "request_ids": [pasted]}}}})
    assert not refused.success and "Unknown request ids" in refused.failure
    assert "0123456789abcdef" not in refused.failure and "lsv2_" in refused.failure, refused.failure


def test_named_requests_that_are_not_pending_are_named_with_their_status(env):
    """The Launchpad's request_ids: a settled request is said to be so (it was skipped with no
    word), a dry run plans only what the real run would take, and an unknown id names the org."""
    sandbox, org, database = env
    workspace, outsider, member, _, _ = pick(org)
    done = request_grant(outsider.email, workspace.id, "Editor")
    assert provision().success
    waiting = request_revoke(member.ls_user_id, workspace.id, member.role_id)

    def launch(**config):
        return runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": config}}})

    refused = launch(request_ids=[done.request_id])
    assert not refused.success
    assert f"Nothing to apply: {done.request_id} is applied (final: queue a new request" in refused.failure
    planned = launch(request_ids=[done.request_id, waiting.request_id], dry_run=True)
    assert planned.success, planned.failure
    assert [o["request_id"] for o in planned.outputs["apply_requests"]["outcomes"]] == [waiting.request_id]
    with dg.instance_for_test() as instance:
        applied = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {
            "request_ids": [done.request_id, waiting.request_id]}}}}, dagster_instance=instance)
        warned = [entry.user_message for entry in instance.all_logs(applied.run_id) if entry.level == logging.WARNING]
    assert applied.success, applied.failure
    # The settled one is not passed over in silence: the run's log says why it was left.
    assert warned == [f"Left as they are: {done.request_id} is applied (final: queue a new request to change "
                      "it again)."], warned
    assert [(o["request_id"], o["status"]) for o in applied.outputs["apply_requests"]["outcomes"]] == [
        (waiting.request_id, "applied")]
    unknown = launch(request_ids=["no-such-request", "pasted\x1b[2J\nover two lines"])
    assert "Unknown request ids in the queue of org 'default'" in unknown.failure
    assert "`langsmith-access requests`" in unknown.failure
    # Each shown quoted, a control character escaped: not obeyed by the terminal or the log's lines.
    assert "'no-such-request', 'pasted\\x1b[2J\\nover two lines'." in unknown.failure
    assert "\x1b" not in unknown.failure and "pasted\n" not in unknown.failure


def test_a_policy_that_cannot_be_read_holds_grants_only_and_a_dry_run_plans_what_the_run_would_take(
        env, tmp_path, monkeypatch):
    """Only grants wait for the access policy: a run of revokes alone applies them and succeeds
    while the policy cannot be read (a failed run would make the sensors wait after it, for a
    policy none of its requests needed); a dry run then plans the revokes, not the grants held."""
    sandbox, org, database = env
    workspace, outsider, member, other, _ = pick(org)
    revoke = request_revoke(member.ls_user_id, workspace.id, member.role_id)
    policy = tmp_path / "policy.yaml"
    policy.write_text("approval: [unclosed\n")
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    outcome = provision()
    assert outcome.success, outcome.failure
    assert [(r["request_id"], r["status"]) for r in list_requests()] == [(revoke.request_id, "applied")]
    assert org.membership(workspace.id, member.ls_user_id) is None

    policy.unlink()  # queued with no policy to go by, then one that cannot be read
    monkeypatch.delenv("LANGSMITH_ACCESS_POLICY")
    grant = request_grant(outsider.email, workspace.id, "Editor")
    second = request_revoke(other.ls_user_id, workspace.id, other.role_id)
    policy.write_text("approval: [unclosed\n")
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    written = len(writes(sandbox))
    planned = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {"dry_run": True}}}})
    assert not planned.success and "1 grant(s) not applied (1 left pending)" in planned.failure, planned.failure
    assert [o["request_id"] for o in planned.outputs["apply_requests"]["outcomes"]] == [second.request_id]
    assert {r["request_id"]: r["status"] for r in list_requests()}[grant.request_id] == "pending"
    assert len(writes(sandbox)) == written


def test_a_run_given_another_database_file_in_the_launchpad_applies_that_files_queue(env, tmp_path):
    """The Launchpad's resources.provisioning_database.config.duckdb_path: the run takes the queue
    of that file and publishes it there; the org's own file is left as it was."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    request = request_grant(outsider.email, workspace.id, "Editor")
    elsewhere = copy_of(database, tmp_path / "elsewhere")
    outcome = runner.run_job("provision_workspace_roles", {"resources": {"provisioning_database": {
        "config": {"duckdb_path": str(elsewhere.path)}}}})
    assert outcome.success, outcome.failure
    assert query(elsewhere.path, "SELECT status FROM main.provisioning_requests WHERE request_id = ?",
                 [request.request_id]) == [("applied",)]
    assert org.membership(workspace.id, outsider.ls_user_id) is not None
    assert [(r["request_id"], r["status"]) for r in list_requests()] == [(request.request_id, "pending")]


def test_provision_with_an_empty_list_of_request_ids_or_one_id_unlisted_applies_nothing(env):
    """``provision(request_ids=[])`` (a selection that came out empty) is refused before any run:
    it is never taken for "every pending request"."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    waiting = request_grant(outsider.email, workspace.id, "Editor")
    with pytest.raises(ValueError, match=r"names no request, so nothing was run"):
        provision(request_ids=[])
    # One id not in a list: its characters would be taken for ids.
    listed = rf"is a string, not a list of request ids: pass request_ids=\['{waiting.request_id}'\]"
    with pytest.raises(ValueError, match=listed):
        provision(request_ids=waiting.request_id)
    assert writes(sandbox) == []
    assert [(r["request_id"], r["status"]) for r in list_requests()] == [(waiting.request_id, "pending")]


def test_request_ids_are_taken_as_typed_in_the_launchpad_and_a_blank_one_is_named(env):
    """An id pasted in capitals, with spaces around it or twice is the same request (as the
    decision job takes it); a blank entry is refused naming its place, and nothing is claimed."""
    sandbox, org, database = env
    workspace, outsider, member, _, _ = pick(org)
    grant = request_grant(outsider.email, workspace.id, "Editor")
    revoke = request_revoke(member.ls_user_id, workspace.id, member.role_id)

    def launch(**config):
        return runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": config}}})

    blank = launch(request_ids=[grant.request_id, "  "])
    assert not blank.success and ("request_ids[1] is empty: give a request id (`langsmith-access requests` "
                                  "lists them), or leave request_ids empty to apply every pending request. "
                                  "Nothing was claimed.") in blank.failure, blank.failure
    assert writes(sandbox) == []
    assert {r["status"] for r in list_requests()} == {"pending"}
    typed = launch(request_ids=[f" {grant.request_id.upper()} ", grant.request_id, f"{{{revoke.request_id}}}"])
    assert typed.success, typed.failure
    assert [(o["request_id"], o["status"]) for o in typed.outputs["apply_requests"]["outcomes"]] == [
        (grant.request_id, "applied"), (revoke.request_id, "applied")]
    assert [w.method for w in writes(sandbox)] == ["POST", "DELETE"]


@pytest.mark.parametrize("named_by", ["request_ids", "change"])
def test_a_request_a_dead_run_left_in_progress_is_applied_when_the_launchpad_names_it(env, named_by):
    """The Launchpad's request_ids take a request a run that died left in progress, as a run that
    names none does: it is not refused as settled. A ``change`` asking what it asks is that
    request (the queue folds it in): the run applies it too, rather than succeed having applied
    nothing (it was taken for one awaiting approval)."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    stuck = request_grant(outsider.email, workspace.id, "Editor")
    with database.writer_lease("test"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_requests SET status = 'in_progress', run_id = 'a-dead-run' "
                     "WHERE request_id = ?", [stuck.request_id])
    database.publish()
    config = ({"request_ids": [stuck.request_id]} if named_by == "request_ids" else
              {"change": {"action": "grant", "user": outsider.email, "workspace": workspace.id, "role": "Editor"}})
    outcome = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": config}}})
    assert outcome.success, outcome.failure
    assert [(o["request_id"], o["status"]) for o in outcome.outputs["apply_requests"]["outcomes"]] == [
        (stuck.request_id, "applied")]
    assert org.membership(workspace.id, outsider.ls_user_id) is not None
    assert [(r["request_id"], r["status"]) for r in list_requests()] == [(stuck.request_id, "applied")]
    # The analysts' copy, which the sensors read, says so once the run has ended.
    assert query(database.path, "SELECT status FROM main.provisioning_requests WHERE request_id = ?",
                 [stuck.request_id]) == [("applied",)]


def test_a_5xx_on_a_write_is_verified_by_a_read_not_resent(env):
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor")
    sandbox.faults.fail_writes_after_apply = 1  # applied, then answered 502
    outcome = provision()
    assert outcome.success, outcome.failure
    [result] = outcome.outputs["apply_requests"]["outcomes"]
    assert result["status"] == "applied" and result["detail"].startswith("verified")
    assert [w.method for w in writes(sandbox)] == ["POST"]
    kinds = [k for (k,) in query(database.path,
        'SELECT kind FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"', [request.request_id])]
    assert "write_uncertain" in kinds and kinds.count("write_sent") == 1


def test_crash_between_apply_and_record_then_recovery(env, monkeypatch):
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor")
    real_add = LangSmithClient.add_workspace_member

    def add_then_die(self, *args, **kwargs):
        real_add(self, *args, **kwargs)
        raise RuntimeError("simulated crash after the write, before it was recorded")

    monkeypatch.setattr(LangSmithClient, "add_workspace_member", add_then_die)
    crashed = provision()
    assert not crashed.success
    assert [r["status"] for r in list_requests()] == ["in_progress"]
    monkeypatch.setattr(LangSmithClient, "add_workspace_member", real_add)

    recovered = provision()
    assert recovered.success, recovered.failure
    [result] = recovered.outputs["apply_requests"]["outcomes"]
    assert result["status"] == "applied" and result["request_id"] == request.request_id
    assert [w.method for w in writes(sandbox)] == ["POST"]  # never sent twice
    kinds = [k for (k,) in query(database.path,
        'SELECT kind FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"', [request.request_id])]
    assert "recovered" in kinds


def test_a_run_whose_publish_fails_leaves_it_due_for_the_next_writer(env, monkeypatch):
    """A run that applied its requests and then could not publish (a full disk) leaves the
    analysts' copy behind what it committed: the unfinished-publish marker stays, so the next
    writer (here one that only takes the lease, as a notification claim or a failing sync does)
    publishes it, rather than `requests` showing the applied request pending until some run
    happens to publish. The run says so (``PublishFailedError``), not that it succeeded."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    room = export.stage_parquet_directory
    monkeypatch.setattr(export, "stage_parquet_directory", no_space)
    with pytest.raises(PublishFailedError) as raised:  # as a request whose publish failed says it
        provision()
    assert raised.value.result.success  # done, and said so: only the publish failed
    assert [item["status"] for item in raised.value.result.outputs["apply_requests"]["outcomes"]] == ["applied"]
    status = "SELECT status FROM main.provisioning_requests WHERE request_id = ?"
    assert query(database.working_path, status, [request.request_id]) == [("applied",)]
    assert [r["status"] for r in list_requests()] == ["pending"]  # the copy lags: the disk is full
    assert database.unfinished_publish_path.exists()

    # In Dagster (a run launched from the Launchpad): the run still succeeds, so neither the sensors'
    # wait after a failed run nor a re-execution from failure takes it for one (nothing is applied
    # again), and its event log says what failed and the fix.
    with dg.instance_for_test() as instance:
        outcome = runner.run_job(runner.PROVISION_JOB, {}, dagster_instance=instance)
        run = instance.get_run_by_id(outcome.run_id)
        logs = instance.all_logs(outcome.run_id)
    assert outcome.success and run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert isinstance(outcome.unpublished, PublishFailedError)
    assert [entry.user_message for entry in logs if entry.dagster_event is None and entry.level == logging.ERROR] == [
        f"{outcome.unpublished}. Fix: free space on the file system holding {database.path.parent} (a publish "
        "writes a copy of the database beside it)"]
    assert str(outcome.unpublished).startswith(f"run provision_workspace_roles {outcome.run_id} recorded what it "
                                               "did, but publishing it to the analysts' copy")
    [teardown] = [entry.dagster_event for entry in logs if entry.dagster_event is not None
                  and entry.dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT
                  and entry.dagster_event.engine_event_data.error is not None]
    assert teardown.engine_event_data.error.cls_name == "PublishFailedError"

    monkeypatch.setattr(export, "stage_parquet_directory", room)  # (undo would drop env's variables too)
    with database.writer_lease("the next writer"):
        database.ensure_working()
    assert [r["status"] for r in list_requests()] == ["applied"]
    assert not database.unfinished_publish_path.exists()


def test_two_provisioning_runs_at_once_apply_each_request_once(env):
    """Two `langsmith-access provision` processes started together: the writer lease makes them
    take turns, each request is claimed by exactly one of them and written once."""
    sandbox, org, database = env
    workspace = org.shared_workspaces()[1]
    outsiders = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships][:4]
    for member in outsiders:
        assert request_grant(member.ls_user_id, workspace.id, "Viewer").accepted
    cli = str(Path(sys.executable).with_name("langsmith-access"))
    runs = [subprocess.Popen([cli, "provision", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=os.environ.copy()) for _ in range(2)]
    reports = [json.loads(run.communicate(timeout=300)[0]) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], reports
    handled = [item["request_id"] for report in reports for item in report["requests"]]
    assert sorted(handled) == sorted(r["request_id"] for r in list_requests())
    assert [w.method for w in writes(sandbox)] == ["POST"] * 4
    assert {r["status"] for r in list_requests()} == {"applied"}


def test_an_outage_mid_run_stops_the_run_and_loses_no_request(env, monkeypatch):
    """LangSmith stops answering right after the first write: that request stays in progress
    (its write went out), the others are pending again, none is failed, and the run fails with
    the fix. The next run settles the first from LangSmith's state and applies the rest, each
    write sent once."""
    sandbox, org, database = env
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")
    workspace = org.shared_workspaces()[0]
    outsiders = [m for m in org.active_members()
                 if m.ls_user_id not in workspace.memberships and not m.is_disabled][:3]
    queued = [request_grant(m.ls_user_id, workspace.id, "Viewer") for m in outsiders]
    assert all(q.accepted for q in queued), queued
    answering = sandbox.respond

    def down_after_the_first_write(request):
        if any(w.status == 200 for w in writes(sandbox)):
            return ApiResponse(503, {"detail": "Service Unavailable"})
        return answering(request)

    sandbox.respond = down_after_the_first_write
    with dg.instance_for_test() as instance:
        interrupted = runner.run_job("provision_workspace_roles", {}, dagster_instance=instance)
        [failure] = [entry.dagster_event.step_failure_data for entry in instance.all_logs(interrupted.run_id)
                     if entry.dagster_event is not None and entry.dagster_event.is_step_failure]
    assert not interrupted.success
    assert "stopped answering" in interrupted.failure and interrupted.fix == ProvisioningInterruptedError.fix
    # Every request the run took is accounted for: none settled, two pending again, one in progress.
    assert "stopped answering after 0 of 3 request(s) (" in interrupted.failure, interrupted.failure
    assert ("; 2 request(s) are pending again, 1 in progress (a write went out: the next run settles it "
            "from LangSmith's state)") in interrupted.failure, interrupted.failure
    # The Dagster UI shows the step's failure as a Failure: the message, its fix beside it.
    assert "stopped answering" in failure.user_failure_data.description
    assert failure.user_failure_data.metadata["fix"].text == ProvisioningInterruptedError.fix
    statuses = {r["request_id"]: (r["status"], r["status_detail"]) for r in list_requests()}
    first, *rest = (q.request_id for q in queued)
    assert statuses[first][0] == "in_progress" and "a write went out" in statuses[first][1]
    for request_id in rest:
        assert statuses[request_id][0] == "pending" and "pending again" in statuses[request_id][1]
    assert [w.method for w in writes(sandbox)] == ["POST"]

    sandbox.respond = answering
    recovered = provision()
    assert recovered.success, recovered.failure
    assert {r["request_id"]: r["status"] for r in list_requests()} == {q.request_id: "applied" for q in queued}
    assert [w.method for w in writes(sandbox)] == ["POST"] * 3  # the first one's was not sent again
    for member in outsiders:
        assert org.membership(workspace.id, member.ls_user_id) is not None


def test_a_run_an_outage_stopped_re_executed_from_failure_says_so_and_takes_nothing_twice(env, instance, monkeypatch):
    """The Dagster UI's "Re-execute from failure" of a run an outage stopped: the run failed in
    refresh_access_history, so the re-execution starts there, from the first run's outputs, and
    takes no request. It re-raised the first run's "LangSmith stopped answering" though
    LangSmith answered again, and counted as one more failed run, doubling the sensors' wait. It
    now says what it did and what retries the requests, writes nothing, audits nothing twice and
    makes nobody wait longer; re-executed with all steps, the run applies each request once."""
    sandbox, org, database = env
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")
    # As the webserver launches it: the job rebuilt from the code location, on a persistent instance.
    job = ReconstructableRepository.for_module("langsmith_access.definitions", "defs").get_reconstructable_job(
        "provision_workspace_roles")
    workspace, outsider, *_ = pick(org)
    queued = request_grant(outsider.ls_user_id, workspace.id, "Viewer")
    assert queued.accepted, queued
    answering = sandbox.respond
    sandbox.respond = lambda request: ApiResponse(503, {"detail": "Service Unavailable"})
    with dg.execute_job(job, instance=instance, tags={"dagster/partition": "default", **org_tags("default")}) as outage:
        assert not outage.success
    sandbox.respond = answering
    waiting = failed_runs_backoff(instance, "default")
    assert waiting is not None and "The last 1 provisioning run(s)" in waiting, waiting
    audited = query(database.path, "SELECT count(*) FROM main.provisioning_events")

    with dg.execute_job(job, instance=instance,
                        reexecution_options=dg.ReexecutionOptions.from_failure(outage.run_id, instance)) as again:
        [failure] = [event.step_failure_data for event in again.all_events if event.is_step_failure]
        assert not again.success
    rerun = instance.get_run_by_id(again.run_id)
    assert rerun.step_keys_to_execute == ["refresh_access_history"]
    said = failure.user_failure_data.description
    assert f"Re-executed from the failure of run {outage.run_id}, this run took no request" in said, said
    assert "re-execute it with all steps, or launch provision_workspace_roles from the Launchpad" in said, said
    assert REFUSED_INPUT_TAG in rerun.tags
    assert failed_runs_backoff(instance, "default") == waiting  # still the outage's one failure
    assert writes(sandbox) == [] and [r["status"] for r in list_requests()] == ["pending"]
    assert query(database.path, "SELECT count(*) FROM main.provisioning_events") == audited

    with dg.execute_job(job, instance=instance,
                        reexecution_options=dg.ReexecutionOptions(parent_run_id=outage.run_id)) as whole:
        assert whole.success
    assert [r["status"] for r in list_requests()] == ["applied"]
    assert [w.method for w in writes(sandbox)] == ["POST"]
    assert org.membership(workspace.id, outsider.ls_user_id) is not None


def test_an_outage_keeps_a_dead_runs_written_request_in_progress(env, monkeypatch):
    """A request an earlier run sent a write for (and died) is never handed back as pending:
    LangSmith's state settles it once it answers again."""
    sandbox, org, database = env
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")  # the outage, not the client's ~25 s of backoff
    workspace = org.shared_workspaces()[0]
    outsiders = [m for m in org.active_members()
                 if m.ls_user_id not in workspace.memberships and not m.is_disabled][:2]
    written, untouched = (request_grant(m.ls_user_id, workspace.id, "Viewer").request_id for m in outsiders)
    with database.writer_lease("test: a run that died after its write"), database.connect() as conn:
        queue.set_statuses(conn, [(written, "in_progress", None)], "dead-run")
        queue.record_events(conn, [(written, "write_sent", {"method": "POST"}, datetime.now(UTC))],
                            run_id="dead-run")
    sandbox.respond = lambda request: ApiResponse(503, {"detail": "Service Unavailable"})

    interrupted = provision()
    assert not interrupted.success and interrupted.fix == ProvisioningInterruptedError.fix
    statuses = {r["request_id"]: r["status"] for r in list_requests()}
    assert statuses == {written: "in_progress", untouched: "pending"}


def test_a_retried_call_is_in_the_audit_with_its_status_and_wait(env):
    # DESIGN.md section 4: one provisioning event per decision and API call, retries included.
    # LangSmith's rate limit answers the first write 429 (Retry-After: 0); the client waits and
    # sends it again, and the write's event records both attempts.
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships
                    and not m.is_disabled)
    refused = []

    def throttle_first_write(respond, request):
        if request.method == "POST" and request.path.endswith("/workspaces/current/members") and not refused:
            refused.append(request.path)
            return ApiResponse(429, {"detail": "Too many requests"}, {"Retry-After": "0"})
        return respond(request)

    wrap_respond(sandbox, throttle_first_write)
    queued = request_grant(outsider.ls_user_id, workspace.id, "Viewer")
    assert provision().success and refused
    [(detail,)] = query(database.path,
        "SELECT detail FROM main.provisioning_events WHERE request_id = ? AND kind = 'write_answered'",
        [queued.request_id])
    answered = json.loads(detail)
    assert answered["status_code"] == 200
    assert answered["retried"] == [{"method": "POST", "path": "/api/v1/workspaces/current/members",
                                    "status_code": 429, "problem": "rate limited (429) (workspace "
                                    f"{workspace.id})", "waited_seconds": 0.0}]
    # A call that needed no retry says nothing of the kind.
    reads = query(database.path,
        "SELECT detail FROM main.provisioning_events WHERE request_id = ? AND kind IN ('read_live', 'verified')",
        [queued.request_id])
    assert reads and all("retried" not in json.loads(d) for (d,) in reads)


def provision_dying_after_the_write(monkeypatch):
    """A provisioning run that dies right after its grant's write reached LangSmith."""
    real_add = LangSmithClient.add_workspace_member

    def add_then_die(self, *args, **kwargs):
        real_add(self, *args, **kwargs)
        raise RuntimeError("simulated crash after the write, before it was recorded")

    monkeypatch.setattr(LangSmithClient, "add_workspace_member", add_then_die)
    assert not provision().success
    monkeypatch.setattr(LangSmithClient, "add_workspace_member", real_add)


def test_a_grant_whose_until_passed_after_its_write_went_out_is_settled_not_rejected(env, monkeypatch):
    """A run dies right after its write of a grant `--until T`; T passes before the next run. The
    write is in LangSmith: the next run settles it from live state (applied, ending at T) rather
    than rejecting it as "nothing applied", and the run after that ends it."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    until = datetime.now(UTC) + timedelta(hours=2)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor", until=until.isoformat())
    assert request.accepted, request
    provision_dying_after_the_write(monkeypatch)
    assert [r["status"] for r in list_requests()] == ["in_progress"]
    passed = datetime.now(UTC) - timedelta(minutes=1)
    with database.writer_lease("test: the --until passes"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_requests SET access_until = ? WHERE request_id = ?",
                     [passed, request.request_id])

    recovered = provision()
    assert recovered.success, recovered.failure
    [row] = [r for r in list_requests() if r["request_id"] == request.request_id]
    assert row["status"] == "applied", row
    assert row["expires_at"] == passed
    assert org.membership(workspace.id, outsider.ls_user_id) is not None
    # Its end is due at once: the next run revokes what the dead run's write gave.
    assert provision().success
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert [w.method for w in writes(sandbox)] == ["POST", "DELETE"]


def test_a_time_bound_grant_a_dead_run_wrote_runs_from_that_write(env, monkeypatch):
    """A run dies right after its write of a grant `--duration 1h`, and the next run settles it
    two hours later (an outage): the member has held the role since the write, so the grant
    ends an hour after it (already past), not an hour after the settling; the run after that
    ends it."""
    sandbox, org, database = env
    workspace, outsider, *_ = pick(org)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor", duration="1h")
    assert request.accepted, request
    provision_dying_after_the_write(monkeypatch)
    written_at = datetime.now(UTC) - timedelta(hours=2)
    with database.writer_lease("test: the write went out two hours ago"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_events SET \"at\" = ? WHERE request_id = ? AND kind = 'write_sent'",
                     [written_at, request.request_id])

    recovered = provision()
    assert recovered.success, recovered.failure
    [row] = [r for r in list_requests() if r["request_id"] == request.request_id]
    assert row["status"] == "applied", row
    assert row["expires_at"] == written_at + timedelta(hours=1)
    assert provision().success
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert [w.method for w in writes(sandbox)] == ["POST", "DELETE"]


def viewer_grants_for_two_threads(org, monkeypatch) -> list[tuple[str, str]]:
    """Queue a grant of Viewer to every enabled member missing from a shared workspace, enough
    for two threads, which provisioning runs may use: (user id, workspace id) of each."""
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_CONCURRENCY", "2")
    grants = [(member.ls_user_id, workspace.id) for workspace in org.shared_workspaces()
              for member in org.active_members()
              if member.ls_user_id not in workspace.memberships and not member.is_disabled]
    assert len(grants) > 16  # two threads' worth (REQUESTS_PER_THREAD)
    for user_id, workspace_id in grants:
        assert request_grant(user_id, workspace_id, "Viewer").accepted
    return grants


def chain_failures(monkeypatch) -> threading.Event:
    """Set once a provisioning thread's chain of requests ended in an error. The calling thread
    wakes late to stop the run, as on a busy machine (where CI saw the workspaces' fan-out read
    on meanwhile): only what the failing thread itself does keeps the others from going on."""
    failed = threading.Event()
    real_chain, real_as_completed = Provisioner._process_chain, executor.as_completed

    def chain_telling_its_failure(self, requests):
        try:
            return real_chain(self, requests)
        except BaseException:
            failed.set()
            raise

    runs = itertools.count()

    def as_completed_waking_late(futures):
        late = next(runs) == 0  # the run that stops; the next, which applies the rest, wakes on time
        for future in real_as_completed(futures):
            if late:
                time.sleep(0.5)  # a delay the run must not depend on, not a wait for anything
            yield future

    monkeypatch.setattr(Provisioner, "_process_chain", chain_telling_its_failure)
    monkeypatch.setattr(executor, "as_completed", as_completed_waking_late)
    return failed


def test_a_run_stopping_mid_batch_starts_no_further_request(env, monkeypatch):
    """A batch big enough for several threads stops (an unexpected error here; a cancel from the
    Dagster UI or Ctrl-C alike) at its first write: the requests under way finish, no other
    starts, as in one thread. The next run applies the rest, each write once."""
    sandbox, org, database = env
    grants = viewer_grants_for_two_threads(org, monkeypatch)
    real_add = LangSmithClient.add_workspace_member
    calls = []
    failed = chain_failures(monkeypatch)

    def first_add_fails(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("simulated unexpected error")
        # The other thread's write under way when the first failed: it goes out after the failure.
        assert failed.wait(60), "the failing thread never ended"
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(LangSmithClient, "add_workspace_member", first_add_fails)
    stopped = provision()
    assert not stopped.success and "simulated unexpected error" in stopped.failure
    # Each of the two threads finishes the request it has under way; nothing more is written.
    assert len(writes(sandbox)) <= 2, writes(sandbox)
    monkeypatch.setattr(LangSmithClient, "add_workspace_member", real_add)
    assert provision().success
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert len(writes(sandbox)) == len(grants)
    for user_id, workspace_id in grants:
        assert org.membership(workspace_id, user_id) is not None


def test_a_run_stopping_mid_batch_takes_no_further_request_of_a_chain_under_way(env, monkeypatch):
    """A membership's requests run in order in one thread. When the run stops (an unexpected error
    in the other thread here) while that thread writes the chain's first request, the thread
    finishes that request and takes none of the chain's later ones: they wait for the next run."""
    sandbox, org, database = env
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_CONCURRENCY", "2")
    roles = {r.display_name: r.id for r in org.roles_by_scope("workspace")}
    outsiders = [(member, workspace) for workspace in org.shared_workspaces() for member in org.active_members()
                 if member.ls_user_id not in workspace.memberships and not member.is_disabled]
    assert len(outsiders) > 17  # two threads' worth (REQUESTS_PER_THREAD) besides the chain
    (chained, chain_workspace), *others = outsiders
    first = request_grant(chained.ls_user_id, chain_workspace.id, "Viewer")
    then = request_grant(chained.ls_user_id, chain_workspace.id, "Editor")  # the chain's later request
    assert first.accepted and then.accepted, (first, then)
    for member, workspace in others:
        assert request_grant(member.ls_user_id, workspace.id, "Viewer").accepted
    real_add = LangSmithClient.add_workspace_member
    failed, raised = chain_failures(monkeypatch), threading.Event()

    def the_other_thread_fails_while_the_chain_writes(self, workspace_id, *, org_identity_id, role_id):
        if (workspace_id, org_identity_id) == (chain_workspace.id, chained.id):
            assert failed.wait(60), "the other thread never failed"  # this write returns after that
        elif not raised.is_set():
            raised.set()
            raise RuntimeError("simulated unexpected error")
        return real_add(self, workspace_id, org_identity_id=org_identity_id, role_id=role_id)

    monkeypatch.setattr(LangSmithClient, "add_workspace_member", the_other_thread_fails_while_the_chain_writes)
    stopped = provision()
    assert not stopped.success and "simulated unexpected error" in stopped.failure
    # The chain's first request went out; its second (a role change) did not. (The other thread
    # may have started one more request before the run stopped: a POST.)
    assert org.membership(chain_workspace.id, chained.ls_user_id).role_id == roles["Viewer"]
    assert "PATCH" not in [w.method for w in writes(sandbox)], writes(sandbox)
    statuses = {r["request_id"]: r["status"] for r in list_requests()}
    assert statuses[then.request_id] not in {"applied", "already_satisfied"}, statuses[then.request_id]

    monkeypatch.setattr(LangSmithClient, "add_workspace_member", real_add)
    assert provision().success
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert org.membership(chain_workspace.id, chained.ls_user_id).role_id == roles["Editor"]


def test_a_run_stopped_while_it_hands_out_its_chains_starts_none_of_those_handed_out(env, monkeypatch):
    """The run is cancelled (an interrupt in the calling thread) while it hands a large batch's
    chains of requests to its threads: the chains handed out already stop as the others do,
    rather than every one of them running to its end before the run stops (leaving the pool
    waits for them). At most the requests under way finish; the next run applies the rest."""
    sandbox, org, database = env
    grants = viewer_grants_for_two_threads(org, monkeypatch)

    class PoolInterruptedAtTheTenthChain(executor.ThreadPoolExecutor):
        handed_out = 0

        def submit(self, *args, **kwargs):
            PoolInterruptedAtTheTenthChain.handed_out += 1
            if PoolInterruptedAtTheTenthChain.handed_out == 10:
                raise DagsterExecutionInterruptedError("simulated cancel from the Dagster UI")
            return super().submit(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(executor, "ThreadPoolExecutor", PoolInterruptedAtTheTenthChain)
        stopped = provision()
    assert not stopped.success
    assert len(writes(sandbox)) <= 2, writes(sandbox)  # nine chains were handed out
    assert provision().success
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert len(writes(sandbox)) == len(grants)


def test_a_write_whose_record_failed_is_neither_sent_nor_recorded_by_a_later_commit(env, monkeypatch):
    """The commit recording a write before it goes out fails (a full disk, say) in one of two
    threads: that write does not go out, and the other thread's later commits, with which the
    failed events are written, do not record it as sent either (the audit trail would show a
    write that never happened, and the next run would settle it as one in doubt). The next run
    applies every request, each write once."""
    sandbox, org, database = env
    grants = viewer_grants_for_two_threads(org, monkeypatch)
    real_record, real_add = queue.record_events, LangSmithClient.add_workspace_member
    failed = chain_failures(monkeypatch)

    def record_failing_the_first_write_sent(conn, events, **kwargs):
        if not failed.is_set() and any(kind == "write_sent" for _, kind, _, _ in events):
            raise duckdb.IOException("simulated: the disk is full")
        return real_record(conn, events, **kwargs)

    def add_once_a_thread_failed(self, *args, **kwargs):
        assert failed.wait(60), "no thread failed"  # the other thread writes, and records, after
        return real_add(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(queue, "record_events", record_failing_the_first_write_sent)
        patch.setattr(LangSmithClient, "add_workspace_member", add_once_a_thread_failed)
        stopped = provision()
    assert not stopped.success and "the disk is full" in stopped.failure, stopped.failure
    sent = query(database.path, "SELECT count(*) FROM main.provisioning_events WHERE kind = 'write_sent'")
    assert sent == [(len(writes(sandbox)),)], (sent, writes(sandbox))
    assert len(writes(sandbox)) == 1  # the other thread's write under way
    assert provision().success
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert len(writes(sandbox)) == len(grants)
