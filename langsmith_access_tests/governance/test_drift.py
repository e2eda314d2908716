"""Drift and the sync's notifications, with real runs: the session's synced org, the sandbox
serving it, real syncs and provisioning runs, a real Dagster instance (for the check results)
and a webhook receiver on 127.0.0.1.

- A hand-made Admin grant and a hand-made promotion to Organization Admin, made in the sandbox
  between two syncs, are ``report_unexplained_changes`` rows, each a WARN result of the
  non-blocking check ``unexplained_privileged_changes`` and one ``change.unexplained``; the
  sync publishes all the same. Changes made through provisioning are never rows, whether the
  refresh after the provisioning run recorded them or (a run that died before its refresh)
  the next sync did; a request whose effect a later one undid explains nothing (an Admin added
  by hand after a time-bound Admin grant ended is drift). Re-running the sync keeps the rows and notifies nothing twice.
- An Admin granted through provisioning, removed by hand and re-added by hand is drift as soon as a
  request finds it: the grant, applied before the latest sync, explains nothing found after it.
- A sync (the console script, which delivers it) or an inventory run that fails raises
  ``sync.failed``, kept in the working file after the run's scratch copy is discarded, with no
  secret in it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.api import deliver_notifications, provision, request_grant, request_revoke
from langsmith_access.governance.drift import UnexplainedChange, notify_unexplained_changes, unexplained_changes
from langsmith_access.governance.notifications import Notifier
from langsmith_access.langsmith import LangSmithClient
from langsmith_access.names import INVENTORY_JOB
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.executor import Provisioner
from langsmith_access.provisioning.expiry import queue_due_expiries
from langsmith_access.settings import Settings
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.governance.receiver import WebhookReceiver
from langsmith_access_tests.governance.support import cli, request_row
from langsmith_access_tests.helpers import query
from langsmith_access_tests.synced import API_KEY

CHECK = "unexplained_privileged_changes"
REPORT = "main/report_unexplained_changes"


@pytest.fixture
def watched(env, monkeypatch):
    """The synced env (no access policy) with a webhook receiver."""
    sandbox, org, database = env
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)
        yield sandbox, org, database, receiver


def drift_check_results(instance: dg.DagsterInstance, run_id: str) -> list:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return [e for e in evaluations if e.check_name == CHECK and e.asset_key.to_user_string() == REPORT]


def published_drift(instance: dg.DagsterInstance, run_id: str) -> int:
    """The ``unexplained_changes`` number the run's analysts_database materialization carries."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    [materialization] = [
        r.event_log_entry.asset_materialization for r in records
        if r.event_log_entry.asset_materialization.asset_key == dg.AssetKey("analysts_database")]
    return materialization.metadata["unexplained_changes"].value


def unexplained(database, sync_id: str | None = None) -> set[tuple]:
    sql = ("SELECT change, user_id, workspace_id, role_id, previous_role_id, sync_id "
           "FROM main.report_unexplained_changes")
    return set(query(database.path, sql + (" WHERE sync_id = ?" if sync_id else ""), [sync_id] if sync_id else []))


def bodies(receiver: WebhookReceiver, event: str) -> list[dict]:
    return [body for body in receiver.bodies() if body["event"] == event]


def cast_of(org):
    """The built-in roles' ids by name, a workspace no other shares a name with, and the enabled
    Organization Users (whose workspace access is all through workspace roles)."""
    role = {r.name: r.id for r in org.roles.values() if r.name != "CUSTOM"}
    workspace = next(w for w in org.shared_workspaces()
                     if sum(1 for w2 in org.shared_workspaces() if w2.display_name == w.display_name) == 1)
    enabled = [m for m in org.active_members()
               if not m.is_disabled and org.roles[m.org_role_id].name == "ORGANIZATION_USER"]
    return role, workspace, enabled


