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
import threading
from collections import Counter
from pathlib import Path

import dagster as dg

from langsmith_access.api import list_requests, request_grant
from langsmith_access.definitions import defs
from langsmith_access_tests.helpers import actual_workspace_grants, expected_workspace_grants, query, tick_sensor

CLI = str(Path(sys.executable).with_name("langsmith-access"))
HANG_BOUND_SECONDS = 400  # bounds a hang only; nothing here is timed

# The analyst: a read-only session opened once. It answers a query on each "query" line of its
# stdin (the test asks at chosen moments), queries on its own between them (whatever the runs
# are doing then, publishing included), and on "fresh" closes, reopens and answers once more.
ANALYST = r"""
import json, select, sys, duckdb
path = sys.argv[1]
conn = duckdb.connect(path, read_only=True)  # as `duckdb -readonly` or a notebook would
SQL = ("SELECT (SELECT count(*) FROM main.users), (SELECT count(*) FROM main.grants), "
       "(SELECT count(*) FROM main.provisioning_requests WHERE status = 'pending'), "
       "(SELECT count(*) FROM main.grants g JOIN main.users u USING (user_id) JOIN main.roles r USING (role_id))")
def ask():
    try:
        return {"seen": list(conn.execute(SQL).fetchone())}
    except Exception as exc:
        return {"error": repr(exc)}
print(json.dumps({"ready": conn.execute(SQL).fetchone()}), flush=True)
background = {"queries": 0, "errors": [], "seen": set()}
while True:
    if not select.select([sys.stdin], [], [], 0.05)[0]:
        answer = ask()  # on its own, between the test's questions
        background["queries"] += 1
        if "error" in answer:
            background["errors"].append(answer["error"])
        else:
            background["seen"].add(tuple(answer["seen"]))
        continue
    command = sys.stdin.readline().strip()
    if command == "query":
        print(json.dumps(ask()), flush=True)
    elif command == "fresh":
        conn.close()  # DuckDB shares one open database per path within a process: close, then reopen
        conn = duckdb.connect(path, read_only=True)
        print(json.dumps({**ask(), "background": {**background, "seen": sorted(background["seen"])}}),
              flush=True)
        break
"""


class FirstRequestGate:
    """Holds the first API request the sandbox receives (the sync's: it starts first, already
    holding the writer lease) until released; every other request passes."""

    def __init__(self, sandbox):
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._taken = False
        original = sandbox.respond
        sandbox.respond = lambda request: self.respond(original, request)

    def respond(self, original, request):
        with self._lock:
            first, self._taken = not self._taken, True
        if first:
            self.holding.set()
            self.release.wait(HANG_BOUND_SECONDS)
        return original(request)


def tick(definitions, instance, cursor):
    return tick_sensor("provisioning_queue_sensor", instance, cursor, definitions)


def ask(analyst, command: str = "query") -> dict:
    analyst.stdin.write(command + "\n")
    analyst.stdin.flush()
    return json.loads(analyst.stdout.readline())


def test_analyst_session_and_sensor_through_a_sync_and_a_provisioning_run_at_once(start_env, tmp_path):
    sandbox, org, database = start_env()
    workspace = org.shared_workspaces()[5]
    outsiders = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships][:3]
    for member in outsiders:
        assert request_grant(member.ls_user_id, workspace.id, "Editor").accepted
    newcomer = org.add_member("concurrent.newcomer@example.com", "Concurrent Newcomer")
    org.add_workspace_membership(workspace.id, newcomer.ls_user_id, org.roles_by_scope("workspace")[0].id)

    sensor = defs()  # the definitions the sensor ticks in, as the daemon has them
    gate = FirstRequestGate(sandbox)
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(database.path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sync = provision = None
    answers = []  # the analyst's answers at the moments the test chose
    try:
        before = json.loads(analyst.stdout.readline())["ready"]
        sync_out = open(tmp_path / "sync.out", "w")
        # The held request must not time out at the client (and be sent again) meanwhile.
        sync_env = {**os.environ, "LANGSMITH_ACCESS_TIMEOUT_SECONDS": str(HANG_BOUND_SECONDS)}
        sync = subprocess.Popen([CLI, "sync"], env=sync_env, stdout=sync_out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        # The sync is now mid-read, holding the writer lease, and stays so until released.
        assert gate.holding.wait(HANG_BOUND_SECONDS), (tmp_path / "sync.out").read_text()
        answers.append(ask(analyst))
        ticks: Counter = Counter()
        cursor = None
        (tmp_path / "dagster_home").mkdir()
        # The sensor's instance; the provisioning run it launches records itself there too
        # (DAGSTER_HOME is set inside this block), as a run launched by the daemon would.
        with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
            for _ in range(3):  # ticks while the sync runs; the first offers the queue
                result, cursor = tick(sensor, instance, cursor)  # must never raise
                ticks["run" if result.run_requests else result.skip_message.split(":")[0]] += 1
                if result.run_requests and provision is None:
                    # What the daemon would do: launch the run, while the sync is still going.
                    provision_out = open(tmp_path / "provision.out", "w")
                    provision = subprocess.Popen([CLI, "provision"], env=os.environ.copy(),
                                                 stdout=provision_out, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
                answers.append(ask(analyst))
            assert sync.poll() is None, "the sync was held all along"
            assert provision is not None, f"the sensor offered the pending requests: {ticks}"
            ticks_during_sync = sum(ticks.values())
            gate.release.set()
            # Both runs finish, the sensor ticking meanwhile; each wait bounds a hang only.
            for process in (sync, provision):
                for _ in range(HANG_BOUND_SECONDS):
                    try:
                        process.wait(1)
                        break
                    except subprocess.TimeoutExpired:
                        result, cursor = tick(sensor, instance, cursor)
                        ticks["run" if result.run_requests else result.skip_message.split(":")[0]] += 1
                answers.append(ask(analyst))
        assert sync.wait(10) == 0, (tmp_path / "sync.out").read_text()
        assert provision.wait(10) == 0, (tmp_path / "provision.out").read_text()
        fresh = ask(analyst, "fresh")
        assert analyst.wait(60) == 0, analyst.stderr.read()
    finally:
        gate.release.set()
        for process in (analyst, sync, provision):
            if process is not None and process.poll() is None:
                process.kill()

    # The analyst's session never failed and kept seeing the picture it opened: at each moment
    # the test asked (sync mid-read, each sensor tick, each run done) and in between.
    assert answers == [{"seen": list(before)}] * 6
    background = fresh["background"]
    assert background["errors"] == [] and background["seen"] in ([], [list(before)])
    # The sensor ticked while the sync ran without breaking, and offered the queue at once.
    assert ticks_during_sync == 3 and ticks["run"] >= 1, ticks
    # Both runs did their work: a new session sees the newcomer and the applied grants, and
    # the tables equal LangSmith's state whichever run took the lease first.
    assert fresh["seen"][0] == before[0] + 1
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)
    assert query(database.path, "SELECT count(*) FROM main.sync_runs")[0][0] == 2
    print(f"\nconcurrency: analyst answered {len(answers)} chosen and {background['queries']} other "
          f"queries with 0 errors; sensor ticks {dict(ticks)}")
