"""provisioning_queue_sensor against a real Dagster instance (and, once, a real daemon)."""

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from langsmith_access import runner
from langsmith_access.definitions import defs
from langsmith_access.defs.inventory.definitions import waits_for_first_sync
from langsmith_access.defs.orgs import (
    NO_KEY_NOT_REACHED,
    TICK_LOOK_SECONDS,
    TICK_READERS,
    deployment_orgs,
    look_at_each_org,
    schedule_tick,
    starting_with,
)
from langsmith_access.defs.provisioning import definitions as provisioning_definitions
from langsmith_access.defs.provisioning.definitions import (
    REFUSED_INPUT_TAG,
    evaluate_queue,
    failed_runs_backoff,
    failed_runs_backoffs,
)
from langsmith_access.defs.provisioning.governance import evaluate_expiries
from langsmith_access.provisioning import queue
from langsmith_access.store.database import AccessDatabase, DatabaseUnusableError
from langsmith_access_tests.helpers import cli_killed_before_publishing, tick_sensor
from langsmith_access_tests.services import Service, wait_for


def queue_rows(database: AccessDatabase, count: int, status: str = "pending") -> list[str]:
    """Requests as the queue stores them (the sensor reads only ids and statuses)."""
    ids = []
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            for _ in range(count):
                request_id = queue.new_id()
                conn.execute(
                    "INSERT INTO main.provisioning_requests (request_id, action, status, requested_at, "
                    "updated_at, run_id) VALUES (?, 'grant', ?, now(), now(), 'some-run')",
                    [request_id, status],
                )
                ids.append(request_id)
        database.publish()
    return ids


def evaluate(instance, cursor=None):
    return tick_sensor("provisioning_queue_sensor", instance, cursor)


def test_sensor_is_on_by_default_and_targets_the_job():
    sensor = defs().resolve_sensor_def("provisioning_queue_sensor")
    assert sensor.job_name == "provision_workspace_roles"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # Every loop of Dagster's sensor daemon (5 s at most), for a median time to access under
    # 15 s (settings.py says why 4, benchmarks/time_to_access.py measures it).
    assert sensor.minimum_interval_seconds == 4


def test_sensor_interval_is_configurable(monkeypatch):
    monkeypatch.setenv("LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", "30")
    assert defs().resolve_sensor_def("provisioning_queue_sensor").minimum_interval_seconds == 30


def test_skips_without_database_or_requests(database, instance):
    result, _ = evaluate(instance)
    assert not result.run_requests and "No analysts' database yet" in result.skip_message
    queue_rows(database, 2, status="applied")
    result, _ = evaluate(instance)
    assert not result.run_requests and result.skip_message == "No pending requests."


def test_one_run_per_tick_for_every_pending_request(database, instance):
    queue_rows(database, 3)
    queue_rows(database, 1, status="in_progress")  # left by a run that died
    result, cursor = evaluate(instance)
    [run_request] = result.run_requests
    assert run_request.run_key.startswith("provision-default-1-")
    assert run_request.run_config == {}  # the run takes every pending request when it starts
    assert run_request.partition_key == "default"  # the single org of the single-org variables
    assert run_request.tags["langsmith_access/org"] == "default"
    assert run_request.tags["langsmith_access/requests"] == "4"
    assert json.loads(cursor) == {"launches": {"default": 1}}

    # The cursor never filters requests: the same ones are offered again on the next tick,
    # with a new run key, if the previous run did not take them.
    again, cursor = evaluate(instance, cursor)
    assert again.run_requests[0].run_key.startswith("provision-default-2-")
    assert again.run_requests[0].tags["langsmith_access/requests"] == "4"


def test_launches_nothing_without_a_key_and_says_which_variable(database, instance, monkeypatch):
    # A deployment whose environment lost the key: a run would only fail at its start, tick
    # after tick. The schedules say the same and launch nothing either.
    queue_rows(database, 2)
    monkeypatch.delenv("LANGSMITH_API_KEY")
    result, _ = evaluate(instance)
    assert not result.run_requests
    assert result.skip_message == ("LANGSMITH_API_KEY is not set: set it to an organization-scoped service "
                                   "key (lsv2_sk_...). No run until then.")
    definitions = defs()
    for name in ("langsmith_access_sync_schedule", "langsmith_access_inventory_schedule"):
        with dg.build_schedule_context(repository_def=definitions.get_repository_def()) as context:
            tick = definitions.resolve_schedule_def(name).evaluate_tick(context)
        assert not tick.run_requests and tick.skip_message.startswith("LANGSMITH_API_KEY is not set"), name


def test_skips_while_a_provisioning_run_is_in_flight(database, instance):
    queue_rows(database, 2)
    # Another org's run in flight does not hold this org's requests back ...
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.STARTED,
                        tags={"langsmith_access/org": "another-org"})
    result, _ = evaluate(instance)
    assert len(result.run_requests) == 1
    # ... this org's does.
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.STARTED,
                        tags={"langsmith_access/org": "default"})
    result, _ = evaluate(instance)
    assert not result.run_requests and "in progress" in result.skip_message


def test_a_run_being_cancelled_is_still_in_flight(database, instance):
    # Cancelling asks the run to stop; until it has, its step may still be applying requests.
    queue_rows(database, 2)
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.CANCELING,
                        tags={"langsmith_access/org": "default"})
    result, _ = evaluate(instance)
    assert not result.run_requests and "in progress" in result.skip_message


HOLD_READ_WRITE = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])  # read-write: other processes cannot even open it read-only
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_copy_that_opens_but_cannot_be_read_is_said_unreadable_not_busy(database, instance):
    # Not a lock, which passes: a copy whose queue lacks a column (a file put there by hand, or by
    # another tool) stays so however many ticks wait on it; the operator is told what DuckDB said.
    with duckdb.connect(str(database.path)) as conn:
        conn.execute("CREATE TABLE main.provisioning_requests (request_id VARCHAR)")
    result, _ = evaluate(instance)
    assert not result.run_requests
    assert result.skip_message.startswith("Database unreadable, trying again next tick: "), result.skip_message
    # DuckDB's first line, which names what is wrong (not the query and candidates after it).
    assert result.skip_message.endswith('Binder Error: Referenced column "status" not found in FROM clause!'), \
        result.skip_message