def test_hand_made_admin_access_is_drift_and_provisioned_changes_are_not(watched, instance):
    _, org, database, receiver = watched
    role, workspace, enabled = cast_of(org)
    outsiders = [m for m in enabled if m.ls_user_id not in workspace.memberships]
    editor = next(m for m in enabled if workspace.memberships.get(m.ls_user_id)
                  and workspace.memberships[m.ls_user_id].role_id == role["WORKSPACE_USER"])
    provisioned, hand_made_admin, promoted, readded = outsiders[:4]

    # 1. Through provisioning, refreshed by its own run: an Editor grant, and an hour of Admin
    # that then ends (the member removed).
    granted = request_grant(provisioned.email, workspace.id, "Editor", requested_by="ops@example.com")
    assert granted.accepted, granted.message
    an_hour = request_grant(readded.email, workspace.id, "Admin", duration="1h")
    outcome = provision()
    assert outcome.success, outcome.failure
    assert request_row(database, granted.request_id)["status"] == "applied"
    assert request_row(database, an_hour.request_id)["status"] == "applied"
    with database.writer_lease("test: the hour is over"), database.connect() as conn:
        assert len(queue_due_expiries(conn, datetime.now(UTC) + timedelta(minutes=75))) == 1
    outcome = provision()
    assert outcome.success, outcome.failure
    assert readded.ls_user_id not in org.workspace(workspace.id).memberships
    assert unexplained(database) == set()  # the refresh rebuilt the report: nothing unexplained

    # 2. Through provisioning by a run that died before its refresh: the next sync records it
    # (an Editor made Admin), dated by the verification.
    promoted_by_request = request_grant(editor.email, workspace.id, "Admin")
    assert promoted_by_request.accepted, promoted_by_request.message
    with database.writer_lease("a provisioning run that dies before its refresh"), database.connect() as conn:
        claimed = queue.claim(conn, "run-that-died", [promoted_by_request.request_id])
        client = LangSmithClient(Settings.from_env().client())
        try:
            Provisioner(client, conn, "run-that-died").process_all(claimed)
        finally:
            client.close()
    assert org.workspace(workspace.id).memberships[editor.ls_user_id].role_id == role["WORKSPACE_ADMIN"]

    # 3. By hand, in LangSmith: an Admin of the workspace (twice: one whose hour of Admin
    # through provisioning ended) and an Organization Admin.
    org.add_workspace_membership(workspace.id, hand_made_admin.ls_user_id, role["WORKSPACE_ADMIN"])
    org.add_workspace_membership(workspace.id, readded.ls_user_id, role["WORKSPACE_ADMIN"])
    org.set_org_role(promoted.ls_user_id, role["ORGANIZATION_ADMIN"])

    synced = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
    assert synced.success, synced.failure  # drift warns, it never withholds the sync

    # Exactly the hand-made changes, with this sync's id; the provisioned ones are not there.
    expected = {
        ("added", hand_made_admin.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], None, synced.run_id),
        ("added", readded.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], None, synced.run_id),
        ("role_changed", promoted.ls_user_id, None, role["ORGANIZATION_ADMIN"], role["ORGANIZATION_USER"],
         synced.run_id),
    }
    assert unexplained(database) == expected
    # ... while grant_history holds the provisioned ones, each dated when provisioning verified
    # it: the sync built what the dead run had not before replacing the listings, so the Editor
    # role ends and the Admin role begins at the same moment, with no gap between them.
    held = set(query(database.path, "SELECT user_id, role_id FROM main.grant_history WHERE workspace_id = ? "
                     "AND valid_to IS NULL", [workspace.id]))
    assert {(provisioned.ls_user_id, role["WORKSPACE_USER"]), (editor.ls_user_id, role["WORKSPACE_ADMIN"])} <= held
    [(replaced_until,)] = query(database.path, "SELECT valid_to FROM main.grant_history WHERE user_id = ? "
                                "AND workspace_id = ? AND role_id = ?", [editor.ls_user_id, workspace.id,
                                                                          role["WORKSPACE_USER"]])
    [(admin_from,)] = query(database.path, "SELECT valid_from FROM main.grant_history WHERE user_id = ? "
                            "AND workspace_id = ? AND role_id = ?", [editor.ls_user_id, workspace.id,
                                                                     role["WORKSPACE_ADMIN"]])
    [(verified_at,)] = query(database.path, "SELECT verified_at FROM raw.provisioning_observations "
                             "WHERE request_id = ?", [promoted_by_request.request_id])
    assert replaced_until == admin_from == verified_at

    # The check: a WARN result on the report, not blocking, and the sync published.
    [warned] = drift_check_results(instance, synced.run_id)
    assert (warned.passed, warned.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert warned.metadata["dagster_dbt/failed_row_count"].value == 3
    run = instance.get_run_by_id(synced.run_id)
    assert run is not None and run.is_success
    assert published_drift(instance, synced.run_id) == 3  # the UI plots it across runs
    assert query(database.path, "SELECT count(*) FROM main.sync_runs WHERE sync_id = ?", [synced.run_id]) == [(1,)]
    assert (hand_made_admin.ls_user_id,) in query(
        database.path, "SELECT user_id FROM main.grants WHERE workspace_id = ? AND role_id = ?",
        [workspace.id, role["WORKSPACE_ADMIN"]])

    # One change.unexplained per row, with the documented payload; none for the requests.
    report = deliver_notifications()
    assert report.problem is None and not report.failed
    drift = bodies(receiver, "change.unexplained")
    assert sorted((b["user"], b["workspace"], b["role"]) for b in drift) == sorted([
        (hand_made_admin.email, workspace.display_name, "Admin"),
        (readded.email, workspace.display_name, "Admin"),
        (promoted.email, None, "Organization Admin"),
    ])
    for body in drift:
        assert list(body) == ["event", "at", "org", "request_id", "user", "workspace", "role", "detail"]
        assert body["org"] == "default" and body["request_id"] is None
        assert synced.run_id in body["detail"] and "no applied provisioning request explains it" in body["detail"]
    assert "Admin added in" in next(b for b in drift if b["user"] == hand_made_admin.email)["detail"]
    assert "from Organization User to Organization Admin" in next(
        b for b in drift if b["user"] == promoted.email)["detail"]
    assert {b["request_id"] for b in bodies(receiver, "request.applied")} == {granted.request_id, an_hour.request_id}

    # 4. The same sync again: nothing changed, so the rows stay, nothing is added, the check
    # passes, and no change is notified twice.
    again = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
    assert again.success, again.failure
    assert unexplained(database) == expected and unexplained(database, again.run_id) == set()
    [passed] = drift_check_results(instance, again.run_id)
    assert passed.passed
    assert published_drift(instance, again.run_id) == 0
    deliver_notifications()
    assert len(bodies(receiver, "change.unexplained")) == 3
    assert query(database.path, "SELECT count(*) FROM main.notifications WHERE event = 'change.unexplained'") == [(3,)]


def test_the_check_warns_of_an_admin_taken_away_by_a_role_change_and_never_of_other_roles(watched, instance):
    """DESIGN.md section 10: the non-blocking check warns on unexplained *privileged* changes
    only. A hand-made Editor is listed in the report but passes the check; an Admin made Editor
    by hand (Admin is the previous role, not the role held now) warns, counted alone beside an
    Editor made Viewer by the same sync."""
    _, org, database, _ = watched
    role, _, enabled = cast_of(org)
    enabled_ids = {m.ls_user_id for m in enabled}
    workspace = next(w for w in org.shared_workspaces() if any(
        u in enabled_ids and ms.role_id == role["WORKSPACE_ADMIN"] for u, ms in w.memberships.items()))
    admin = next(u for u, ms in workspace.memberships.items()
                 if u in enabled_ids and ms.role_id == role["WORKSPACE_ADMIN"])
    editor = next(u for u, ms in workspace.memberships.items()
                  if u in enabled_ids and ms.role_id == role["WORKSPACE_USER"])
    outsider = next(m.ls_user_id for m in enabled if m.ls_user_id not in workspace.memberships)

    # 1. Only an Editor added by hand: drift, listed, but not a privileged one.
    org.add_workspace_membership(workspace.id, outsider, role["WORKSPACE_USER"])
    first = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
    assert first.success, first.failure
    assert unexplained(database, first.run_id) == {
        ("added", outsider, workspace.id, role["WORKSPACE_USER"], None, first.run_id)}
    [passed] = drift_check_results(instance, first.run_id)
    assert passed.passed, passed.metadata

    # 2. An Admin made Editor and an Editor made Viewer, by hand: only the first warns.
    org.set_workspace_role(workspace.id, admin, role["WORKSPACE_USER"])
    org.set_workspace_role(workspace.id, editor, role["WORKSPACE_VIEWER"])
    second = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
    assert second.success, second.failure  # drift warns, it never withholds the sync
    assert unexplained(database, second.run_id) == {
        ("role_changed", admin, workspace.id, role["WORKSPACE_USER"], role["WORKSPACE_ADMIN"], second.run_id),
        ("role_changed", editor, workspace.id, role["WORKSPACE_VIEWER"], role["WORKSPACE_USER"], second.run_id),
    }
    [warned] = drift_check_results(instance, second.run_id)
    assert (warned.passed, warned.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert warned.metadata["dagster_dbt/failed_row_count"].value == 1


def test_the_sync_summary_says_the_drift_and_the_withheld_names_it_saw(env):
    # `langsmith-access sync` prints, under its counts, how many changes no applied request
    # explains (and how many touch Admin rights), and that the members answer was
    # anonymity-restricted (DESIGN.md section 8: visible to the operator in the sync summary).
    sandbox, org, database = env
    role, workspace, enabled = cast_of(org)
    admin, editor = [m for m in enabled if m.ls_user_id not in workspace.memberships][:2]
    org.add_workspace_membership(workspace.id, admin.ls_user_id, role["WORKSPACE_ADMIN"])
    org.add_workspace_membership(workspace.id, editor.ls_user_id, role["WORKSPACE_USER"])
    done = cli("sync", "--quiet")
    assert done.returncode == 0, done.stderr
    assert ("\n  drift: 2 change(s) no applied request explains, 1 of them to Admin rights (check "
            "unexplained_privileged_changes warns): see main.report_unexplained_changes\n") in done.stdout, done.stdout
    assert "anonymity-restricted" not in done.stdout

    sandbox.api.anonymity_restricted = True
    again = cli("sync", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "drift" not in again.stdout, again.stdout  # this sync saw no new change
    assert ("\n  the members answer was anonymity-restricted: withheld emails/names kept from the previous "
            "sync where known; every user's email known\n") in again.stdout, again.stdout
    # A member first seen behind the restriction has no email to keep: counted, where to look said
    # (on a first sync that is every member; "kept ... where known" alone read as nothing lost).
    org.add_member("first.seen@example.com", "First Seen")
    third = cli("sync", "--quiet")
    assert third.returncode == 0, third.stderr
    assert ("\n  the members answer was anonymity-restricted: withheld emails/names kept from the previous "
            "sync where known; 1 user(s) with no email known (main.users.email is null)\n") in third.stdout, \
        third.stdout


def test_a_failed_sync_and_a_failed_inventory_raise_sync_failed(watched, monkeypatch):
    sandbox, org, database, receiver = watched
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "0")  # fail at once
    published = query(database.path, "SELECT sync_id FROM main.sync_runs")
    # A change the failed sync would have reported, so its scratch copy has a notification to lose.
    member = next(m for m in org.active_members() if not m.is_disabled)
    org.set_org_role(member.ls_user_id, org.role_by_name("ORGANIZATION_ADMIN").id)

    sandbox.faults.failing_routes = ("/api/v1/orgs/current/roles",)
    done = cli("sync", "--quiet")  # the command line delivers what is due when it is done
    assert done.returncode == 1 and "Sync failed" in done.stderr, done.stderr
    [sync_failed] = bodies(receiver, "sync.failed")
    sandbox.faults.failing_routes = ("/api/v1/service-accounts",)
    inventory = runner.run_job(INVENTORY_JOB, {})
    assert not inventory.success

    # The analysts' copy is as it was; each failure is one sync.failed in the working file.
    assert query(database.path, "SELECT sync_id FROM main.sync_runs") == published
    with database.connect(read_only=True) as conn:
        outbox = conn.execute(
            "SELECT event, status, payload FROM main.notifications ORDER BY notification_seq").fetchall()
    assert [(event, status) for event, status, _ in outbox] == [
        ("sync.failed", "delivered"), ("sync.failed", "pending")]

    sandbox.faults.failing_routes = ()
    report = deliver_notifications()
    assert report.problem is None and not report.failed
    assert bodies(receiver, "sync.failed")[0] == sync_failed
    inventory_failed = bodies(receiver, "sync.failed")[1]
    for body, job in ((sync_failed, "langsmith_access_sync"), (inventory_failed, INVENTORY_JOB)):
        assert list(body) == ["event", "at", "org", "request_id", "user", "workspace", "role", "detail"]
        assert body["org"] == "default" and body["user"] is None and body["request_id"] is None
        assert body["detail"].startswith(f"{job} run ") and " failed and published nothing" in body["detail"]
    assert inventory_failed["detail"].startswith(f"{INVENTORY_JOB} run {inventory.run_id} failed")
    assert "/api/v1/orgs/current/roles" in sync_failed["detail"]
    assert "/api/v1/service-accounts" in inventory_failed["detail"]
    # No secret in what was stored or sent: not the API key, not the webhook URL.
    sent = json.dumps(receiver.bodies()) + json.dumps(outbox)
    assert API_KEY not in sent and receiver.url not in sent and receiver.path not in sent
    assert bodies(receiver, "change.unexplained") == []  # the failed sync published nothing


def test_changes_made_by_hand_that_requests_find_made_are_recorded_and_are_drift(watched, instance):
    """A request that finds its change made already applied nothing (DESIGN 10: drift is what no
    *applied* request explains): what it found is recorded where it contradicts ``grants`` (the
    refresh after its run shows it, dated when found), listed as unexplained, notified once; a
    request finding what ``grants`` already shows records nothing and rebuilds nothing. A request
    that changes what someone changed by hand records what it found before its write, so the hand
    change (an Editor made Admin) is not hidden behind the request's own (Admin made Viewer)."""
    _, org, database, receiver = watched
    role, workspace, enabled = cast_of(org)
    outsider = next(m for m in enabled if m.ls_user_id not in workspace.memberships)
    editors = [m for m in enabled if workspace.memberships.get(m.ls_user_id)
               and workspace.memberships[m.ls_user_id].role_id == role["WORKSPACE_USER"]]
    kept_editor, removed_editor, escalated = editors[:3]
    [(latest_sync,)] = query(database.path, "SELECT sync_id FROM main.sync_runs ORDER BY finished_at DESC LIMIT 1")

    # What grants shows already: nothing recorded, nothing rebuilt, nothing unexplained.
    as_synced = request_grant(kept_editor.email, workspace.id, "Editor")
    outcome = provision()
    assert outcome.success, outcome.failure
    assert request_row(database, as_synced.request_id)["status"] == "already_satisfied"
    assert query(database.path, "SELECT count(*) FROM raw.provisioning_observations WHERE request_id = ?",
                 [as_synced.request_id]) == [(0,)]
    assert outcome.outputs["refresh_access_history"] == {"unexplained_changes": 0,
                                                         "privileged_unexplained_changes": 0}

    # By hand, after the sync: an Admin added, an Editor removed, an Editor made Admin; then
    # requests for the first two, and one that makes the third a Viewer.
    org.add_workspace_membership(workspace.id, outsider.ls_user_id, role["WORKSPACE_ADMIN"])
    org.remove_workspace_membership(workspace.id, removed_editor.ls_user_id)
    org.set_workspace_role(workspace.id, escalated.ls_user_id, role["WORKSPACE_ADMIN"])
    grant = request_grant(outsider.email, workspace.id, "Admin", requested_by="ops@example.com")
    revoke = request_revoke(removed_editor.email, workspace.id, "Editor", requested_by="ops@example.com")
    demote = request_grant(escalated.email, workspace.id, "Viewer", requested_by="ops@example.com")
    assert grant.accepted and revoke.accepted and demote.accepted, (grant.message, revoke.message, demote.message)
    run = cli("provision")
    assert run.returncode == 0, run.stderr
    assert ("drift: 3 change(s) made outside langsmith-access, found by these requests, 2 of them to Admin "
            "rights: see main.report_unexplained_changes") in run.stdout
    assert request_row(database, demote.request_id)["status"] == "applied"
    assert org.workspace(workspace.id).memberships[escalated.ls_user_id].role_id == role["WORKSPACE_VIEWER"]
    assert request_row(database, grant.request_id)["status"] == "already_satisfied"
    assert request_row(database, revoke.request_id)["status"] == "already_satisfied"

    # grants shows LangSmith as the requests found it, each row naming the request that saw it.
    held = dict(((u, w), (r, by)) for u, w, r, by in query(
        database.path, "SELECT user_id, workspace_id, role_id, verified_by_request_id FROM main.grants "
        "WHERE workspace_id = ? AND entitlement_type = 'workspace_role'", [workspace.id]))
    assert held[(outsider.ls_user_id, workspace.id)] == (role["WORKSPACE_ADMIN"], grant.request_id)
    assert (removed_editor.ls_user_id, workspace.id) not in held
    [(found_at,)] = query(database.path, "SELECT verified_at FROM raw.provisioning_observations "
                          "WHERE request_id = ?", [grant.request_id])
    assert query(database.path, "SELECT valid_from FROM main.grant_history WHERE user_id = ? AND workspace_id = ? "
                 "AND valid_to IS NULL", [outsider.ls_user_id, workspace.id]) == [(found_at,)]

    # The hand-made Admin is in the history, from when the request found it until its write.
    [(found_admin_at,), (made_viewer_at,)] = query(
        database.path, "SELECT verified_at FROM raw.provisioning_observations WHERE request_id = ? "
        "ORDER BY verified_at", [demote.request_id])
    assert query(database.path, "SELECT valid_from, valid_to FROM main.grant_history WHERE user_id = ? "
                 "AND workspace_id = ? AND role_id = ?", [escalated.ls_user_id, workspace.id,
                                                          role["WORKSPACE_ADMIN"]]) == [(found_admin_at, made_viewer_at)]

    # Drift: the three hand changes (not the request's own Admin -> Viewer), under the latest
    # sync's id, notified once each.
    expected = {
        ("added", outsider.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], None, latest_sync),
        ("removed", removed_editor.ls_user_id, workspace.id, role["WORKSPACE_USER"], None, latest_sync),
        ("role_changed", escalated.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], role["WORKSPACE_USER"],
         latest_sync),
    }
    assert unexplained(database) == expected
    deliver_notifications()
    drift = bodies(receiver, "change.unexplained")
    assert sorted((b["user"], b["role"]) for b in drift) == sorted(
        [(outsider.email, "Admin"), (removed_editor.email, "Editor"), (escalated.email, "Admin")])
    assert [b["request_id"] for b in bodies(receiver, "request.applied")] == [demote.request_id]

    # The next sync sees nothing new: no row added, nothing notified twice.
    synced = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
    assert synced.success, synced.failure
    assert unexplained(database) == expected
    deliver_notifications()
    assert len(bodies(receiver, "change.unexplained")) == 3

    # A later provisioning run whose request finds nothing made by hand reports no drift: not the
    # changes earlier runs found, which are still listed.
    later = request_grant(kept_editor.email, workspace.id, "Viewer", requested_by="ops@example.com")
    outcome = provision()
    assert outcome.success, outcome.failure
    assert request_row(database, later.request_id)["status"] == "applied"
    assert outcome.outputs["refresh_access_history"] == {"unexplained_changes": 0, "privileged_unexplained_changes": 0}
    assert unexplained(database) == expected


