"""deploy/dagster.yaml as a real, Postgres-backed Dagster instance (DESIGN.md section 11).

A temporary PostgreSQL (``conftest.py``) stands in for the production database; the instance is
loaded from the very file an operator copies into DAGSTER_HOME, with its connection from the
variables the file names. A sync of a small sandbox org runs in it, and a sync whose key the
sandbox refuses; both runs, with their events, are found in Postgres, and a ``pg_dump`` of the
whole database holds neither key nor the database password.

What needs the partitions by org (the daemon draining the queue one run per org, schedules per
org) is proven by ``make smoke-deploy``, on top of this.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from langsmith_access import runner
from langsmith_access.names import SYNC_JOB
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.helpers import point_at, query

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REFUSED_KEY = "lsv2_sk_refused0000000000000000000000_notthekey"


@pytest.fixture
def instance(postgres, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name, value in postgres.environment().items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(home)) as the_instance:
        yield the_instance


@pytest.mark.timeout(600)
def test_runs_land_in_postgres_and_no_secret_does(postgres, instance, tmp_path, monkeypatch):
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

    database = tmp_path / "data" / "langsmith_access.duckdb"
    with SandboxServer(generate_org(seed=16, members=12, workspaces=3)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        synced = runner.run_job(SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
        assert synced.success, synced.failure
        # The same org with a key the sandbox does not know: the run fails on the first request,
        # and its error lands in the event log.
        monkeypatch.setenv("LANGSMITH_API_KEY", REFUSED_KEY)
        refused = runner.run_job(SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
        assert not refused.success
        key = sandbox.api_key
    assert query(database, "SELECT count(*) FROM main.users")[0][0] > 0

    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_id, status FROM runs WHERE run_id IN %s", ((synced.run_id, refused.run_id),))
            assert dict(cursor.fetchall()) == {synced.run_id: "SUCCESS", refused.run_id: "FAILURE"}
            cursor.execute("SELECT run_id, count(*) FROM event_logs WHERE run_id IN %s GROUP BY run_id",
                           ((synced.run_id, refused.run_id),))
            events = dict(cursor.fetchall())
    finally:
        connection.close()
    assert events[synced.run_id] > 10 and events[refused.run_id] > 0
    # Dagster reads the runs back from Postgres too (what the webserver and daemon see).
    assert instance.get_run_by_id(synced.run_id).is_success

    dump = postgres.dump()
    assert synced.run_id in dump and refused.run_id in dump  # the dump holds the runs ...
    assert "asset_materialization" in dump.lower() or "ASSET_MATERIALIZATION" in dump
    for secret in (key, REFUSED_KEY, postgres.password):  # ... and no secret
        assert secret not in dump
