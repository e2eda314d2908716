"""A sync that cannot read everything fails loudly, names what failed, and leaves the analysts'
database, its history and the working file exactly as they were; the next good sync recovers.

(test_sync_end_to_end.py already proves this for the enriched members route failing; here every
other endpoint, one workspace, one page, and a listing that never holds still.)
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from langsmith_access import runner
from langsmith_access.definitions import defs
from langsmith_access.defs import resources
from langsmith_access.defs.orgs import org_tags
from langsmith_access.provisioning.executor import Observation, record_observations
from langsmith_access.sandbox.api import ApiResponse
from langsmith_access.sandbox.faults import FaultConfig
from langsmith_access.settings import load_orgs
from langsmith_access.store import export
from langsmith_access.store.database import AccessDatabase, DatabaseBusyError
from langsmith_access.store.sync_runs import defer_failed_run, deferred_failed_runs
from langsmith_access.transform import DbtRunError
from langsmith_access.transform.history import unbuilt_observations
from langsmith_access_tests.helpers import (
    actual_org_grants,
    actual_workspace_grants,
    expected_org_grants,
    expected_workspace_grants,
    lease_held_elsewhere,
    point_at,
    query,
    run_sync,
)
from langsmith_access_tests.reliability.conftest import database_state

ROLES = "/api/v1/orgs/current/roles"
WORKSPACES = "/api/v1/workspaces"
ACTIVE = "/api/v1/orgs/current/members/active"
PENDING = "/api/v1/orgs/current/members/pending"
WS_ACTIVE = "/api/v1/workspaces/current/members/active"


def change_the_org(org) -> None:
    """Changes a wrongly published partial sync would show: a newcomer with a grant, a role
    change and a revoke."""
    workspace = org.shared_workspaces()[0]
    rows = org.workspace_membership_rows(shared_only=True)
    changed_ws, changed_user, _, old_role = rows[0]
    new_role = next(r.id for r in org.roles_by_scope("workspace") if r.id != old_role)
    org.set_workspace_role(changed_ws, changed_user, new_role)
    org.remove_workspace_membership(*rows[1][:2])
    newcomer = org.add_member("reliability.newcomer@example.com", "Newcomer")
    org.add_workspace_membership(workspace.id, newcomer.ls_user_id, new_role)


def test_each_persistently_failing_endpoint_fails_the_sync_and_changes_nothing(start_env, monkeypatch):
    sandbox, org, database = start_env(enriched_route=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")
    monkeypatch.setenv("LANGSMITH_ACCESS_TIMEOUT_SECONDS", "1")
    change_the_org(org)
    before = database_state(database)
    history_before = query(database.path, "SELECT * FROM main.grant_history ORDER BY ALL")
    runs_before = query(database.path, "SELECT sync_id FROM main.sync_runs")
    failing_workspace = org.shared_workspaces()[7].id
    leaver = next(m for m in org.active_members() if m.email.startswith("late.joiner"))
    original_respond = sandbox.respond

    def page_two_fails(request):
        if request.path == ACTIVE and request.query.get("offset") == ["500"]:
            return ApiResponse(503, {"detail": "Service Unavailable"})
        return original_respond(request)

    cases = [
        # (what breaks, how, what the failure message must name)
        ("roles endpoint", {"failing_routes": (ROLES + "$",)}, [f"GET {ROLES}", "gave up after 2 attempts"]),
        ("workspaces endpoint", {"failing_routes": (WORKSPACES + "$",)}, [f"GET {WORKSPACES}", "server error 500"]),
        ("active members endpoint", {"failing_routes": (ACTIVE,)}, [f"GET {ACTIVE}"]),
        ("pending invites endpoint", {"failing_routes": (PENDING,)}, [f"GET {PENDING}"]),
        ("one workspace", {"failing_workspaces": (failing_workspace,)}, [WS_ACTIVE, f"workspace {failing_workspace}"]),
        ("page 2 of the members", {"respond": page_two_fails}, [f"GET {ACTIVE}", "503"]),
        ("a listing that never holds still", {"page_drift_members": 1000}, [f"GET {ACTIVE}", "kept changing"]),
    ]
    failed_runs: dict[str, list[str]] = {}  # run id -> what its failure must name
    for what, fault, named in cases:
        respond = fault.pop("respond", None)
        if respond is not None:
            sandbox.respond = respond
        for name, value in fault.items():
            setattr(sandbox.faults, name, value)
        outcome = run_sync()
        sandbox.respond = original_respond
        sandbox.faults.failing_routes, sandbox.faults.failing_workspaces = (), ()
        sandbox.faults.page_drift_members = 0

        assert not outcome.success, what
        for text in named:
            assert text in outcome.failure, (what, outcome.failure)
        assert database_state(database) == before, what
        failed_runs[outcome.run_id] = named

    # Nothing of the failed syncs reached the analysts: same files, same history, same runs.
    assert query(database.path, "SELECT * FROM main.grant_history ORDER BY ALL") == history_before
    assert query(database.path, "SELECT sync_id FROM main.sync_runs") == runs_before

    # The next good sync recovers, with the changes, and history records them.
    org.remove_member(leaver.ls_user_id)
    recovered = run_sync()
    assert recovered.success, recovered.failure
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)
    assert actual_org_grants(database.path) == expected_org_grants(org)
    # With it, the failed runs' rows, kept in the working file meanwhile: why each failed and
    # what it spent of the API (nothing of what it read: no row counts).
    assert len(query(database.path, "SELECT * FROM main.sync_runs")) == len(runs_before) + len(cases) + 1
    assert query(database.path, "SELECT status, failure FROM main.sync_runs WHERE sync_id = ?",
                 [recovered.run_id]) == [("succeeded", None)]
    for run_id, named in failed_runs.items():
        [(status, failure, calls, retries, users, job)] = query(
            database.path, "SELECT status, failure, api_calls, api_retries, users, job FROM main.sync_runs "
            "WHERE sync_id = ?", [run_id])
        assert (status, users, job) == ("failed", None, "langsmith_access_sync"), run_id
        assert all(text in failure for text in named), (named, failure)
        assert calls >= 1 and retries >= 0, (calls, retries)
    assert sum(r for (r,) in query(database.path, "SELECT api_retries FROM main.sync_runs WHERE status = 'failed'")) > 0
    closed = query(database.path, "SELECT count(*) FROM main.grant_history WHERE valid_to IS NOT NULL")[0][0]
    assert closed == 3  # the role change, the revoke, the member who left


def test_a_disk_that_fills_up_while_publishing_fails_the_sync_and_commits_nothing(start_env, monkeypatch):
    sandbox, org, database = start_env()
    change_the_org(org)
    before = database_state(database)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # Writing the Parquet copy is what needs the most room while publishing.
    monkeypatch.setattr(export, "stage_parquet_directory", no_space)
    failed = run_sync()
    assert not failed.success and "No space left on device" in failed.failure
    # Nothing committed: the working file holds the run as failed, not its data as a good sync.
    assert database_state(database) == before
    assert query(database.working_path, "SELECT status FROM main.sync_runs WHERE sync_id = ?",
                 [failed.run_id]) == [("failed",)]
    assert not list(database.path.parent.glob(".*publish*"))  # no staged copy left behind

    monkeypatch.undo()
    point_at(monkeypatch, sandbox, database.path)
    recovered = run_sync()
    assert recovered.success, recovered.failure
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)


def test_a_failed_syncs_row_and_alert_carry_no_secret_its_error_quoted(start_env, monkeypatch):
    # A failure's text is its error's own, and an error may quote what it was handed (a URL, a
    # variable): the failed run's sync_runs row and its sync.failed leave out the org's key and
    # webhook URL whatever the error said.
    sandbox, org, database = start_env()
    webhook = "http://127.0.0.1:9/services/T0-not-for-the-row"
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", webhook)  # recorded, not delivered here
    key = load_orgs().get().settings.api_key.reveal()

    def quoting(*args, **kwargs):
        raise OSError(errno.EIO, f"Input/output error sending {key} to {webhook}")

    monkeypatch.setattr(export, "stage_parquet_directory", quoting)
    failed = run_sync()
    assert not failed.success and "Input/output error" in failed.failure
    [(failure,)] = query(database.working_path, "SELECT failure FROM main.sync_runs WHERE sync_id = ?",
                         [failed.run_id])
    payloads = [p for (p,) in query(database.working_path, "SELECT payload FROM main.notifications "
                                    "WHERE event = 'sync.failed'") if failed.run_id in p]
    assert "Input/output error sending" in failure and payloads, (failure, payloads)
    for said in (failure, *payloads):
        assert "T0-not-for-the-row" not in said and key not in said, said


def test_a_commit_that_fails_after_the_copy_was_staged_publishes_nothing_and_leaves_no_copy(start_env, monkeypatch):
    # The analysts' copy is staged before the scratch file is committed: a commit that fails
    # then (an I/O error) must not leave that copy, as large as the database, beside it.
    sandbox, org, database = start_env()
    change_the_org(org)
    before = database_state(database)
    hidden_before = sorted(p.name for p in database.path.parent.iterdir() if p.name.startswith("."))

    def io_error(self, scratch):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(AccessDatabase, "commit_scratch", io_error)
    failed = run_sync()
    assert not failed.success and "Input/output error" in failed.failure
    assert database_state(database) == before
    assert sorted(p.name for p in database.path.parent.iterdir() if p.name.startswith(".")) == hidden_before


def test_a_sync_goes_on_when_building_first_what_a_dead_provisioning_run_verified_fails(start_env, monkeypatch):
    sandbox, org, database = start_env()
    ws, user, identity, role = org.workspace_membership_rows(shared_only=True)[0]
    verified_at = datetime.now(UTC) - timedelta(minutes=5)
    # What a provisioning run verified and recorded before it died, unbuilt.
    with database.writer_lease("test: a dead run's observation"), database.connect() as conn:
        record_observations(conn, [Observation("dead-run-request", "dead-run", verified_at, ws, user, role, identity)])
        assert unbuilt_observations(conn) == 1

    def broken(*args, **kwargs):
        raise DbtRunError("grants_row_rules failed")

    # The rebuild fails: the sync goes on (its own build lays the change over the listings).
    monkeypatch.setattr(resources, "rebuild_history", broken)
    outcome = run_sync()
    assert outcome.success, outcome.failure
    with database.connect(read_only=True) as conn:
        assert unbuilt_observations(conn) == 0


def test_a_sync_that_never_got_the_writer_lease_is_recorded_by_the_next_one(start_env, monkeypatch):
    # DESIGN: a sync_runs row for every run, and sync.failed. A run that cannot take the lease
    # (a run outside the queue held it too long) cannot write either where they go: it leaves
    # them for the next run that holds the lease.
    sandbox, org, database = start_env()
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # recorded, not delivered here
    orgs = load_orgs()
    instance = dg.DagsterInstance.ephemeral()
    with lease_held_elsewhere(database, "run a long provisioning batch"):
        busy = defs().resolve_job_def(runner.SYNC_JOB).execute_in_process(
            run_config=runner.sync_run_config(), instance=instance,
            partition_key=orgs.get().slug, tags=org_tags(orgs.get().slug), raise_on_error=False,
            resources={**resources.org_resources(orgs), "sync_database": resources.SyncDatabase(
                orgs=orgs, lease_timeout_seconds=0.2)},
        )
    assert not busy.success
    [fix] = [entry.user_message for entry in instance.all_logs(busy.run_id) if "Fix: " in entry.user_message]
    assert DatabaseBusyError.fix in fix and "resources.sync_database.config.lease_timeout_seconds" in fix, fix
    assert [path.name for path in database.deferred_runs_path.iterdir()] == [f"{busy.run_id}.json"]
    [(_, deferred)] = deferred_failed_runs(database.deferred_runs_path)
    assert deferred["organization_id"] == orgs.get().settings.organization_id  # the org it was for
    recorded = "SELECT status, job, failure FROM main.sync_runs WHERE sync_id = ?"
    assert query(database.working_path, recorded, [busy.run_id]) == []  # it could not write there
    # A process that died between writing its row aside and renaming it left a draft an hour
    # ago; another is writing one right now.
    abandoned = database.deferred_runs_path / ".died-run.0a1b2c3d.tmp"
    in_flight = database.deferred_runs_path / ".other-run.4e5f6a7b.tmp"
    for draft in (abandoned, in_flight):
        draft.write_text('{"sync_id": "', encoding="utf-8")
    an_hour_ago = time.time() - 3700
    os.utime(abandoned, (an_hour_ago, an_hour_ago))

    assert run_sync().success  # the next sync records it, and publishes it
    [(status, job, failure)] = query(database.path, recorded, [busy.run_id])
    assert (status, job) == ("failed", runner.SYNC_JOB)
    assert "run a long provisioning batch" in failure and "hook" not in failure, failure
    events = query(database.path, "SELECT payload FROM main.notifications WHERE event = 'sync.failed'")
    assert [payload for (payload,) in events if busy.run_id in payload], events
    assert list(database.deferred_runs_path.iterdir()) == [in_flight]


def test_a_sync_killed_holding_the_writer_lease_is_recorded_and_announced_by_the_next_one(start_env, monkeypatch):
    # `kill -9` (or the OOM killer) of a sync: no handler runs, so it wrote no sync_runs row and
    # sent no sync.failed; only a log line of the next writer said it died. The lease's record
    # names the run, and the next writer leaves its row for the next sync to record and announce.
    sandbox, _org, database = start_env(faults=FaultConfig(latency_ms=1500))  # slow: killed mid-read
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # recorded, not delivered here
    sync = subprocess.Popen([str(Path(sys.executable).with_name("langsmith-access")), "sync"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until it holds the lease, its run named in the record
            held = database.lock_path.read_text() if database.lock_path.exists() else ""
            if "run_if_killed" in held:
                break
            time.sleep(0.1)
        killed_run = json.loads(held)["run_if_killed"]["sync_id"]
    finally:
        sync.kill()
        sync.wait(timeout=30)
    sandbox.faults.latency_ms = 0

    assert run_sync().success  # the next writer leaves the killed run's row, and records it
    recorded = "SELECT status, job, failure FROM main.sync_runs WHERE sync_id = ?"
    [(status, job, failure)] = query(database.path, recorded, [killed_run])
    assert (status, job) == ("failed", runner.SYNC_JOB)
    assert failure.startswith(f"its process (pid {sync.pid}) ended without finishing the run (killed"), failure
    events = query(database.path, "SELECT payload FROM main.notifications WHERE event = 'sync.failed'")
    assert [payload for (payload,) in events if killed_run in payload], events
    assert not list(database.deferred_runs_path.iterdir())
    # A lease let go normally leaves no row for anyone: the next sync records only itself. And a
    # run killed after its success was committed, before it let go of the lease, did succeed.
    [(succeeded, started)] = query(database.path, "SELECT sync_id, started_at FROM main.sync_runs "
                                                  "ORDER BY finished_at DESC LIMIT 1")
    defer_failed_run(database.deferred_runs_path, sync_id=succeeded, started_at=started,
                     finished_at=datetime.now(UTC), job=runner.SYNC_JOB, failure="its process ended")
    assert run_sync().success
    assert query(database.path, recorded, [succeeded])[0][0] == "succeeded"
    assert query(database.path, "SELECT count(*) FROM main.sync_runs WHERE status = 'failed'") == [(1,)]
    assert not list(database.deferred_runs_path.iterdir())


def test_a_failed_run_another_org_left_in_this_database_is_not_recorded_as_this_orgs(start_env):
    # A run of another org pointed at this database (the same LANGSMITH_ACCESS_DUCKDB) that could
    # not take the lease left its row here before any org check: the next run of this org records
    # only its own (its id in any spelling), and leaves the other's file, saying so.
    sandbox, org, database = start_env()
    orgs = load_orgs()
    ours = orgs.get().settings.organization_id
    theirs = "0a1b2c3d-0000-4000-8000-00000000cafe"
    at = datetime.now(UTC) - timedelta(minutes=5)
    for sync_id, organization_id in (("ours-busy", ours.upper()), ("theirs-busy", theirs)):
        defer_failed_run(database.deferred_runs_path, sync_id=sync_id, started_at=at, finished_at=at,
                         job=runner.SYNC_JOB, failure="busy", organization_id=organization_id)

    instance = dg.DagsterInstance.ephemeral()
    result = defs().resolve_job_def(runner.SYNC_JOB).execute_in_process(
        run_config=runner.sync_run_config(), instance=instance, partition_key=orgs.get().slug,
        tags=org_tags(orgs.get().slug), resources=resources.org_resources(orgs))

    assert result.success
    recorded = query(database.path, "SELECT sync_id, organization_id FROM main.sync_runs WHERE status = 'failed'")
    assert recorded == [("ours-busy", ours)]
    assert [path.name for path in database.deferred_runs_path.iterdir()] == ["theirs-busy.json"]
    said = [entry.user_message for entry in instance.all_logs(result.run_id)
            if f"a failed run of another organization ({theirs})" in entry.user_message]
    assert len(said) == 1 and "theirs-busy.json" in said[0], said


def test_a_run_that_waited_too_long_for_the_database_says_so_in_words(start_env):
    # What the run's page shows when another writer held the database past the run's wait:
    # the lease words a run's purpose as "could not <it>" and, to others, "<it> (pid N) is
    # writing": a verb phrase (a provisioning run's once said "could not provisioning run <id>").
    sandbox, org, database = start_env()
    orgs = load_orgs()
    instance = dg.DagsterInstance.ephemeral()
    with lease_held_elsewhere(database, "run a long provisioning batch"):
        busy = runner.job_definition(runner.PROVISION_JOB).execute_in_process(
            instance=instance, partition_key=orgs.get().slug, raise_on_error=False,
            resources={**resources.org_resources(orgs), "provisioning_database": resources.ProvisioningDatabase(
                orgs=orgs, lease_timeout_seconds=0.2)},
        )
    assert not busy.success
    [failure] = [event.event_specific_data.error for event in busy.all_events
                 if event.event_type_value == "RESOURCE_INIT_FAILURE"]
    assert f"could not run {runner.PROVISION_JOB} {busy.run_id}: run a long provisioning batch (pid " in \
        failure.message, failure.message
    # Dagster's own words for a resource's failure carry no fix: a log line of the run does.
    [fix] = [entry.user_message for entry in instance.all_logs(busy.run_id) if "Fix: " in entry.user_message]
    assert DatabaseBusyError.fix in fix and "resources.provisioning_database.config.lease_timeout_seconds" in fix, fix
    assert "wait longer than 0.2 s" in fix, fix