# How long a tick may take while the analysts' copy is held: the sensors give up on it after 2 s
# (a tick runs inside Dagster's 60-s sensor timeout, and reads TICK_READERS orgs' copies at a
# time), the rest is slack for a busy machine. Both sensors that read it hold to it.
BUSY_TICK_SECONDS = 12


def test_skips_not_crashes_when_the_database_is_busy(database, instance):
    queue_rows(database, 1, status="in_progress")  # also what the expiry sensor reads
    definitions = defs()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_READ_WRITE, str(database.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        for sensor in ("provisioning_queue_sensor", "access_expiry_sensor"):
            started = time.monotonic()
            result, _ = tick_sensor(sensor, instance, definitions=definitions)
            assert time.monotonic() - started < BUSY_TICK_SECONDS, sensor
            assert not result.run_requests and "Database busy" in result.skip_message, sensor
            # The holder's PID, the file by its name: not DuckDB's documentation link nor the file's
            # whole path again (600 held orgs' reasons are one skip message).
            assert f"(PID {holder.pid})" in result.skip_message, result.skip_message
            assert str(database.path) not in result.skip_message and "See also" not in result.skip_message
    finally:
        holder.communicate("\n", timeout=30)
    result, _ = evaluate(instance)
    assert len(result.run_requests) == 1


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAEMON_WAIT_SECONDS = 240  # bounds a hang only: each wait ends when its condition holds (~30 s here)


def test_the_daemon_runs_the_sensor_which_launches_the_job(env, tmp_path):
    """A real `dagster-daemon` with workspace.yaml: the sensor ticks, launches
    provision_workspace_roles, and the queued grant lands in the sandbox."""
    from langsmith_access.api import list_requests, request_grant

    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor", requested_by="daemon-test")
    assert request.accepted

    home = tmp_path / "dagster_home"
    home.mkdir()
    environment = {**os.environ, "DAGSTER_HOME": str(home),
                   "LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS": "2"}
    daemon = Service("daemon", [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
                     environment, tmp_path / "daemon.log", cwd=PROJECT_ROOT).start()
    try:
        def settled() -> str | None:
            status = {r["request_id"]: r["status"] for r in list_requests()}.get(request.request_id)
            return status if status in queue.FINAL_STATUSES else None

        # Each wait has its own bound (one shared bound left the second none when the first was
        # slow: it gave up silently and the daemon was stopped under the run).
        status = wait_for("the daemon's sensor to launch a run that settles the request", settled, [daemon],
                          DAEMON_WAIT_SECONDS, every=2)
        assert status == "applied"
        assert org.membership(workspace.id, outsider.ls_user_id) is not None
        # The request reads "applied" before the run's last steps end, and the run's process
        # is in the daemon's process group: stopping the daemon now would interrupt the run.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            wait_for("the provisioning run to end", lambda: all(run.is_finished for run in instance.get_runs()),
                     [daemon], DAEMON_WAIT_SECONDS)
    finally:
        daemon.stop()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="provision_workspace_roles"))
        assert runs and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags.get("dagster/sensor_name") == "provisioning_queue_sensor"


def test_a_request_killed_before_it_was_published_is_launched_by_the_next_tick(env, instance):
    # The sensor reads the analysts' copy, which a request committed but not yet published is not
    # in: it said "No pending requests." until some other command or the next sync published,
    # hours later. The killed command leaves word that its publish is due; the tick launches a
    # run, which publishes it and applies it, once; the tick after it has nothing to launch.
    from langsmith_access.api import list_requests, provision

    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    cli_killed_before_publishing("request", "grant", "--user", outsider.email, "--workspace", workspace.id,
                                 "--role", "Editor")
    assert list_requests() == []  # committed to the working file only
    with duckdb.connect(str(database.working_path), read_only=True) as conn:
        assert conn.execute("SELECT status FROM main.provisioning_requests").fetchall() == [("pending",)]

    result, cursor = evaluate(instance)
    assert len(result.run_requests) == 1 and result.run_requests[0].partition_key == "default", result.skip_message
    assert provision().success  # the run the tick launched, as the daemon would run it
    assert [r["status"] for r in list_requests()] == ["applied"]
    assert org.membership(workspace.id, outsider.ls_user_id) is not None
    assert [entry.method for entry in sandbox.request_log.snapshot() if entry.method in ("POST", "PATCH", "DELETE")] == [
        "POST"]
    after, _ = evaluate(instance, cursor)
    assert not after.run_requests and after.skip_message == "No pending requests."


def test_after_failed_runs_the_org_waits_longer_each_time(database, instance):
    """A run that failed (LangSmith down, the key refused) is not relaunched every tick: the org
    waits 30 s after it, doubling with each failure in a row; a success ends the wait."""
    queue_rows(database, 1)
    failed = create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                                 tags={"langsmith_access/org": "default"})
    result, _ = evaluate(instance)
    assert not result.run_requests
    assert "The last 1 provisioning run(s) of this org failed" in result.skip_message
    assert failed.run_id in result.skip_message and "Launchpad" in result.skip_message

    [record] = instance.get_run_records(dg.RunsFilter(run_ids=[failed.run_id]))
    ended = record.end_time or record.update_timestamp.timestamp()
    assert failed_runs_backoff(instance, "default", now=ended + 29) is not None
    assert failed_runs_backoff(instance, "default", now=ended + 30) is None
    for _ in range(2):
        create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                            tags={"langsmith_access/org": "default"})
    assert "The last 3 provisioning run(s)" in failed_runs_backoff(instance, "default", now=ended + 119)
    assert failed_runs_backoff(instance, "default", now=time.time() + 121) is None  # 30 s x 2 x 2
    # Another org's failures hold nothing back here; this org's success ends the wait.
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.SUCCESS,
                        tags={"langsmith_access/org": "default"})
    assert failed_runs_backoff(instance, "default") is None
    assert len(evaluate(instance)[0].run_requests) == 1