def test_one_change_in_each_of_two_workspaces_is_two_notifications(tmp_path):
    # The same person given Admin by hand in two workspaces, seen by one sync: each is its own
    # change (and the organization role's, without a workspace, a third); a rerun adds none.
    seen = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    changes = [UnexplainedChange(change="added", user_id="u-1", email="ada@example.com", workspace_id=workspace,
                                 workspace_name=workspace, role_id="r-admin", role_name="Admin", previous_role_id=None,
                                 previous_role_name=None, seen_at=seen, sync_id="s-1")
               for workspace in ("w-1", "w-2", None)]
    database = AccessDatabase(tmp_path / "access.duckdb")
    notifier = Notifier("acme", enabled=True)
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            assert len(notify_unexplained_changes(conn, notifier, changes)) == 3
            assert notify_unexplained_changes(conn, notifier, changes) == []
            payloads = [json.loads(p) for (p,) in conn.execute(
                "SELECT payload FROM main.notifications ORDER BY notification_seq").fetchall()]
    assert [p["workspace"] for p in payloads] == ["w-1", "w-2", None]


def test_a_change_read_in_another_time_zone_is_not_notified_again(tmp_path):
    # DuckDB hands TIMESTAMPTZ back in the session's zone (the process's TZ): the Dagster daemon
    # in UTC and an operator's command in Paris read the same seen_at as different datetimes.
    def change(seen_at):
        return UnexplainedChange(change="added", user_id="u-1", email="ada@example.com", workspace_id="w-1",
                                 workspace_name="Platform", role_id="r-admin", role_name="Admin",
                                 previous_role_id=None, previous_role_name=None, seen_at=seen_at, sync_id="s-1")

    seen = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    in_paris = change(seen.astimezone(ZoneInfo("Europe/Paris")))
    assert in_paris.key == change(seen).key
    database = AccessDatabase(tmp_path / "access.duckdb")
    notifier = Notifier("acme", enabled=True)
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            assert len(notify_unexplained_changes(conn, notifier, [change(seen)])) == 1
            assert notify_unexplained_changes(conn, notifier, [in_paris]) == []


