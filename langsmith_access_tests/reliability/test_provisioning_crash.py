"""Provisioning survives ``kill -9`` mid-batch (twice, once in the middle of a write) and
duplicate submissions: no request lost, none applied twice.

`langsmith-access provision` runs as a real process against a sandbox with latency. A gate in
front of the sandbox holds the answer of a chosen write *after LangSmith applied it*, and the
test kills the process group with SIGKILL right then: the worst moment, when LangSmith has
changed and the queue has not recorded the answer. (test_provisioning_end_to_end.py covers a
simulated crash inside one process and two provisioning processes at once.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from langsmith_access.api import list_requests, request_grant, request_revoke
from langsmith_access.provisioning.queue import FINAL_STATUSES
from langsmith_access.sandbox import FaultConfig
from langsmith_access.sandbox.server import DROP_CONNECTION
from langsmith_access_tests.helpers import query
from langsmith_access_tests.reliability.conftest import WRITES

CLI = str(Path(sys.executable).with_name("langsmith-access"))


class WriteGate:
    """Counts the writes LangSmith applied; holds the answer of the N-th one until released."""

    def __init__(self, sandbox, hold_at: list[int]):
        self.applied: list[tuple[str, str, str, dict]] = []  # method, path, workspace, body
        self.rejected: list = []
        self.holding = {n: threading.Event() for n in hold_at}
        self.release = threading.Event()
        self._lock = threading.Lock()
        original = sandbox.respond
        sandbox.respond = lambda request: self.respond(original, request)

    def respond(self, original, request):
        response = original(request)
        if request.method not in WRITES or response is DROP_CONNECTION:
            return response
        if response.status >= 400:
            self.rejected.append((request.method, request.path, response.status))
            return response
        with self._lock:
            self.applied.append((request.method, request.path, request.headers.get("X-Tenant-Id"),
                                 json.loads(request.body or b"{}")))
            number = len(self.applied)
        if number in self.holding:
            self.holding[number].set()
            self.release.wait(120)  # the client is killed meanwhile; its answer goes nowhere
        return response


def start_provision(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.out"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            [CLI, "provision", "--json"], env=os.environ.copy(), stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we kill exactly what we started
        )
    return process, out


def kill_at(process: subprocess.Popen, gate: WriteGate, write_number: int, out: Path) -> None:
    assert gate.holding[write_number].wait(240), out.read_text()
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL


def working_statuses(database, tmp_path: Path) -> Counter:
    """Statuses in the working file as the killed run left it, read from a copy (with its WAL)
    so the next run finds the files exactly as the kill left them."""
    copy_dir = tmp_path / "inspect"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir()
    for source in database.path.parent.glob(database.working_path.name + "*"):
        shutil.copyfile(source, copy_dir / source.name)
    with duckdb.connect(str(copy_dir / database.working_path.name)) as conn:
        return Counter(dict(conn.execute(
            "SELECT status, count(*) FROM main.provisioning_requests GROUP BY ALL").fetchall()))


def test_kill_9_mid_batch_twice_then_duplicates_then_recovery(start_env, tmp_path):
    sandbox, org, database = start_env(faults=FaultConfig(latency_ms=60))
    workspace_roles = [r.id for r in org.roles_by_scope("workspace")]
    adds_in, changes_in = org.shared_workspaces()[2], org.shared_workspaces()[3]
    outsiders = [m for m in org.active_members() if m.ls_user_id not in adds_in.memberships][:6]
    insiders = sorted(changes_in.memberships.values(), key=lambda m: m.id)[:6]
    identity_owner = {m.id: m.ls_user_id for m in insiders}
    wanted = {}  # (workspace, user) -> the role LangSmith must end with (None: not a member)
    originals = []
    for member in outsiders:
        originals.append(request_grant(member.ls_user_id, adds_in.id, workspace_roles[0], reason="kill-9 test"))
        wanted[(adds_in.id, member.ls_user_id)] = workspace_roles[0]
    for membership in insiders[:3]:
        new_role = next(r for r in workspace_roles if r != membership.role_id)
        originals.append(request_grant(membership.ls_user_id, changes_in.id, new_role))
        wanted[(changes_in.id, membership.ls_user_id)] = new_role
    for membership in insiders[3:]:
        originals.append(request_revoke(membership.ls_user_id, changes_in.id, membership.role_id))
        wanted[(changes_in.id, membership.ls_user_id)] = None
    assert all(r.accepted for r in originals) and len({r.request_id for r in originals}) == 12

    gate = WriteGate(sandbox, hold_at=[4, 7])

    # Run 1 is killed while LangSmith has applied its 4th write and the answer is on its way.
    first, first_out = start_provision(tmp_path, "run1")
    kill_at(first, gate, 4, first_out)
    assert not database.is_busy(), "the kernel released the writer lease of the killed run"
    assert working_statuses(database, tmp_path) == Counter(applied=3, in_progress=9)
    # The analysts' copy is published when a run ends: it still shows the queue as it was.
    assert Counter(r["status"] for r in list_requests()) == Counter(pending=12)
    leftovers = sorted(p.name for p in database.path.parent.iterdir())

    # Run 2 starts on the files as the kill left them (WAL, lock file), settles the half-done
    # write by reading it back, and is killed in turn at the 7th write.
    gate.release.set()
    gate.release = threading.Event()
    second, second_out = start_provision(tmp_path, "run2")
    kill_at(second, gate, 7, second_out)
    assert working_statuses(database, tmp_path) == Counter(applied=6, in_progress=6)

    # Duplicates, spelled differently, while 6 requests are stuck in_progress: each is either
    # the same request again (in flight) or a new one that will find nothing to do.
    gate.release.set()
    resubmitted = []
    for original in originals:
        [row] = [r for r in _working_requests(database) if r["request_id"] == original.request_id]
        user_email = org.member(row["user_id"]).email.upper()
        again = (request_grant if row["action"] == "grant" else request_revoke)(
            user_email, row["workspace_id"], row["role_id"])
        assert again.accepted
        if row["status"] == "in_progress":
            assert again.duplicate_of == original.request_id
        else:
            assert again.duplicate_of is None and again.request_id != original.request_id
            resubmitted.append(again.request_id)
    # And one new change submitted four times at once: one request.
    extra = next(m for m in org.active_members()
                 if m.ls_user_id not in adds_in.memberships and m.ls_user_id not in {o.ls_user_id for o in outsiders})
    with ThreadPoolExecutor(4) as pool:
        extras = list(pool.map(lambda _: request_grant(extra.email, adds_in.id, workspace_roles[1]), range(4)))
    assert len({e.request_id for e in extras}) == 1
    wanted[(adds_in.id, extra.ls_user_id)] = workspace_roles[1]

    # Run 3 finishes the job.
    third, third_out = start_provision(tmp_path, "run3")
    assert third.wait(300) == 0, third_out.read_text()
    report = json.loads(third_out.read_text().splitlines()[-1])

    statuses = {r["request_id"]: r for r in list_requests()}
    assert all(statuses[o.request_id]["status"] == "applied" for o in originals)
    assert all(statuses[r]["status"] == "already_satisfied" for r in resubmitted)
    assert statuses[extras[0].request_id]["status"] == "applied"
    assert all(r["status"] in FINAL_STATUSES for r in statuses.values())
    assert len(statuses) == 12 + len(resubmitted) + 1
    # The request whose write was cut off in run 1 was settled by reading, not by writing again.
    assert sum(1 for r in statuses.values() if (r["status_detail"] or "").startswith("verified")) >= 1
    assert report["success"] is True

    # LangSmith received exactly one write per change, and none was refused as a repeat.
    def target(method, path, workspace, body):
        if method == "POST":
            return workspace, org.member_by_identity_id(body["org_identity_id"]).ls_user_id
        return workspace, identity_owner[path.rsplit("/", 1)[1]]

    per_target = Counter(target(*write) for write in gate.applied)
    assert per_target == Counter({key: 1 for key in wanted}), per_target
    assert gate.rejected == []
    for (workspace_id, user_id), role_id in wanted.items():
        membership = org.membership(workspace_id, user_id)
        assert (membership.role_id if membership else None) == role_id
    # The audit trail agrees: one write_sent per change, across three runs.
    [(write_events,)] = query(database.path, "SELECT count(*) FROM main.provisioning_events WHERE kind = 'write_sent'")
    assert write_events == len(wanted) == 13
    recovered = query(database.path, "SELECT count(DISTINCT request_id) FROM main.provisioning_events "
                                     "WHERE kind = 'recovered'")[0][0]
    assert recovered == 9  # the 9 requests run 1 left in_progress, taken over by run 2
    # grants shows LangSmith's state at once.
    for (workspace_id, user_id), role_id in wanted.items():
        rows = query(database.path, "SELECT role_id FROM main.grants WHERE workspace_id = ? AND user_id = ?",
                     [workspace_id, user_id])
        assert rows == ([(role_id,)] if role_id else [])
    print(f"\nkill -9: 2 kills, {len(gate.applied)} writes applied for {len(wanted)} changes, "
          f"{len(statuses)} requests all final; files left by the first kill: {leftovers}")


def _working_requests(database) -> list[dict]:
    with database.writer_lease("test: read the queue"), database.connect() as conn:
        cursor = conn.execute("SELECT request_id, action, user_id, workspace_id, role_id, status "
                              "FROM main.provisioning_requests")
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]