def test_a_run_that_refused_its_input_holds_no_org_back(database, instance):
    """A Launchpad run with a mistyped request id fails, saying so: it says nothing about
    LangSmith or the key, so the pending requests are still launched on the next tick."""
    queue_rows(database, 1)
    typo = runner.run_job("provision_workspace_roles",
                          {"ops": {"select_requests": {"config": {"request_ids": [queue.new_id()]}}}},
                          dagster_instance=instance)
    assert not typo.success and "Unknown request ids" in typo.failure
    [run] = instance.get_runs(filters=dg.RunsFilter(run_ids=[typo.run_id]))
    assert run.status == dg.DagsterRunStatus.FAILURE and run.tags[REFUSED_INPUT_TAG] == "true"
    assert failed_runs_backoff(instance, "default") is None
    assert len(evaluate(instance)[0].run_requests) == 1
    # A failure of any other kind still makes the org wait.
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                        tags={"langsmith_access/org": "default"})
    assert "The last 1 provisioning run(s)" in failed_runs_backoff(instance, "default")


def test_a_dozen_refused_runs_do_not_hide_the_failure_before_them(database, instance):
    """However many mistyped Launchpad forms follow a run that failed, the org still waits after
    that failure (the wait once read only the 12 newest runs, all of them refused)."""
    failed = create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                                 tags={"langsmith_access/org": "default"})
    for _ in range(13):
        create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                            tags={"langsmith_access/org": "default", REFUSED_INPUT_TAG: "true"})
    said = failed_runs_backoff(instance, "default")
    assert said is not None and "The last 1 provisioning run(s)" in said and failed.run_id in said
    # The count stops at twelve: the wait is already its longest from the seventh.
    for _ in range(13):
        create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                            tags={"langsmith_access/org": "default"})
    assert "The last 12 provisioning run(s)" in failed_runs_backoff(instance, "default")


# A change the queue rejects without asking LangSmith: nothing was synced, so no such member.
UNKNOWN_CHANGE = {"action": "grant", "user": "nobody@example.com", "workspace": "Platform", "role": "Editor"}


@pytest.mark.parametrize("config, says", [
    ({"request_ids": ["SETTLED"], "change": UNKNOWN_CHANGE}, "either request_ids or one change"),
    ({"change": {**UNKNOWN_CHANGE, "user": " "}}, "change.user is empty"),
    ({"change": {**UNKNOWN_CHANGE, "reason": {"env": "HOME"}}}, "reads change.reason from the environment"),
    ({"request_ids": ["  "]}, "request_ids[0] is empty"),
    ({"request_ids": ["SETTLED"]}, "Nothing to apply"),
    ({"change": UNKNOWN_CHANGE}, "rejected"),
    ({"change": UNKNOWN_CHANGE, "dry_run": True}, "The change would be rejected"),
], ids=["ids-and-change", "blank-field", "env-reference", "blank-id", "settled-id", "rejected-change",
        "rejected-dry-run"])
def test_every_refusal_of_launchpad_input_holds_no_org_back(database, instance, config, says):
    """Whatever a Launchpad run refuses in its input (a form left blank, an {env: ...} field, ids
    unknown or settled, a change the queue rejects), it is tagged as such: the sensors' wait
    after failed runs does not count it (a mistyped form says nothing about LangSmith or the key)."""
    [settled] = queue_rows(database, 1, status="applied")
    queue_rows(database, 1)
    if config.get("request_ids") and config["request_ids"][0] == "SETTLED":
        config = {**config, "request_ids": [settled]}
    refused = runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": config}}},
                             dagster_instance=instance)
    assert not refused.success and says in refused.failure, refused.failure
    assert instance.get_run_by_id(refused.run_id).tags.get(REFUSED_INPUT_TAG) == "true"
    assert failed_runs_backoff(instance, "default") is None


@pytest.mark.parametrize("cursor", [None, json.dumps({"launches": {"default": 1}})], ids=["cleared", "lowered"])
def test_a_cleared_or_lowered_cursor_launches_at_once(database, instance, cursor):
    """The launch count restarts from the org's runs, not from 1 (a cleared cursor), and a count
    set lower in the UI than the org's runs is raised to them: a run key already used would make
    Dagster launch nothing until the count passed it."""
    queue_rows(database, 1)
    for _ in range(3):
        create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.SUCCESS,
                            tags={"langsmith_access/org": "default"})
    result, after = evaluate(instance, cursor=cursor)
    [run_request] = result.run_requests
    assert run_request.run_key.startswith("provision-default-4-")
    assert json.loads(after) == {"launches": {"default": 4}}


@pytest.mark.parametrize("cursor", ["0", "reset", "[]", '{"launches": 3}', '{"launches": {"default": "x"}}'])
def test_a_cursor_set_by_hand_that_it_cannot_read_is_a_cleared_one(database, instance, cursor):
    """The Dagster UI lets an operator set a sensor's cursor to anything ("0" to reset it): the
    tick launches as after a cleared cursor, rather than failing on every tick until it is fixed."""
    queue_rows(database, 1)
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.SUCCESS,
                        tags={"langsmith_access/org": "default"})
    result, after = evaluate(instance, cursor=cursor)
    [run_request] = result.run_requests
    assert run_request.run_key.startswith("provision-default-2-")
    assert json.loads(after) == {"launches": {"default": 2}}


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                    dg.DagsterRunStatus.STARTING])
def test_a_run_queued_or_starting_is_in_flight(database, instance, status):
    # A run the coordinator holds back (the org's concurrency limit) or one still starting takes
    # every pending request when it starts: a second one would only find them claimed.
    queue_rows(database, 2)
    # Dagster stores a queued run only with where to launch it from.
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="langsmith_access.definitions")), "__repository__"),
        "provision_workspace_roles")
    create_run_for_test(instance, job_name="provision_workspace_roles", status=status,
                        tags={"langsmith_access/org": "default"}, remote_job_origin=origin)
    result, _ = evaluate(instance)
    assert not result.run_requests and "in progress" in result.skip_message


