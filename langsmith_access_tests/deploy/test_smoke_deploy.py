"""`make smoke-deploy`: the single-host production form, for real, on this machine (DESIGN.md
section 11, README "Running it for real").

PostgreSQL (Debian's, under a temporary directory on 127.0.0.1: ``conftest.py``), then the three
processes of the systemd units, started as the units start them, against ``deploy/dagster.yaml``
and ``deploy/workspace.yaml`` (only the code server's port differs): the gRPC code server (the
only process given the orgs file and the keys), the daemon and the webserver. Two sandbox orgs
in one orgs file:

1. the schedule (a cron of every minute, set through ``LANGSMITH_ACCESS_SYNC_CRON``) launches
   one sync per org; both complete, each into its own database; the operator then stops the
   schedule through the webserver's GraphQL API, as the UI does;
2. a grant queued in one org is launched by the sensor; the daemon is killed with ``kill -9``
   as soon as the run is recorded, and started again: the run completes, the request is
   applied once (one write reaches LangSmith), and the sensor's next ticks launch nothing more;
3. the services stopped, this process runs a sync of one org whose key LangSmith refuses on
   the same instance (as ``langsmith-access sync`` does with ``DAGSTER_HOME`` set): it fails on
   its first request and is recorded, with its error, like the others;
4. every run is in Postgres (storage, events, the run's status) with its org's tag, one org's
   runs never overlapped, and a ``pg_dump`` of the whole database holds no key (the refused
   one included) and not the database password.

Every process is started by this test and stopped by its pid (its own process group).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._grpc.client import DagsterGrpcClient
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from langsmith_access import runner
from langsmith_access.api import list_requests, request_grant
from langsmith_access.names import ORG_TAG, PROVISION_JOB, PROVISIONING_SENSOR, SYNC_JOB, SYNC_SCHEDULE
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import load_orgs
from langsmith_access_tests.services import Service, start_on_a_free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
LOCATION = "langsmith_access"  # deploy/workspace.yaml's location_name
SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
# Bounds on each wait, against a hang only: every wait ends as soon as its condition holds.
START_SECONDS = 180
TICK_SECONDS = 300  # the next minute boundary, plus the daemon's start on a busy machine
RUN_SECONDS = 600  # a quiet machine: ~30 s; a host taking ~15% steal time beside the two test
# workers: the two scheduled syncs took over 240 s (2026-12-02)
DAEMON_LEAD_SECONDS = 20  # the daemon's start before the cron's minute boundary (a few s; more when busy)
ORGS = {"us": (41, 10, 2), "eu": (42, 8, 2)}  # seed, members, workspaces: small
REFUSED_KEY = "lsv2_sk_refused0000000000000000000000_notthekey"

SCHEDULE_STATE = """
query ($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
  __typename ... on Schedule { scheduleState { id status } } ... on PythonError { message } } }
"""
STOP_SCHEDULE = """
mutation ($id: String!) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""
SENSOR_TICKS = """
query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { ticks(limit: 20) { status timestamp runIds } } } } }
"""
RELOAD_LOCATION = """
mutation ($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }
"""
LOCATION_STATUS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def location_loaded(url: str) -> bool:
    """The webserver has the code location's definitions; while the code server is still
    starting, ask the webserver to try again (what the UI's "Reload" does)."""
    try:
        entries = graphql(url, LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
    except (requests.RequestException, ValueError):
        return False
    entry = {e["name"]: e for e in entries}.get(LOCATION)
    if not entry or entry["loadStatus"] != "LOADED" or entry["locationOrLoadError"] is None:
        return False
    if entry["locationOrLoadError"]["__typename"] == "PythonError":
        message = entry["locationOrLoadError"]["message"]
        assert "Could not reach user code server" in message, f"the code location failed to load: {message}"
        graphql(url, RELOAD_LOCATION, {"name": LOCATION})
        return False
    return True


def _answers(port: int) -> bool:
    """The code server answers a gRPC ping: its definitions are loaded (the proxy loads them
    before it serves)."""
    try:
        DagsterGrpcClient(port=port, host="127.0.0.1").ping("smoke")
    except DagsterUserCodeUnreachableError:
        return False
    return True


def runs_of(instance: dg.DagsterInstance, job_name: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=job_name)))


def end_status(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRunStatus | None:
    """The run's status once it ended (None while it has not)."""
    status = instance.get_run_by_id(run.run_id).status
    return status if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                                dg.DagsterRunStatus.CANCELED) else None


