"""``deploy/prune_dagster_runs.py``: the housekeeping that keeps Dagster's Postgres from growing
for ever (README "Keeping growth in check").

Dagster deletes no run by itself, and each sync leaves about a megabyte of events. The script
deletes the finished runs created before a cutoff with their events, and must never delete a
run still queued or running, however old: the schedules skip an org whose sync is in flight,
and the sensors fail a run whose process died, by finding those runs. Checked on a real
PostgreSQL (``conftest.py``) with the instance ``deploy/dagster.yaml`` describes, the runs made
by executing a job, and the rows counted in Dagster's own tables.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from langsmith_access_tests.deploy.conftest import Postgres
from langsmith_access_tests.deploy.test_deploy_files import image_path_of, prune_cronjob_container

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRIPT = runpy.run_path(str(DEPLOY / "prune_dagster_runs.py"))


@dg.op
def say_something(context) -> None:
    context.log.info("an event for the event log")


@dg.job
def small_job() -> None:
    say_something()


@pytest.fixture
def instance(postgres: Postgres, monkeypatch, tmp_path):
    """deploy/dagster.yaml's instance, on the test's PostgreSQL."""
    for name, value in postgres.environment().items():
        monkeypatch.setenv(name, value)
    shutil.copyfile(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as the_instance:
        yield the_instance


def events_of(postgres: Postgres, run_id: str) -> int:
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", [run_id])
            return cursor.fetchone()[0]
    finally:
        connection.close()


def test_finished_runs_before_the_cutoff_go_with_their_events_and_runs_in_flight_stay(instance, postgres):
    succeeded = small_job.execute_in_process(instance=instance).run_id
    failed = instance.add_run(dg.DagsterRun(job_name="small_job", status=dg.DagsterRunStatus.FAILURE)).run_id
    assert instance.has_run(failed)
    # Old but not finished: a run being launched, one whose worker is still running.
    starting = instance.add_run(dg.DagsterRun(job_name="small_job", status=dg.DagsterRunStatus.STARTING)).run_id
    started = instance.add_run(dg.DagsterRun(job_name="small_job", status=dg.DagsterRunStatus.STARTED)).run_id
    time.sleep(0.05)  # created_before is strict: the cutoff falls between the old runs and the new one
    cutoff = datetime.now(UTC)
    time.sleep(0.05)
    recent = small_job.execute_in_process(instance=instance).run_id
    assert events_of(postgres, succeeded) > 0

    assert SCRIPT["prune_runs"](instance, cutoff) == 2

    remaining = {run.run_id for run in instance.get_runs()}
    assert remaining == {starting, started, recent}
    assert events_of(postgres, succeeded) == 0
    assert events_of(postgres, recent) > 0


def test_the_command_refuses_to_delete_the_last_day(instance, capsys):
    kept = small_job.execute_in_process(instance=instance).run_id

    with pytest.raises(SystemExit) as refused:
        SCRIPT["main"](["--older-than-days", "0"])

    assert refused.value.code == 2
    assert "--older-than-days 0: keep at least a day of runs" in capsys.readouterr().err
    assert instance.has_run(kept)
    assert SCRIPT["main"](["--older-than-days", "1"]) == 0
    assert "deleted 0 finished run(s) created before " in capsys.readouterr().out
    assert instance.has_run(kept)


def test_the_kubernetes_cronjobs_command_prunes_with_the_images_instance(instance, postgres, tmp_path):
    """The CronJob's command and variables as Kubernetes runs them in the image (the script where
    the Containerfile copies it, deploy/dagster.yaml as the image's instance), on a real Postgres:
    the variables it sets are all the instance needs."""
    cronjob = yaml.safe_load((DEPLOY / "helm" / "prune-runs-cronjob.yaml").read_text(encoding="utf-8"))
    container = prune_cronjob_container(cronjob)
    old = instance.add_run(dg.DagsterRun(job_name="small_job", status=dg.DagsterRunStatus.SUCCESS)).run_id
    recent = small_job.execute_in_process(instance=instance).run_id
    given = postgres.environment()
    environment = {"PATH": os.environ["PATH"], "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    environment |= {variable["name"]: given[variable["name"]] for variable in container["env"]}
    python, script, *arguments = container["command"]
    assert python == "python" and Path(script) == image_path_of("deploy/prune_dagster_runs.py")
    done = subprocess.run([sys.executable, str(DEPLOY / "prune_dagster_runs.py"), *arguments], env=environment,
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    assert "deleted 0 finished run(s) created before " in done.stdout  # 90 days back: both runs are newer
    assert instance.has_run(old) and instance.has_run(recent)
    assert given["DAGSTER_PG_PASSWORD"] not in done.stdout + done.stderr