def test_only_a_provisioning_run_in_flight_holds_the_queue_back(database, instance):
    # A sync of the same org under way is no reason to wait: the run queues behind it (the
    # per-org limit) and then applies the requests.
    queue_rows(database, 1)
    create_run_for_test(instance, job_name="langsmith_access_sync", status=dg.DagsterRunStatus.STARTED,
                        tags={"langsmith_access/org": "default"})
    # Nor another org's provisioning run.
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.STARTED,
                        tags={"langsmith_access/org": "another-org"})
    assert len(evaluate(instance)[0].run_requests) == 1


def test_the_wait_after_failures_counts_only_this_orgs_provisioning_runs(database, instance):
    queue_rows(database, 1)
    for job_name, slug in (("provision_workspace_roles", "another-org"), ("langsmith_access_sync", "default")):
        create_run_for_test(instance, job_name=job_name, status=dg.DagsterRunStatus.FAILURE,
                            tags={"langsmith_access/org": slug})
    assert failed_runs_backoff(instance, "default") is None
    assert len(evaluate(instance)[0].run_requests) == 1
    assert "The last 1 provisioning run(s)" in failed_runs_backoff(instance, "another-org")


def test_the_wait_runs_from_the_latest_failure(database, instance):
    first = create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                                tags={"langsmith_access/org": "default"})
    time.sleep(1.5)
    latest = create_run_for_test(instance, job_name="provision_workspace_roles",
                                 status=dg.DagsterRunStatus.FAILURE, tags={"langsmith_access/org": "default"})
    [record] = instance.get_run_records(dg.RunsFilter(run_ids=[latest.run_id]))
    ended = record.end_time or record.update_timestamp.timestamp()
    said = failed_runs_backoff(instance, "default", now=ended + 59)  # 30 s x 2 after the latest
    assert said is not None and latest.run_id in said and first.run_id not in said
    assert failed_runs_backoff(instance, "default", now=ended + 60) is None


def test_the_wait_stops_doubling_at_30_minutes(database, instance):
    for _ in range(8):  # 30 s x 2^7 would be 64 minutes
        last = create_run_for_test(instance, job_name="provision_workspace_roles",
                                   status=dg.DagsterRunStatus.FAILURE, tags={"langsmith_access/org": "default"})
    [record] = instance.get_run_records(dg.RunsFilter(run_ids=[last.run_id]))
    ended = record.end_time or record.update_timestamp.timestamp()
    assert "The last 8 provisioning run(s)" in failed_runs_backoff(instance, "default", now=ended + 1799)
    assert failed_runs_backoff(instance, "default", now=ended + 1800) is None


def test_every_orgs_wait_is_read_with_one_query_while_none_can_be_waiting(instance, monkeypatch):
    """A tick reads the waits of all its orgs at once: the same waits as one org at a time, up to
    the 30-minute longest, and no query of its own for an org whose last run ended before that
    (a query an org: a tick's cost grew with the orgs)."""
    for _ in range(8):
        last = create_run_for_test(instance, job_name="provision_workspace_roles",
                                   status=dg.DagsterRunStatus.FAILURE, tags={"langsmith_access/org": "default"})
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                        tags={"langsmith_access/org": "another-org"})
    for status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS):  # a failure ended by a success
        create_run_for_test(instance, job_name="provision_workspace_roles", status=status,
                            tags={"langsmith_access/org": "recovered"})
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.SUCCESS,
                        tags={"langsmith_access/org": "busy"})
    [record] = instance.get_run_records(dg.RunsFilter(run_ids=[last.run_id]))
    ended = record.end_time or record.update_timestamp.timestamp()
    slugs = ["default", "another-org", "recovered", "busy", "no-runs"]
    for now in (ended + 1, ended + 29, ended + 31, ended + 1799, ended + 1800):
        assert failed_runs_backoffs(instance, slugs, now=now) == {
            slug: failed_runs_backoff(instance, slug, now=now) for slug in slugs}
    waits = failed_runs_backoffs(instance, slugs, now=ended + 1799)
    assert "The last 8 provisioning run(s)" in waits["default"] and waits["another-org"] is None

    looked_at_alone = []
    monkeypatch.setattr(provisioning_definitions, "failed_runs_backoff",
                        lambda instance, slug, now=None: looked_at_alone.append(slug))
    failed_runs_backoffs(instance, slugs, now=ended + 29)
    assert sorted(looked_at_alone) == ["another-org", "default", "recovered"]  # not "busy": no failure
    looked_at_alone.clear()
    assert failed_runs_backoffs(instance, slugs, now=ended + 3600) == dict.fromkeys(slugs)
    assert looked_at_alone == []


def test_a_cancelled_run_ends_the_failures_in_a_row(database, instance):
    # Cancelling is someone's decision, not LangSmith or the key failing: like a success, it
    # ends the row of failures the wait counts.
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                        tags={"langsmith_access/org": "default"})
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.CANCELED,
                        tags={"langsmith_access/org": "default"})
    assert failed_runs_backoff(instance, "default") is None


HOLD_MANY_READ_WRITE = """
import sys, duckdb
held = [duckdb.connect(path) for path in sys.argv[1:]]  # read-write, as an analyst's session would
print("holding", flush=True)
sys.stdin.readline()
"""

# Dagster's daemon gives a sensor's or schedule's tick 60 s; one that takes longer fails, for every org.
TICK_TIMEOUT_SECONDS = 60


