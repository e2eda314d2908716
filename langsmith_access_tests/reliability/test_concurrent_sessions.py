"""An analyst holding the database open through a sync and a provisioning run, the sensor
ticking all along, and the sync and the provisioning run started at the same time: nothing
breaks, nothing is lost, and the analyst's session keeps one consistent picture.

(test_sync_end_to_end.py holds an analyst session through one sync; test_sensor.py ticks the
sensor while the database is locked; test_provisioning_end_to_end.py starts two provisioning
runs at once. Here they all happen together.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg

from langsmith_access.definitions import defs
from langsmith_access.api import list_requests, request_grant
from langsmith_access_tests.helpers import actual_workspace_grants, expected_workspace_grants, query

CLI = str(Path(sys.executable).with_name("langsmith-access"))

ANALYST = r"""
import json, os, sys, time, duckdb
path, stop = sys.argv[1], sys.argv[2]
conn = duckdb.connect(path, read_only=True)  # as `duckdb -readonly` or a notebook would
SQL = ("SELECT (SELECT count(*) FROM main.users), (SELECT count(*) FROM main.grants), "
       "(SELECT count(*) FROM main.provisioning_requests WHERE status = 'pending'), "
       "(SELECT count(*) FROM main.grants g JOIN main.users u USING (user_id) JOIN main.roles r USING (role_id))")
print(json.dumps({"ready": conn.execute(SQL).fetchone()}), flush=True)
queries, errors, seen = 0, [], set()
while not os.path.exists(stop):
    try:
        seen.add(tuple(conn.execute(SQL).fetchone()))
        queries += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.05)
conn.close()  # DuckDB shares one open database per path within a process: close, then reopen
fresh = duckdb.connect(path, read_only=True)
print(json.dumps({"queries": queries, "errors": errors, "seen": sorted(seen),
                  "fresh": fresh.execute(SQL).fetchone()}), flush=True)
"""


def tick(sensor, instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return sensor.evaluate_tick(context), context.cursor


def test_analyst_session_and_sensor_through_a_sync_and_a_provisioning_run_at_once(start_env, tmp_path):
    sandbox, org, database = start_env()
    workspace = org.shared_workspaces()[5]
    outsiders = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships][:3]
    for member in outsiders:
        assert request_grant(member.ls_user_id, workspace.id, "Editor").accepted
    newcomer = org.add_member("concurrent.newcomer@example.com", "Concurrent Newcomer")
    org.add_workspace_membership(workspace.id, newcomer.ls_user_id, org.roles_by_scope("workspace")[0].id)

    stop = tmp_path / "analyst.stop"
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(database.path), str(stop)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sync = provision = None
    try:
        before = json.loads(analyst.stdout.readline())["ready"]
        sync_out = open(tmp_path / "sync.out", "w")
        sync = subprocess.Popen([CLI, "sync"], env=os.environ.copy(), stdout=sync_out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        sensor = defs().resolve_sensor_def("provisioning_queue_sensor")
        ticks: Counter = Counter()
        ticks_during_sync = 0
        cursor = None
        (tmp_path / "dagster_home").mkdir()
        # The sensor's instance; the provisioning run it launches records itself there too
        # (DAGSTER_HOME is set inside this block), as a run launched by the daemon would.
        with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline:
                result, cursor = tick(sensor, instance, cursor)  # must never raise
                ticks["run" if result.run_requests else result.skip_message.split(":")[0]] += 1
                if sync.poll() is None:
                    ticks_during_sync += 1
                if result.run_requests and provision is None:
                    # What the daemon would do: launch the run, while the sync is still going.
                    provision_out = open(tmp_path / "provision.out", "w")
                    provision = subprocess.Popen([CLI, "provision"], env=os.environ.copy(),
                                                 stdout=provision_out, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
                    assert sync.poll() is None, "the provisioning run started while the sync ran"
                if sync.poll() is not None and provision is not None and provision.poll() is not None:
                    break
                time.sleep(0.5)
        assert sync.wait(10) == 0, (tmp_path / "sync.out").read_text()
        assert provision is not None and provision.wait(10) == 0, (tmp_path / "provision.out").read_text()
        stop.touch()
        report = json.loads(analyst.communicate(timeout=60)[0])
    finally:
        stop.touch()
        for process in (analyst, sync, provision):
            if process is not None and process.poll() is None:
                process.kill()

    # The analyst's session never failed and kept seeing the picture it opened.
    assert report["errors"] == [] and report["queries"] > 20
    assert report["seen"] == [before]
    # The sensor ticked throughout without breaking, and offered the queue at once.
    assert ticks_during_sync >= 3 and ticks["run"] >= 1, ticks
    # Both runs did their work: a new session sees the newcomer and the applied grants, and
    # the tables equal LangSmith's state whichever run took the lease first.
    assert report["fresh"][0] == before[0] + 1
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)
    assert query(database.path, "SELECT count(*) FROM main.sync_runs")[0][0] == 2
    print(f"\nconcurrency: analyst ran {report['queries']} queries with 0 errors; sensor ticks {dict(ticks)}")