def test_the_changes_are_read_by_sync_and_time_with_their_names_and_notified_in_words(tmp_path):
    # report_unexplained_changes as dbt leaves it (its documented columns), in a plain DuckDB
    # file: which rows a sync or a refresh notifies, with which names, in what order.
    t1, t2, t3 = (datetime(2026, 11, 29, 9, m, tzinfo=UTC) for m in (0, 10, 20))
    with duckdb.connect(str(tmp_path / "x.duckdb")) as conn:
        assert unexplained_changes(conn) == []  # no report built yet
        conn.execute("CREATE SCHEMA staging")
        conn.execute("CREATE TABLE staging.stg_langsmith__workspaces (workspace_id VARCHAR, display_name VARCHAR)")
        conn.execute("INSERT INTO staging.stg_langsmith__workspaces VALUES ('w-1', 'Platform')")
        conn.execute("CREATE TABLE main.roles (role_id VARCHAR, display_name VARCHAR, name VARCHAR)")
        conn.execute("INSERT INTO main.roles VALUES ('r-admin', 'Admin', 'WORKSPACE_ADMIN'), "
                     "('r-editor', 'Editor', 'WORKSPACE_USER'), ('r-org-admin', 'Organization Admin', "
                     "'ORGANIZATION_ADMIN'), ('r-org-user', 'Organization User', 'ORGANIZATION_USER')")
        conn.execute("CREATE TABLE main.report_unexplained_changes (change VARCHAR, user_id VARCHAR, email VARCHAR, "
                     "workspace_id VARCHAR, role_id VARCHAR, previous_role_id VARCHAR, seen_at TIMESTAMPTZ, "
                     "sync_id VARCHAR)")
        conn.execute("INSERT INTO main.report_unexplained_changes VALUES "
                     "('role_changed', 'u-2', 'bo@example.com', NULL, 'r-org-admin', 'r-org-user', ?, 's-2'), "
                     "('added', 'u-1', 'ada@example.com', 'w-1', 'r-admin', NULL, ?, 's-1'), "
                     "('role_changed', 'u-3', NULL, 'w-1', 'r-editor', 'r-admin', ?, 's-2'), "
                     "('removed', 'u-4', 'cy@example.com', 'w-1', 'r-editor', NULL, ?, 's-2')",
                     [t2, t1, t3, t3])
        every = unexplained_changes(conn)
        assert [(c.user_id, c.sync_id) for c in every] == [("u-1", "s-1"), ("u-2", "s-2"), ("u-3", "s-2"),
                                                           ("u-4", "s-2")]  # oldest first
        assert [c.user_id for c in unexplained_changes(conn, "s-1")] == ["u-1"]
        assert [c.user_id for c in unexplained_changes(conn, seen_since=t2)] == ["u-2", "u-3", "u-4"]
        added, promoted, demoted, removed = every
        assert (added.workspace_name, added.role_name) == ("Platform", "Admin")
        # Admin given, Organization Admin given, Admin taken away: privileged; an Editor removed: not.
        assert [c.is_privileged for c in every] == [True, True, True, False]
        assert promoted.describe().startswith(
            "role changed as organization role from Organization User to Organization Admin for bo@example.com, "
            "seen by sync s-2: no applied provisioning request explains it")
        assert demoted.describe().startswith("role changed in Platform from Admin to Editor for u-3, seen by sync s-2")

        database = AccessDatabase(tmp_path / "access.duckdb")
        with database.writer_lease("test"):
            database.ensure_working()
            with database.connect() as outbox:
                notify_unexplained_changes(outbox, Notifier("acme", enabled=True), every)
                # The same Admin added again later (removed in between): a change of its own.
                again = replace(added, seen_at=t3, sync_id="s-3")
                assert len(notify_unexplained_changes(outbox, Notifier("acme", enabled=True), [again])) == 1
                payloads = [json.loads(p) for (p,) in outbox.execute(
                    "SELECT payload FROM main.notifications ORDER BY notification_seq").fetchall()]
    assert [(p["user"], p["workspace"], p["role"]) for p in payloads] == [
        ("ada@example.com", "Platform", "Admin"), ("bo@example.com", None, "Organization Admin"),
        ("u-3", "Platform", "Editor"), ("cy@example.com", "Platform", "Editor"), ("ada@example.com", "Platform", "Admin")]
    assert [p["detail"] for p in payloads[:4]] == [c.describe() for c in every]
    assert payloads[0]["detail"].startswith("Admin added in Platform for ada@example.com")