def test_a_tick_with_many_orgs_held_busy_stays_inside_the_tick_timeout(tmp_path, monkeypatch):
    # 31 orgs whose analysts' copies are held read-write (each read gives up after 2 s: one
    # after the other they took over 60 s) and one org with a pending request: each sensor's
    # tick ends inside the timeout, says which orgs were busy, and launches the free org's run.
    busy = [f"busy-{number:02d}" for number in range(31)]
    data = tmp_path / "data"
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: 00000000-0000-4000-8000-{number:012d}\n"
        f"  endpoint: http://127.0.0.1:9\n  api_key_env: KEY_{number}\n"
        for number, slug in enumerate([*busy, "free"])))
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(data / "langsmith_access.duckdb"))
    for number in range(len(busy) + 1):
        monkeypatch.setenv(f"KEY_{number}", "lsv2_sk_" + "0" * 32 + f"_{number}")
    free = AccessDatabase(data / "free" / "langsmith_access.duckdb")
    [pending] = queue_rows(free, 1)
    held = [data / slug / "langsmith_access.duckdb" for slug in busy]
    for path in held:
        path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_MANY_READ_WRITE, *map(str, held)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    definitions = defs()
    try:
        assert holder.stdout.readline().strip() == "holding"
        with dg.instance_for_test() as instance:
            took, ticks = {}, {}
            for sensor in ("provisioning_queue_sensor", "access_expiry_sensor"):
                started = time.monotonic()
                ticks[sensor], _ = tick_sensor(sensor, instance, definitions=definitions)
                took[sensor] = time.monotonic() - started
        # The inventory schedule looks the same way for each org's first sync (a busy copy: its
        # run looks for itself).
        started = time.monotonic()
        with dg.build_schedule_context(repository_def=definitions.get_repository_def()) as context:
            inventory = definitions.resolve_schedule_def("langsmith_access_inventory_schedule").evaluate_tick(context)
        took["langsmith_access_inventory_schedule"] = time.monotonic() - started
    finally:
        holder.communicate("\n", timeout=30)
    assert max(took.values()) < TICK_TIMEOUT_SECONDS, took
    provisioning, expiry = ticks["provisioning_queue_sensor"], ticks["access_expiry_sensor"]
    [launched] = provisioning.run_requests
    assert launched.partition_key == "free" and launched.tags["langsmith_access/requests"] == "1"
    assert not expiry.run_requests
    said = said_of_each_org(expiry.skip_message)
    assert [slug for slug in busy if said.get(slug, "").startswith("Database busy")] == busy, expiry.skip_message
    assert said["free"].startswith("No access due to end")
    assert [request.partition_key for request in inventory.run_requests] == busy


def test_a_tick_looks_at_a_whole_round_of_orgs_at_once(tmp_path, monkeypatch):
    # TICK_READERS looks side by side, not a few: a held copy costs its look 2 s, so a tick that
    # looked at them a few at a time would reach a fraction of the orgs within its budget (the
    # schedules launch those unlooked at; the sensors leave them to the next tick). Each look
    # here waits until every other has started: fewer at once never get there.
    orgs = orgs_holding(tmp_path, monkeypatch, [f"org-{number:03d}" for number in range(TICK_READERS)])
    all_started = threading.Barrier(TICK_READERS, timeout=20)
    looked = look_at_each_org(list(orgs), lambda org: f"{org.slug}: {all_started.wait() >= 0}")
    assert looked == {slug: f"{slug}: True" for slug in orgs.slugs}

def orgs_holding(tmp_path, monkeypatch, slugs: list[str]):
    """An orgs file of ``slugs`` (each with a key), the environment pointed at it: its orgs."""
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: 00000000-0000-4000-8000-{number:012d}\n"
        f"  endpoint: http://127.0.0.1:9\n  api_key_env: KEY_{number}\n"
        for number, slug in enumerate(slugs)))
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    for number in range(len(slugs)):
        monkeypatch.setenv(f"KEY_{number}", "lsv2_sk_" + "0" * 32 + f"_{number}")
    return deployment_orgs()