def never_started(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether run monitoring failed ``run`` for never starting: the daemon was killed between
    marking it STARTING and handing it to the code server (Dagster's dequeue), so no worker ran it."""
    return instance.get_run_stats(run.run_id).start_time is None and any(
        "seconds to start" in entry.message for entry in instance.all_logs(run.run_id))


def finished(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> bool:
    """True when every run ended; fails on a run that did not succeed, with its errors."""
    done = True
    for run in runs:
        status = instance.get_run_by_id(run.run_id).status
        if status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            errors = [e.message for e in instance.all_logs(run.run_id) if e.is_dagster_event and
                      e.dagster_event.event_type_value in ("STEP_FAILURE", "PIPELINE_FAILURE", "ENGINE_EVENT")]
            pytest.fail(f"run {run.run_id} of {run.job_name} ({run.tags.get(ORG_TAG)}) ended {status}: {errors[-5:]}")
        done = done and status == dg.DagsterRunStatus.SUCCESS
    return done


@pytest.fixture
def two_sandboxes():
    sandboxes = {slug: SandboxServer(generate_org(seed=seed, members=members, workspaces=workspaces))
                 for slug, (seed, members, workspaces) in ORGS.items()}
    for sandbox in sandboxes.values():
        sandbox.start()
    try:
        yield sandboxes
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()


@pytest.mark.timeout(1800)  # bounds a hang only: every wait ends when its condition holds
def test_smoke_deploy(postgres, two_sandboxes, tmp_path, monkeypatch):
    started = time.monotonic()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")  # as the operator installs it
    workspace_text = (DEPLOY / "workspace.yaml").read_text()
    assert "port: 4266" in workspace_text
    workspace = tmp_path / "workspace.yaml"  # written once the code server's port is known
    data = tmp_path / "data"
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: {sandbox.organization_id}\n  endpoint: {sandbox.url}\n"
        f"  api_key_env: LANGSMITH_API_KEY_{slug.upper()}\n"
        for slug, sandbox in two_sandboxes.items()
    ))
    keys = {f"LANGSMITH_API_KEY_{slug.upper()}": s.api_key for slug, s in two_sandboxes.items()}

    # The units' environments: Postgres and DAGSTER_HOME for all three; the orgs, the keys and
    # the product's settings for the code server only (deploy/systemd/*.service).
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
    dagster_env = {**base, **postgres.environment(), "DAGSTER_HOME": str(home)}
    code_env = {
        **dagster_env, **keys,
        "LANGSMITH_ACCESS_ORGS_FILE": str(orgs_file),
        "LANGSMITH_ACCESS_DUCKDB": str(data / "langsmith_access.duckdb"),
        "LANGSMITH_ACCESS_SYNC_CRON": "* * * * *",  # the next minute boundary: the shortest cron
        # The inventory's hourly tick half an hour away, so it never fires during the test (at
        # minute 30, its default, it launched an inventory per org whenever the test spanned it).
        "LANGSMITH_ACCESS_INVENTORY_CRON": f"{(datetime.now(UTC).minute + 30) % 60} * * * *",
        "LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS": "2",
        "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "10",
    }

    def code_server_on(port: int) -> Service:
        return Service("code server", [
            str(BIN / "dagster"), "code-server", "start", "--host", "127.0.0.1", "--port", str(port),
            "--module-name", "langsmith_access.definitions", "--attribute", "defs", "--location-name", LOCATION,
        ], code_env, tmp_path / "code-server.log")

    def webserver_on(port: int) -> Service:
        return Service("webserver", [
            str(BIN / "dagster-webserver"), "--host", "127.0.0.1", "--port", str(port), "--workspace", str(workspace),
        ], dagster_env, tmp_path / "webserver.log")

    daemon = Service("daemon", [str(BIN / "dagster-daemon"), "run", "--workspace", str(workspace)],
                     dagster_env, tmp_path / "daemon.log")
    services: list[Service] = []  # those started, stopped at the end

    # This process reads the same Postgres, as an operator's tools would.
    for name, value in postgres.environment().items():
        monkeypatch.setenv(name, value)
    try:
        # The code server, then the webserver once the code server answers (started together,
        # the webserver's first load fails and its reload makes the code server start a second
        # process: ~5 s of CPU for nothing); the daemon once the definitions are served, so its
        # first look at the workspace finds the schedule and the sensor.
        code_server, code_port = start_on_a_free_port("the code server to answer", code_server_on, _answers,
                                                      START_SECONDS)
        services.append(code_server)
        workspace.write_text(workspace_text.replace("port: 4266", f"port: {code_port}"))
        webserver, web_port = start_on_a_free_port(
            "the webserver to load the code location", webserver_on,
            lambda port: location_loaded(f"http://127.0.0.1:{port}"), START_SECONDS, others=[code_server])
        services += [daemon, webserver]
        url = f"http://127.0.0.1:{web_port}"
        loaded_at = time.monotonic() - started
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # The schedule's first tick is the next minute boundary after the daemon starts.
            # Until DAEMON_LEAD_SECONDS before it, the daemon would only evaluate the sensors
            # (CPU the rest of the suite needs): start it then. Started later than the
            # boundary, it ticks a minute later (TICK_SECONDS allows for it).
            time.sleep(max(0.0, (60 - time.time() % 60) - DAEMON_LEAD_SECONDS))
            daemon.start()

            # 1. The schedule's tick: one sync per org, each tagged with its org.
            syncs = wait_for("the schedule to launch one sync per org",
                             lambda: (lambda runs: runs if len(runs) >= 2 else None)(runs_of(instance, SYNC_JOB)),
                             services, TICK_SECONDS)
            schedule_id = graphql(url, SCHEDULE_STATE, {"selector": {**SELECTOR, "scheduleName": SYNC_SCHEDULE}})[
                "scheduleOrError"]["scheduleState"]["id"]
            stopped = graphql(url, STOP_SCHEDULE, {"id": schedule_id})["stopRunningSchedule"]
            assert stopped["__typename"] == "ScheduleStateResult", stopped
            syncs = runs_of(instance, SYNC_JOB)  # a tick is one transaction: both runs, or more ticks' runs
            assert sorted(run.tags[ORG_TAG] for run in syncs[:2]) == ["eu", "us"]
            for run in syncs:
                assert run.tags["dagster/partition"] == run.tags[ORG_TAG]
                assert run.tags["dagster/schedule_name"] == SYNC_SCHEDULE
            wait_for("the scheduled syncs to complete", lambda: finished(instance, syncs), services, RUN_SECONDS)
            synced_at = time.monotonic() - started
            # The two orgs' syncs of one tick ran side by side (the queue holds back only one
            # org's second run).
            us_sync, eu_sync = (instance.get_run_stats(next(r for r in syncs if r.tags[ORG_TAG] == slug).run_id)
                                for slug in ("us", "eu"))
            assert us_sync.start_time < eu_sync.end_time and eu_sync.start_time < us_sync.end_time, (us_sync, eu_sync)
            for slug, sandbox in two_sandboxes.items():
                users = len(sandbox.org.active_members())
                assert _count(data / slug / "langsmith_access.duckdb", "main.users") == users, slug

            # 2. A grant queued in one org; the sensor launches it; the daemon is killed with
            # kill -9 as soon as the run is recorded, and started again.
            us = two_sandboxes["us"]
            # A member whose role in a workspace is not Editor yet (or who is not in it at all).
            editor = us.org.role_by_name("Editor").id
            workspace_, outsider = next(
                (w, m) for w in us.org.shared_workspaces() for m in us.org.active_members()
                if not m.is_disabled and getattr(w.memberships.get(m.ls_user_id), "role_id", None) != editor)
            us_database = data / "us" / "langsmith_access.duckdb"
            queued = request_grant(outsider.ls_user_id, workspace_.id, "Editor", reason="smoke deploy",
                                   requested_by="smoke-test", database=us_database)
            assert queued.accepted, queued.message
            writes_before = _writes(us)
            [provisioning] = wait_for("the sensor to launch the provisioning run",
                                      lambda: runs_of(instance, PROVISION_JOB), services, RUN_SECONDS)
            daemon.kill_hard()
            status_at_kill = instance.get_run_by_id(provisioning.run_id).status
            daemon.start()
            # Killed while it launched the run (marked STARTING, not yet handed to the code
            # server), the daemon leaves it with no worker: run monitoring fails it after
            # start_timeout_seconds, and the sensor launches the next run once its wait after a
            # failed run is over. Either way one run applies the request, once.
            stuck: dg.DagsterRun | None = None
            if wait_for("the provisioning run to end after the daemon's restart",
                        lambda: end_status(instance, provisioning), services, START_SECONDS + RUN_SECONDS
                        ) == dg.DagsterRunStatus.FAILURE and never_started(instance, provisioning):
                stuck = provisioning
                [provisioning] = wait_for(
                    "the sensor's next provisioning run, after the one that never started",
                    lambda: [r for r in runs_of(instance, PROVISION_JOB) if r.run_id != stuck.run_id],
                    services, RUN_SECONDS)
            wait_for("the provisioning run to complete after the daemon's restart",
                     lambda: finished(instance, [provisioning]), services, RUN_SECONDS)
            ended = instance.get_run_stats(provisioning.run_id).end_time
            # The sensor's next ticks, after the run: nothing left to launch, nothing launched twice.
            ticks = wait_for("a sensor tick after the provisioning run",
                             lambda: _ticks_after(url, ended), services, RUN_SECONDS)
            assert all(not tick["runIds"] for tick in ticks), ticks
            provisioned_at = time.monotonic() - started
            assert {r.run_id for r in runs_of(instance, PROVISION_JOB)} == {
                r.run_id for r in (stuck, provisioning) if r is not None}
            assert provisioning.tags[ORG_TAG] == "us" and provisioning.tags["dagster/partition"] == "us"
            assert provisioning.tags["dagster/sensor_name"] == PROVISIONING_SENSOR
            [request] = [r for r in list_requests(database=us_database) if r["request_id"] == queued.request_id]
            assert (request["status"], request["run_id"]) == ("applied", provisioning.run_id)
            assert us.org.membership(workspace_.id, outsider.ls_user_id).role_id == editor
            assert len(_writes(us)) - len(writes_before) == 1  # applied once
            assert _writes(two_sandboxes["eu"]) == []  # the other org untouched

            # A daemon starved of CPU can launch one more tick of syncs before the schedule
            # is stopped (queued behind the per-org limit): every run it launched must end too.
            def runs_that_started() -> list[dg.DagsterRun]:  # every run but one that never started
                return [r for r in instance.get_runs() if stuck is None or r.run_id != stuck.run_id]

            wait_for("every launched run to end", lambda: finished(instance, runs_that_started()),
                     services, RUN_SECONDS)
            all_runs = runs_that_started()
    finally:
        for service in reversed(services):
            service.stop()

    # 3. A sync whose key LangSmith refuses, in this process, on the same instance: the
    # environment the code server had, but for us's key.
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    for name, value in {**code_env, "LANGSMITH_API_KEY_US": REFUSED_KEY}.items():
        if name.startswith("LANGSMITH_"):
            monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        refused = runner.run_job(SYNC_JOB, runner.sync_run_config(), org=load_orgs().get("us"),
                                 dagster_instance=instance)
    assert not refused.success and "refused the API key" in refused.failure, refused.failure

    # 4. Postgres holds every run with its events; one org's runs never overlapped; no secret.
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_id, status FROM runs")
            recorded = dict(cursor.fetchall())
            cursor.execute("SELECT run_id, count(*) FROM event_logs GROUP BY run_id")
            events = dict(cursor.fetchall())
    finally:
        connection.close()
    if stuck is not None:  # failed by run monitoring, as said above, having run nothing
        assert recorded.pop(stuck.run_id) == "FAILURE"
    assert set(recorded) == {run.run_id for run in all_runs} | {refused.run_id} and len(recorded) >= 4
    assert recorded.pop(refused.run_id) == "FAILURE" and set(recorded.values()) == {"SUCCESS"}, recorded
    assert all(events.get(run_id, 0) > 10 for run_id in recorded) and events[refused.run_id] > 0
    assert all(run.tags.get(ORG_TAG) in ORGS for run in all_runs)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for slug in ORGS:
            spans = sorted((s.start_time, s.end_time) for s in
                           (instance.get_run_stats(r.run_id) for r in all_runs if r.tags[ORG_TAG] == slug))
            assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), (slug, spans)
    dump = postgres.dump()
    assert provisioning.run_id in dump and refused.run_id in dump  # the search sees the runs
    for secret in (*keys.values(), REFUSED_KEY, postgres.password):
        assert secret not in dump
    print(f"\nsmoke deploy: location loaded at {loaded_at:.0f} s, both orgs synced by the schedule at "
          f"{synced_at:.0f} s, daemon killed with the provisioning run {status_at_kill.value}"
          f"{' (it never started: the next run took over)' if stuck else ''}, request applied once at "
          f"{provisioned_at:.0f} s; {len(recorded) + 1 + (stuck is not None)} runs in Postgres (1 refused); "
          f"{time.monotonic() - started:.0f} s in all")


def _count(database: Path, table: str) -> int:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _writes(sandbox: SandboxServer) -> list:
    return [entry for entry in sandbox.request_log if entry.method in ("POST", "PATCH", "DELETE")]


def _ticks_after(url: str, ended: float | None) -> list[dict] | None:
    if ended is None:
        return None
    selector = {**SELECTOR, "sensorName": PROVISIONING_SENSOR}
    sensor = graphql(url, SENSOR_TICKS, {"selector": selector})["sensorOrError"]
    later = [tick for tick in sensor["sensorState"]["ticks"]
             if tick["timestamp"] > ended and tick["status"] in ("SKIPPED", "SUCCESS")]
    return later or None