def test_a_change_to_a_workspace_or_role_gone_since_is_named_by_its_id_and_notified_as_seen(tmp_path):
    # Names are the latest sync's: a workspace deleted since, or a custom role deleted since, has
    # none, and the change still reads (and is sent) by its id, in its workspace, never as "None"
    # or as an organization role. Each payload is dated when the change was seen, oldest first
    # (not by user), an organization role before the same moment's workspace roles; the same
    # change made again later, found under the same sync's id (a provisioning refresh), is a
    # change of its own and notified again.
    t1, t2, t3, t4 = (datetime(2026, 11, 29, 9, m, tzinfo=UTC) for m in (0, 10, 20, 30))
    with duckdb.connect(str(tmp_path / "x.duckdb")) as conn:
        conn.execute("CREATE SCHEMA staging")
        conn.execute("CREATE TABLE staging.stg_langsmith__workspaces (workspace_id VARCHAR, display_name VARCHAR)")
        conn.execute("INSERT INTO staging.stg_langsmith__workspaces VALUES ('w-1', 'Platform')")
        conn.execute("CREATE TABLE main.roles (role_id VARCHAR, display_name VARCHAR, name VARCHAR)")
        conn.execute("INSERT INTO main.roles VALUES ('r-admin', 'Admin', 'WORKSPACE_ADMIN'), "
                     "('r-org-admin', 'Organization Admin', 'ORGANIZATION_ADMIN')")
        conn.execute("CREATE TABLE main.report_unexplained_changes (change VARCHAR, user_id VARCHAR, email VARCHAR, "
                     "workspace_id VARCHAR, role_id VARCHAR, previous_role_id VARCHAR, seen_at TIMESTAMPTZ, "
                     "sync_id VARCHAR)")
        conn.execute("INSERT INTO main.report_unexplained_changes VALUES "
                     "('added', 'u-5', 'eve@example.com', 'w-1', 'r-admin', NULL, ?, 's-2'), "
                     "('added', 'u-5', 'eve@example.com', NULL, 'r-org-admin', NULL, ?, 's-2'), "
                     "('role_changed', 'u-1', 'ada@example.com', 'w-1', 'r-admin', 'r-custom-gone', ?, 's-2'), "
                     "('removed', 'u-9', 'zed@example.com', 'w-gone', 'r-custom-gone', NULL, ?, 's-1')",
                     [t3, t3, t2, t1])
        every = unexplained_changes(conn)
        assert [(c.user_id, c.workspace_id) for c in every] == [
            ("u-9", "w-gone"), ("u-1", "w-1"), ("u-5", None), ("u-5", "w-1")]
        gone, promoted, _, _ = every
        assert gone.describe().startswith("r-custom-gone removed in w-gone for zed@example.com, seen by sync s-1")
        assert promoted.describe().startswith(
            "role changed in Platform from r-custom-gone to Admin for ada@example.com")

        database = AccessDatabase(tmp_path / "access.duckdb")
        notifier = Notifier("acme", enabled=True)
        with database.writer_lease("test"):
            database.ensure_working()
            with database.connect() as outbox:
                assert len(notify_unexplained_changes(outbox, notifier, every)) == 4
                # u-1 made Admin again later (after a demotion in between), found by a refresh under s-2.
                assert len(notify_unexplained_changes(outbox, notifier, [replace(promoted, seen_at=t4)])) == 1
                payloads = [json.loads(p) for (p,) in outbox.execute(
                    "SELECT payload FROM main.notifications ORDER BY notification_seq").fetchall()]
    assert [(p["at"], p["user"], p["workspace"], p["role"]) for p in payloads] == [
        ("2026-11-29T09:00:00Z", "zed@example.com", "w-gone", "r-custom-gone"),
        ("2026-11-29T09:10:00Z", "ada@example.com", "Platform", "Admin"),
        ("2026-11-29T09:20:00Z", "eve@example.com", None, "Organization Admin"),
        ("2026-11-29T09:20:00Z", "eve@example.com", "Platform", "Admin"),
        ("2026-11-29T09:30:00Z", "ada@example.com", "Platform", "Admin"),
    ]