@contextlib.contextmanager
def held_read_write(paths: list[Path]):
    """An analyst's session in another process holding each of ``paths`` read-write."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_MANY_READ_WRITE, *map(str, paths)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield
    finally:
        holder.communicate("\n", timeout=30)


# A budget in which looks may start for 1.9 s: less than a held copy's look takes (its 2 s), so
# no reader gets to a second held copy, and at most TICK_READERS held copies are looked at.
ONE_ROUND_BUDGET = TICK_LOOK_SECONDS + 1.9
# What a tick may take past its budget: the skip reasons, on a loaded machine.
SLACK_SECONDS = 3


def said_of_each_org(skip_message: str) -> dict[str, str]:
    """A tick's skip reason read back by org: ``skip_reasons`` says each reason once, led by the
    slugs of the orgs whose reason it is ("a, b: Database busy ...; free: No access due ...")."""
    said = {}
    for part in skip_message.split("; "):
        if ": " in part:
            slugs, reason = part.split(": ", 1)
            said.update(dict.fromkeys(slugs.split(", "), reason))
    return said


def left_said(said: str) -> list[str]:
    """The orgs a tick's skip reason or log line says it did not reach, in its words' order."""
    found = re.search(r"(\d+) org\(s\) not reached within the tick's [\d.]+-s budget .*?: (.*)\.$", said)
    assert found, said
    left = found.group(2).split(", ")
    assert int(found.group(1)) == len(left)
    return left


def test_a_tick_past_its_budget_leaves_the_orgs_it_did_not_reach_to_the_next_which_starts_with_them(
        tmp_path, monkeypatch):
    # More held copies than readers, then one org with a pending request: a tick reads at most a
    # round of copies within its budget and names the orgs it left, the next tick starts with
    # those, and so on, until the free org's run is launched: held copies starve no org.
    busy = [f"busy-{number:03d}" for number in range(TICK_READERS + 4)]
    orgs = orgs_holding(tmp_path, monkeypatch, [*busy, "free"])
    queue_rows(AccessDatabase(orgs.get("free").duckdb_path), 1)
    ticks, cursors, took = [], [None], []
    with held_read_write([orgs.get(slug).duckdb_path for slug in busy]), dg.instance_for_test() as instance:
        while len(ticks) < 4 and not any(isinstance(tick, list) for tick in ticks):
            context = dg.build_sensor_context(instance=instance, cursor=cursors[-1])
            started = time.monotonic()
            ticks.append(evaluate_queue(context, orgs, budget_seconds=ONE_ROUND_BUDGET))
            took.append(time.monotonic() - started)
            cursors.append(context.cursor)
    assert max(took) < ONE_ROUND_BUDGET + SLACK_SECONDS, took
    # The first tick, in the orgs file's order: the copies it reached said busy, the rest left.
    first = ticks[0]
    assert isinstance(first, dg.SkipReason)
    left = left_said(first.skip_message)
    assert left[-5:] == [*busy[TICK_READERS:], "free"]
    said = said_of_each_org(first.skip_message)
    assert [slug for slug in busy if said.get(slug, "").startswith("Database busy")] == busy[:-len(left) + 1]
    assert json.loads(cursors[1]) == {"launches": {}, "start": left[0]}
    # Each next tick starts with the first org the last one left, and gets further round the orgs,
    # until the free org's run is launched (the second tick, unless a round of looks starts slowly).
    *skipped, launched = ticks
    assert all(isinstance(tick, dg.SkipReason) for tick in skipped)
    for before, after in itertools.pairwise(cursors[1:]):
        order = [org.slug for org in starting_with(list(orgs), json.loads(before)["start"])]
        assert order.index(json.loads(after)["start"]) > 0
    assert [(run.partition_key, run.tags["langsmith_access/requests"]) for run in launched] == [("free", "1")]
    assert json.loads(cursors[-1])["launches"] == {"free": 1}


def test_a_tick_that_launches_a_run_and_leaves_orgs_names_them_in_its_log(tmp_path, monkeypatch, caplog):
    # A tick that launches runs returns them, not a skip reason: the orgs it did not reach within
    # its budget are named in its log, and the next tick starts with them.
    busy = [f"busy-{number:03d}" for number in range(TICK_READERS + 2)]
    orgs = orgs_holding(tmp_path, monkeypatch, ["free", *busy])
    queue_rows(AccessDatabase(orgs.get("free").duckdb_path), 1)
    with held_read_write([orgs.get(slug).duckdb_path for slug in busy]), dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        context.log.addHandler(caplog.handler)  # a tick's logger is Dagster's own, under no other
        launched = evaluate_queue(context, orgs, budget_seconds=ONE_ROUND_BUDGET)
    assert [run.partition_key for run in launched] == ["free"]
    warned = [record.getMessage() for record in caplog.records if "not reached within" in record.getMessage()]
    assert len(warned) == 1, caplog.text
    left = left_said(warned[0])
    assert left and left[-2:] == busy[-2:]
    assert json.loads(context.cursor) == {"launches": {"free": 1}, "start": left[0]}


def test_a_tick_that_reaches_every_org_starts_the_next_in_the_orgs_order(database, instance):
    # The cursor's start is dropped once a tick reaches every org; one naming an org the orgs
    # file no longer lists (or set by hand to anything) starts with the first org.
    queue_rows(database, 1)
    for cursor in ('{"launches": {}, "start": "default"}', '{"launches": {}, "start": "gone"}', '{"start": 3}'):
        result, after = evaluate(instance, cursor)
        assert len(result.run_requests) == 1, cursor
        assert json.loads(after) == {"launches": {"default": 1}}


def test_a_tick_that_starts_past_the_first_org_says_the_orgs_reasons_in_the_orgs_order(tmp_path, monkeypatch):
    # The cursor's start (the org the last tick left first) changes where a tick begins, not the
    # order its skip reason names the orgs in: the orgs file's, as every other tick says them.
    orgs_holding(tmp_path, monkeypatch, ["eu", "us", "ap"])
    for number in range(3):
        monkeypatch.delenv(f"KEY_{number}")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=json.dumps({"launches": {}, "start": "ap"}))
        result = evaluate_queue(context, deployment_orgs())
    said = said_of_each_org(result.skip_message)
    assert list(said) == ["eu", "us", "ap"], result.skip_message
    assert [f"KEY_{number}" in said[slug] for number, slug in enumerate(said)] == [True] * 3, said


@pytest.mark.parametrize("evaluate_tick", [evaluate_queue, evaluate_expiries])
def test_a_tick_that_reaches_only_some_orgs_names_the_org_of_each_reason(tmp_path, monkeypatch, evaluate_tick):
    # No budget at all: no copy is read, by either sensor. The org without a key needs no read,
    # and its reason is led by its slug, as the orgs not reached are named after it.
    orgs_holding(tmp_path, monkeypatch, ["keyless", "eu", "us"])
    monkeypatch.delenv("KEY_0")
    orgs = deployment_orgs()
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        result = evaluate_tick(context, orgs, budget_seconds=0)
    assert result.skip_message.startswith("keyless: ") and "KEY_0" in result.skip_message
    assert left_said(result.skip_message) == ["eu", "us"]
    assert json.loads(context.cursor) == {"launches": {}, "start": "eu"}


def counted_past_the_deadline(monkeypatch, slow: str):
    """The instance answers the launch count's query for org ``slow`` only once the tick's
    deadline has passed (the other orgs' at once): the orgs after it in the tick's order are
    left to the next tick."""
    count_runs = provisioning_definitions.runs_launched_before
    real_deadline = provisioning_definitions.tick_deadline
    deadline = {}

    def counted(instance, slug):
        if slug == slow:
            while time.monotonic() <= deadline["tick"]:
                time.sleep(0.05)
        return count_runs(instance, slug)

    def recorded_deadline(budget_seconds):
        deadline["tick"] = real_deadline(budget_seconds)
        return deadline["tick"]

    monkeypatch.setattr(provisioning_definitions, "runs_launched_before", counted)
    monkeypatch.setattr(provisioning_definitions, "tick_deadline", recorded_deadline)


def test_orgs_whose_runs_cannot_be_counted_within_the_budget_wait_for_the_next_tick(tmp_path, monkeypatch):
    # Copies read in time, but the instance answers the launch count's query slowly: the orgs
    # not counted by the deadline are launched by the next tick, first.
    slugs = [f"org-{number}" for number in range(6)]
    orgs = orgs_holding(tmp_path, monkeypatch, slugs)
    for org in orgs:
        queue_rows(AccessDatabase(org.duckdb_path), 1)
    count_runs = provisioning_definitions.runs_launched_before
    counted_past_the_deadline(monkeypatch, "org-2")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        first = evaluate_queue(context, orgs, budget_seconds=TICK_LOOK_SECONDS + 1)
        assert [request.partition_key for request in first] == slugs[:3]
        assert json.loads(context.cursor)["start"] == "org-3"
        monkeypatch.setattr(provisioning_definitions, "runs_launched_before", count_runs)
        second = evaluate_queue(dg.build_sensor_context(instance=instance, cursor=context.cursor), orgs)
    assert {request.partition_key for request in second} == set(slugs)


def test_a_schedule_says_what_on_no_key_returns_after_that_orgs_reason(tmp_path, monkeypatch):
    # The sync schedule's sync.failed for an org without its key (governance.notifications):
    # called for those orgs only, and what it could not do is said beside the org's reason.
    orgs = orgs_holding(tmp_path, monkeypatch, ["keyed", "keyless", "also-keyless"])
    monkeypatch.delenv("KEY_1")
    monkeypatch.delenv("KEY_2")
    orgs = deployment_orgs()
    called = []

    def on_no_key(org, reason):
        called.append((org.slug, reason))
        return "Its sync.failed is not recorded: busy." if org.slug == "keyless" else None

    with dg.build_schedule_context() as context:
        requests = schedule_tick(context, orgs, on_no_key=on_no_key)
    assert [request.partition_key for request in requests] == ["keyed"]
    assert sorted(slug for slug, _ in called) == ["also-keyless", "keyless"]
    assert all("KEY_" in reason and reason.endswith("No run until then.") for _, reason in called)
    monkeypatch.setenv("KEY_0", "")  # now no org has a key: the tick's skip reason says it all
    with dg.build_schedule_context() as context:
        said = schedule_tick(context, deployment_orgs(), on_no_key=on_no_key).skip_message
    assert "keyless: " in said and "No run until then. Its sync.failed is not recorded: busy; also-keyless: " in said
    # An org on_no_key had nothing more to say of: its reason alone.
    assert "None" not in said and said.endswith("No run until then."), said


def test_the_inventory_schedule_launches_the_orgs_it_could_not_look_at_in_time(tmp_path, monkeypatch, capfd):
    # A schedule keeps no cursor, and its rule for a copy it cannot read is to launch the run,
    # which checks for itself: an org it had no time to look at is launched the same way, named.
    # The orgs it looked at still wait for their first sync.
    busy = [f"busy-{number:03d}" for number in range(TICK_READERS)]
    orgs = orgs_holding(tmp_path, monkeypatch, ["unsynced", *busy, "late"])
    with held_read_write([orgs.get(slug).duckdb_path for slug in busy]):
        with dg.build_schedule_context() as context:
            started = time.monotonic()
            requests = schedule_tick(context, orgs, waits=waits_for_first_sync, budget_seconds=ONE_ROUND_BUDGET)
            took = time.monotonic() - started
    assert took < ONE_ROUND_BUDGET + SLACK_SECONDS
    # The busy copies, looked at or not, and "late", never looked at: a round of held copies
    # is before it ("unsynced" took no time to look at, no file: its reader went on to the next).
    assert [request.partition_key for request in requests] == [*busy, "late"]
    [warning] = [line for line in capfd.readouterr().err.splitlines() if "not reached" in line]  # its log
    left = left_said(warning)
    assert left[-1] == "late" and left[:-1] == busy[len(busy) - len(left) + 1:]
    assert "launched, each run checks for itself" in warning


def test_a_tick_that_launches_runs_logs_why_it_launched_none_for_the_other_orgs(tmp_path, monkeypatch, caplog):
    # A tick that returns runs has no skip reason: why each other org got none (no usable key,
    # nothing pending) is said in its log, one line an org, or it would be said nowhere.
    orgs_holding(tmp_path, monkeypatch, ["keyless", "idle", "free"])
    monkeypatch.delenv("KEY_0")
    orgs = deployment_orgs()
    queue_rows(AccessDatabase(orgs.get("idle").duckdb_path), 1, status="applied")
    queue_rows(AccessDatabase(orgs.get("free").duckdb_path), 1)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        context.log.addHandler(caplog.handler)  # a tick's logger is Dagster's own, under no other
        launched = evaluate_queue(context, orgs)
    assert [run.partition_key for run in launched] == ["free"]
    said = [record.getMessage() for record in caplog.records]
    assert "idle: No pending requests." in said, caplog.text
    assert [line for line in said if line.startswith("keyless: ") and "KEY_0" in line], caplog.text


def test_a_tick_that_starts_past_the_first_org_asks_for_its_runs_in_the_orgs_order(tmp_path, monkeypatch):
    # The cursor's start changes which org's copy is read first, not the order of the runs the
    # tick asks for (and Dagster submits): the orgs file's, as on every other tick.
    orgs = orgs_holding(tmp_path, monkeypatch, ["eu", "us", "ap"])
    for org in orgs:
        queue_rows(AccessDatabase(org.duckdb_path), 1)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=json.dumps({"launches": {}, "start": "ap"}))
        launched = evaluate_queue(context, orgs)
    assert [run.partition_key for run in launched] == ["eu", "us", "ap"]
    assert json.loads(context.cursor) == {"launches": {"eu": 1, "us": 1, "ap": 1}}


def test_a_tick_that_reaches_every_org_and_launches_nothing_drops_the_start_too(database, instance):
    # Nothing launched, yet the cursor changes: the org it started with was reached, so the next
    # tick goes back to the orgs' order (a stale start would keep rotating it).
    queue_rows(database, 1, status="applied")
    result, after = evaluate(instance, json.dumps({"launches": {"default": 3}, "start": "default"}))
    assert not result.run_requests and result.skip_message == "No pending requests."
    assert json.loads(after) == {"launches": {"default": 3}}


def test_a_schedule_that_launches_runs_logs_why_it_launched_none_for_the_other_orgs(tmp_path, monkeypatch, capfd):
    # As a sensor's: a schedule's tick that returns runs has no skip reason, so the orgs it
    # launched none for are named in its log with why; the orgs it launched, only if it did not
    # look at them in time.
    orgs_holding(tmp_path, monkeypatch, ["keyed", "keyless", "unsynced"])
    monkeypatch.delenv("KEY_1")
    with dg.build_schedule_context() as context:
        requests = schedule_tick(context, deployment_orgs(),
                                 waits=lambda org: "not synced yet." if org.slug == "unsynced" else None)
    assert [request.partition_key for request in requests] == ["keyed"]
    logged = capfd.readouterr().err.splitlines()  # its log
    assert [line for line in logged if "unsynced: not synced yet." in line], logged
    assert [line for line in logged if "keyless: " in line and "KEY_1" in line], logged
    # Every org was looked at in time ("keyed" found nothing to wait for): none is said not reached.
    assert not [line for line in logged if "not reached" in line], logged


def test_a_schedules_on_no_key_calls_and_its_looks_share_one_budget(tmp_path, monkeypatch, capfd):
    # The sync schedule's on_no_key records a sync.failed, which may wait on a held database:
    # when those calls use the tick's budget up, the other orgs are not looked at past it (the
    # tick would run into Dagster's 60-s timeout, for every org) but launched, named.
    orgs_holding(tmp_path, monkeypatch, ["keyless", "keyed"])
    monkeypatch.delenv("KEY_0")
    looked = []

    def slow_on_no_key(org, reason):
        time.sleep(1.5)  # past the budget's last moment to start a look (1 s in)

    def not_yet(org):
        looked.append(org.slug)
        return "not synced yet."

    with dg.build_schedule_context() as context:
        requests = schedule_tick(context, deployment_orgs(), waits=not_yet, on_no_key=slow_on_no_key,
                                 budget_seconds=TICK_LOOK_SECONDS + 1)
    assert looked == []
    assert [request.partition_key for request in requests] == ["keyed"]
    [warning] = [line for line in capfd.readouterr().err.splitlines() if "not reached" in line]  # its log
    assert left_said(warning) == ["keyed"]


def test_a_copy_that_cannot_be_used_is_said_with_its_fix(database, instance):
    # Not a DuckDB file where the analysts' copy should be: no tick mends it, so the skip reason
    # carries what to do about it (a LeftoverWalError's fix even names the file to move aside).
    database.path.parent.mkdir(parents=True, exist_ok=True)
    database.path.write_bytes(b"not a database" * 300)
    result, _ = evaluate(instance)
    assert not result.run_requests
    assert result.skip_message.startswith("Database unusable, trying again next tick: could not open "), \
        result.skip_message
    assert result.skip_message.endswith(f": {DatabaseUnusableError.fix}."), result.skip_message


def test_the_next_tick_starts_with_the_first_org_left_in_this_ticks_order_not_the_orgs_files(
        tmp_path, monkeypatch):
    # A tick that started with "us" and left "ap" and "eu" (its order wraps round the orgs file):
    # the next starts with "ap", the first it left. Starting with "eu", the first of them in the
    # orgs file, it would reach "eu" and "us" first again, and "ap" could wait tick after tick.
    orgs = orgs_holding(tmp_path, monkeypatch, ["eu", "us", "ap"])
    for org in orgs:
        queue_rows(AccessDatabase(org.duckdb_path), 1)
    counted_past_the_deadline(monkeypatch, "us")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=json.dumps({"launches": {}, "start": "us"}))
        launched = evaluate_queue(context, orgs, budget_seconds=TICK_LOOK_SECONDS + 1)
    assert [request.partition_key for request in launched] == ["us"]
    assert json.loads(context.cursor) == {"launches": {"us": 1}, "start": "ap"}


def test_an_org_without_a_key_is_said_so_even_while_it_waits_after_failed_runs(database, instance, monkeypatch):
    # Its runs failed, likely for want of the key: the tick says which variable to set, not the
    # wait's advice to launch a run from the Launchpad, which would only fail again at its start.
    queue_rows(database, 1)
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.FAILURE,
                        tags={"langsmith_access/org": "default"})
    monkeypatch.delenv("LANGSMITH_API_KEY")
    result, _ = evaluate(instance)
    assert not result.run_requests
    assert result.skip_message.startswith("LANGSMITH_API_KEY is not set"), result.skip_message


def test_a_schedule_calls_no_on_no_key_past_its_budget(tmp_path, monkeypatch):
    # on_no_key may wait on a held database (the sync schedule records a sync.failed): none
    # starts that could end past the tick's deadline, and the org is still said to lack its key.
    orgs_holding(tmp_path, monkeypatch, ["keyless"])
    monkeypatch.delenv("KEY_0")
    called = []
    with dg.build_schedule_context() as context:
        tick = schedule_tick(context, deployment_orgs(), budget_seconds=0,
                             on_no_key=lambda org, reason: called.append(org.slug))
    assert called == []
    # Said to lack its key, and that what the tick does for such an org waits for the next tick.
    assert "KEY_0" in tick.skip_message and "No run until then. " in tick.skip_message, tick.skip_message
    assert tick.skip_message.endswith(f" {NO_KEY_NOT_REACHED}"), tick.skip_message