def test_an_admin_re_added_by_hand_that_a_request_finds_is_drift_though_a_grant_before_the_sync_gave_it(
        watched, instance):
    """An Admin grant applied through provisioning, then the member removed by hand (the next sync
    lists the removal), then re-added as Admin by hand: the request that finds the Admin made
    already (``already_satisfied``) lists it at once, in its run's refresh. The grant from before
    the latest sync explains nothing after that sync ("applied after the previous sync": for a
    change found since the latest sync, the previous sync is the latest one), so the refresh does
    not hide the hand-made Admin until the next sync, and the run's drift counts say it."""
    _, org, database, receiver = watched
    role, workspace, enabled = cast_of(org)
    member = next(m for m in enabled if m.ls_user_id not in workspace.memberships)

    granted = request_grant(member.email, workspace.id, "Admin", requested_by="ops@example.com")
    outcome = provision()
    assert outcome.success, outcome.failure
    assert request_row(database, granted.request_id)["status"] == "applied"

    org.remove_workspace_membership(workspace.id, member.ls_user_id)
    synced = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
    assert synced.success, synced.failure
    assert unexplained(database) == {
        ("removed", member.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], None, synced.run_id)}

    org.add_workspace_membership(workspace.id, member.ls_user_id, role["WORKSPACE_ADMIN"])
    again = request_grant(member.email, workspace.id, "Admin", requested_by="ops@example.com")
    outcome = provision()
    assert outcome.success, outcome.failure
    assert request_row(database, again.request_id)["status"] == "already_satisfied"
    assert outcome.outputs["refresh_access_history"] == {"unexplained_changes": 1,
                                                         "privileged_unexplained_changes": 1}
    assert unexplained(database) == {
        ("removed", member.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], None, synced.run_id),
        ("added", member.ls_user_id, workspace.id, role["WORKSPACE_ADMIN"], None, synced.run_id)}
    deliver_notifications()
    assert sorted(b["detail"].split(" ")[0] for b in bodies(receiver, "change.unexplained")) == ["Admin", "Admin"]
