"""Provisioning survives ``kill -9`` mid-batch (twice, each time in the middle of a write) and
duplicate submissions: no request lost, none applied twice, whatever the number of threads.

Each run that is killed is `langsmith-access provision` as a real process (the runs after the
kills, which nobody kills, run its main() in the test's process), against a sandbox with latency, on a small
batch (one thread, a read per request) and on a batch big enough for several threads and org
listings. A gate in front of the sandbox holds the answer of every write from a chosen one on,
*after LangSmith applied it*, and the test kills the process group with SIGKILL while it holds
at least one (the big batch: at least two at once, from two threads): the worst moment, when
LangSmith has changed and the queue has not recorded the answer. What other threads were doing
at that instant varies, so the test checks what must hold for any interleaving: a write reaches
LangSmith only after its request recorded ``write_sent``; the next run recovers exactly the
requests the killed one left in progress; in the end every request is final, LangSmith received
one write per change, and a request wrote again only when a kill had cut its earlier write off
before it reached LangSmith. (test_provisioning_end_to_end.py covers a simulated crash inside one
process and two provisioning processes at once.)

Time-bound grants: the run that queues the revokes ending them is killed mid-write in the same
way; each grant gets one revoke and LangSmith one write per expiry.
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
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from langsmith_access.api import list_requests, request_grant, request_revoke
from langsmith_access.provisioning.queue import FINAL_STATUSES, ChangeRequest, submit_on
from langsmith_access.sandbox import FaultConfig
from langsmith_access.sandbox.server import DROP_CONNECTION
from langsmith_access_tests.helpers import cli_in_this_process, query
from langsmith_access_tests.reliability.conftest import WRITES

CLI = str(Path(sys.executable).with_name("langsmith-access"))
HANG_BOUND_SECONDS = 240  # bounds a hang only; nothing here is timed


class WriteGate:
    """Records the writes LangSmith applied and every request in flight; once armed, holds the
    answer of every write from the N-th next one on (LangSmith has applied it) until released."""

    def __init__(self, sandbox):
        self.applied: list[tuple[str, str, str, dict]] = []  # method, path, workspace, body
        self.rejected: list = []
        self._hold_from: int | None = None
        self._release = threading.Event()
        self._held = 0  # answers held right now
        self._in_flight = 0  # requests being answered right now (held ones included)
        self._changed = threading.Condition()
        original = sandbox.respond
        sandbox.respond = lambda request: self.respond(original, request)

    def hold_from(self, nth_next_write: int) -> None:
        with self._changed:
            self._hold_from = len(self.applied) + nth_next_write
            self._release = threading.Event()

    def release(self) -> None:
        """Let the held answers go (to a dead client) and hold nothing more."""
        with self._changed:
            self._hold_from = None
            self._release.set()

    def wait_for(self, condition, what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: condition(self), HANG_BOUND_SECONDS), what

    @property
    def held(self) -> int:
        return self._held

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def respond(self, original, request):
        with self._changed:
            self._in_flight += 1
        try:
            return self._respond(original, request)
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def _respond(self, original, request):
        response = original(request)
        if request.method not in WRITES or response is DROP_CONNECTION:
            return response
        if response.status >= 400:
            with self._changed:
                self.rejected.append((request.method, request.path, response.status))
            return response
        with self._changed:
            self.applied.append((request.method, request.path, request.headers.get("X-Tenant-Id"),
                                 json.loads(request.body or b"{}")))
            hold = self._hold_from is not None and len(self.applied) >= self._hold_from
            release = self._release
            if hold:
                self._held += 1
                self._changed.notify_all()
        if hold:
            release.wait(HANG_BOUND_SECONDS)  # the client is killed meanwhile; the answer goes nowhere
            with self._changed:
                self._held -= 1
        return response


def start_provision(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.out"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            [CLI, "provision", "--json"], env=os.environ.copy(), stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we kill exactly what we started
        )
    return process, out


@dataclass
class KilledRun:
    statuses: dict[str, str]  # request_id -> status, as the kill left the working file
    write_sent: Counter  # request_id -> write_sent events recorded
    recovered: dict[str, set[str]]  # run_id -> requests that run recovered
    applied_before_kill: list[tuple]  # writes LangSmith applied from the killed run (and before)
    held: list[tuple]  # writes LangSmith applied whose answer the killed run never got


def kill_mid_write(tmp_path: Path, database, gate: WriteGate, name: str, nth_next_write: int,
                   held_at_once: int) -> KilledRun:
    """Start a provisioning run, kill -9 it once LangSmith applied ``held_at_once`` writes whose
    answers the gate holds (from the ``nth_next_write``-th write of this run on), and return the
    working file as the kill left it."""
    gate.hold_from(nth_next_write)
    first_held = len(gate.applied) + nth_next_write - 1
    process, out = start_provision(tmp_path, name)
    try:
        gate.wait_for(lambda g: g.held >= held_at_once or process.poll() is not None,
                      f"{name}: {held_at_once} held writes")
        assert process.poll() is None, f"{name} ended before its write was held:\n{out.read_text()}"
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # Free the held answers, and let anything the dead process had sent finish at the sandbox,
    # before anyone looks at LangSmith or starts the next run.
    gate.release()
    gate.wait_for(lambda g: g.in_flight == 0, f"{name}: the sandbox finishes the dead run's requests")
    assert not database.is_busy(), "the kernel released the writer lease of the killed run"
    # Every write from the first held one on was held: the dead run never got its answer.
    return KilledRun(*working_state(database, tmp_path), list(gate.applied), gate.applied[first_held:])


def working_state(database, tmp_path: Path) -> tuple[dict, Counter, dict]:
    """Statuses, write_sent counts and recoveries in the working file as the killed run left it,
    read from a copy (with its WAL) so the next run finds the files exactly as the kill left them."""
    copy_dir = tmp_path / "inspect"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir()
    for source in database.path.parent.glob(database.working_path.name + "*"):
        shutil.copyfile(source, copy_dir / source.name)
    with duckdb.connect(str(copy_dir / database.working_path.name)) as conn:
        statuses = dict(conn.execute("SELECT request_id, status FROM main.provisioning_requests").fetchall())
        write_sent = Counter(dict(conn.execute(
            "SELECT request_id, count(*) FROM main.provisioning_events WHERE kind = 'write_sent' "
            "GROUP BY ALL").fetchall()))
        recovered = recoveries(conn)
    return statuses, write_sent, recovered


def recoveries(conn) -> dict[str, set[str]]:
    """run_id -> the requests that run took over from a run that died."""
    by_run: dict[str, set[str]] = {}
    for run_id, request_id in conn.execute(
            "SELECT run_id, request_id FROM main.provisioning_events WHERE kind = 'recovered'").fetchall():
        by_run.setdefault(run_id, set()).add(request_id)
    return by_run


@pytest.mark.parametrize("batch", ["one thread", "several threads"])
def test_kill_9_mid_batch_twice_then_duplicates_then_recovery(start_env, tmp_path, batch):
    sandbox, org, database = start_env(faults=FaultConfig(latency_ms=60))
    workspace_roles = [r.id for r in org.roles_by_scope("workspace")]
    shared = org.shared_workspaces()
    # One thread: 12 requests, read one by one. Several: 64 requests, which the provisioner
    # splits over threads (REQUESTS_PER_THREAD) and reads through org listings.
    adds, changes, revokes = (6, 3, 3) if batch == "one thread" else (40, 12, 12)
    adds_in = shared[2]
    outsiders = [m for m in org.active_members() if m.ls_user_id not in adds_in.memberships][:adds]
    insiders = [(ws, m) for ws in shared[3:] for m in sorted(ws.memberships.values(), key=lambda m: m.id)]
    insiders = insiders[:changes + revokes]
    assert len(outsiders) == adds and len(insiders) == changes + revokes
    identity_owner = {m.id: m.ls_user_id for _, m in insiders}
    wanted = {}  # (workspace, user) -> the role LangSmith must end with (None: not a member)
    changes_to_queue = []
    for member in outsiders:
        wanted[(adds_in.id, member.ls_user_id)] = workspace_roles[0]
        changes_to_queue.append(ChangeRequest("grant", member.ls_user_id, adds_in.id, workspace_roles[0], "kill-9 test"))
    for ws, membership in insiders[:changes]:
        new_role = next(r for r in workspace_roles if r != membership.role_id)
        wanted[(ws.id, membership.ls_user_id)] = new_role
        changes_to_queue.append(ChangeRequest("grant", membership.ls_user_id, ws.id, new_role))
    for ws, membership in insiders[changes:]:
        wanted[(ws.id, membership.ls_user_id)] = None
        changes_to_queue.append(ChangeRequest("revoke", membership.ls_user_id, ws.id, membership.role_id))
    originals = queue_all(database, changes_to_queue)
    assert all(r.accepted and r.duplicate_of is None for r in originals)
    request_of = {key: result.request_id for key, result in zip(wanted, originals)}  # (workspace, user) -> request
    total = adds + changes + revokes
    assert len(set(request_of.values())) == total

    def target(method, path, workspace, body):
        """The (workspace, user) a write LangSmith applied changes."""
        if method == "POST":
            return workspace, org.member_by_identity_id(body["org_identity_id"]).ls_user_id
        return workspace, identity_owner[path.rsplit("/", 1)[1]]

    def check_killed_run(killed: KilledRun) -> None:
        assert len(killed.statuses) == total
        assert set(killed.statuses.values()) <= {"pending", "in_progress", *FINAL_STATUSES}
        # A write reaches LangSmith only once its request recorded write_sent, so a kill at any
        # instant leaves the next run a trail for every write LangSmith applied.
        applied_targets = Counter(target(*write) for write in killed.applied_before_kill)
        for key in applied_targets:
            assert killed.write_sent[request_of[key]] >= 1, key
        # The held writes: LangSmith applied them, their answers never arrived.
        for write in killed.held:
            assert killed.statuses[request_of[target(*write)]] == "in_progress"

    gate = WriteGate(sandbox)
    # The big batch is killed only while two threads wait on their writes' answers at once.
    held_at_once = 1 if batch == "one thread" else 2

    # Run 1 is killed while LangSmith has applied its 4th write and the answer is on its way.
    first = kill_mid_write(tmp_path, database, gate, "run1", 4, held_at_once)
    check_killed_run(first)
    assert first.recovered == {}
    stuck_after_first = {r for r, status in first.statuses.items() if status == "in_progress"}
    assert stuck_after_first
    # The analysts' copy is published when a run ends: it still shows the queue as it was.
    assert Counter(r["status"] for r in list_requests()) == Counter(pending=total)
    leftovers = sorted(p.name for p in database.path.parent.iterdir())

    # Run 2 starts on the files as the kill left them (WAL, lock file), takes over exactly the
    # requests run 1 left in progress, settles the half-done writes by reading them back, and is
    # killed in turn at its 3rd write.
    second = kill_mid_write(tmp_path, database, gate, "run2", 3, held_at_once)
    check_killed_run(second)
    [(second_run_id, recovered_by_second)] = second.recovered.items()
    assert recovered_by_second == stuck_after_first
    stuck_after_second = {r for r, status in second.statuses.items() if status == "in_progress"}
    assert stuck_after_second

    # Duplicates, spelled differently, while requests are stuck in_progress: each is either
    # the same request again (in flight) or a new one that will find nothing to do.
    resubmitted = []
    queued = {r["request_id"]: r for r in _working_requests(database)}
    # Every settled request and six stuck ones (the big batch has dozens; each is alike).
    in_flight = [o for o in originals if queued[o.request_id]["status"] == "in_progress"]
    settled = [o for o in originals if queued[o.request_id]["status"] != "in_progress"]
    for original in settled + in_flight[:6]:
        row = queued[original.request_id]
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
    request_of[(adds_in.id, extra.ls_user_id)] = extras[0].request_id

    # Run 3 finishes the job.
    third = cli_in_this_process("provision", "--json")
    assert third.returncode == 0, third.stdout + third.stderr
    report = json.loads(third.stdout.splitlines()[-1])
    assert report["success"] is True

    statuses = {r["request_id"]: r for r in list_requests()}
    assert len(statuses) == total + len(resubmitted) + 1
    assert all(r["status"] in FINAL_STATUSES for r in statuses.values())
    assert all(statuses[o.request_id]["status"] == "applied" for o in originals)
    assert all(statuses[r]["status"] == "already_satisfied" for r in resubmitted)
    assert statuses[extras[0].request_id]["status"] == "applied"
    # A write whose answer a kill cut off was settled by reading, not by writing again.
    for write in first.held + second.held:
        assert statuses[request_of[target(*write)]]["status_detail"].startswith("verified"), write

    # LangSmith received exactly one write per change, and none was refused as a repeat.
    per_target = Counter(target(*write) for write in gate.applied)
    assert per_target == Counter({key: 1 for key in wanted}), per_target
    assert gate.rejected == []
    for (workspace_id, user_id), role_id in wanted.items():
        membership = org.membership(workspace_id, user_id)
        assert (membership.role_id if membership else None) == role_id

    # The audit trail: every change has its write_sent; a second one only for a request a kill
    # caught in progress (its first write never reached LangSmith, as per_target shows).
    write_sent = Counter(dict(query(database.path, "SELECT request_id, count(*) FROM main.provisioning_events "
                                                   "WHERE kind = 'write_sent' GROUP BY ALL")))
    assert set(write_sent) == set(request_of.values())
    for request_id, sent in write_sent.items():
        kills_caught_it = (request_id in stuck_after_first) + (request_id in stuck_after_second)
        assert 1 <= sent <= 1 + kills_caught_it, (request_id, sent)
    # Each run took over exactly what the run before it left in progress.
    with duckdb.connect(str(database.path), read_only=True) as conn:
        recovered = recoveries(conn)
    assert recovered.pop(second_run_id) == stuck_after_first
    assert list(recovered.values()) == [stuck_after_second]
    # grants shows LangSmith's state at once.
    for (workspace_id, user_id), role_id in wanted.items():
        rows = query(database.path, "SELECT role_id FROM main.grants WHERE workspace_id = ? AND user_id = ?",
                     [workspace_id, user_id])
        assert rows == ([(role_id,)] if role_id else [])
    print(f"\nkill -9 ({batch}): 2 kills, {len(gate.applied)} writes applied for {len(wanted)} changes, "
          f"{len(statuses)} requests all final; in progress at the kills: {len(stuck_after_first)}, "
          f"{len(stuck_after_second)}; files left by the first kill: {leftovers}")


def queue_all(database, changes: list[ChangeRequest]) -> list:
    """Queue many requests under one writer lease and one publish, as an access review's
    revokes are queued (one request_grant each would publish the analysts' copy each time)."""
    with database.writer_lease("test: queue the batch"):
        database.ensure_working()
        with database.connect() as conn:
            results = [submit_on(conn, change) for change in changes]
        database.publish()
    return results


def _working_requests(database) -> list[dict]:
    with database.writer_lease("test: read the queue"), database.connect() as conn:
        cursor = conn.execute("SELECT request_id, action, user_id, workspace_id, role_id, status "
                              "FROM main.provisioning_requests")
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]


def test_kill_9_between_queuing_expiry_revokes_and_applying_them_revokes_each_once(start_env, tmp_path):
    """Time-bound grants expire: the run that queues their revokes is killed mid-write, with
    revokes queued and not yet applied (one applied by LangSmith, its answer lost). Nothing is
    lost, no grant gets a second revoke, and each revoke reaches LangSmith exactly once: added
    members removed, changed roles restored."""
    sandbox, org, database = start_env(faults=FaultConfig(latency_ms=60))
    roles = {r.display_name: r.id for r in org.roles_by_scope("workspace")}
    workspace = next(ws for ws in org.shared_workspaces()
                     if sum(m.role_id == roles["Editor"] for m in ws.memberships.values()) >= 2)
    outsiders = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships][:4]
    editors = sorted((m for m in workspace.memberships.values() if m.role_id == roles["Editor"]),
                     key=lambda m: m.id)[:2]
    grants = queue_all(database, [
        *(ChangeRequest("grant", m.ls_user_id, workspace.id, "Viewer", duration="1h") for m in outsiders),
        *(ChangeRequest("grant", m.ls_user_id, workspace.id, "Admin", duration="1h") for m in editors),
    ])
    applying = cli_in_this_process("provision", "--json")
    assert applying.returncode == 0, applying.stdout + applying.stderr
    grant_ids = [g.request_id for g in grants]
    assert {r["request_id"]: r["status"] for r in list_requests()} == dict.fromkeys(grant_ids, "applied")
    wanted = {m.ls_user_id: None for m in outsiders} | {m.ls_user_id: roles["Editor"] for m in editors}
    identity_owner = {org.membership(workspace.id, user).id: user for user in wanted}

    # An hour passes: every grant is due (what the clock would do, set in the working file).
    with database.writer_lease("test: the grants' hour has passed"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_requests SET expires_at = now() - INTERVAL 1 MINUTE "
                     f"WHERE request_id IN ({', '.join('?' for _ in grant_ids)})", grant_ids)

    gate = WriteGate(sandbox)
    killed = kill_mid_write(tmp_path, database, gate, "expiry", 2, 1)
    revokes_at_kill = {r: s for r, s in killed.statuses.items() if r not in grant_ids}
    assert len(revokes_at_kill) == len(grant_ids)  # queued, one per grant, before the first write
    assert set(revokes_at_kill.values()) & {"pending", "in_progress"}  # queued, not all applied
    assert len(killed.held) == 1

    for _recovery_then_again in range(2):
        run = cli_in_this_process("provision", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
    requests = list_requests()
    revokes = [r for r in requests if r["parent_request_id"]]
    assert sorted(r["parent_request_id"] for r in revokes) == sorted(grant_ids)  # one each, never two
    assert {(r["status"], r["requested_by"], r["reason"]) for r in revokes} == {
        ("applied", "langsmith-access", "expired")}
    held_user = identity_owner[killed.held[0][1].rsplit("/", 1)[1]]
    [held_revoke] = [r for r in revokes if r["user_id"] == held_user]
    assert held_revoke["status_detail"].startswith("verified")  # settled by reading, not re-sent
    # Said as the write the killed run sent, not as a change someone made since the grant.
    assert held_revoke["status_detail"].startswith(("verified: remove ", "verified: restore ")), held_revoke

    # LangSmith got one write per expired grant: a removal or the role restored.
    per_user = Counter(identity_owner[path.rsplit("/", 1)[1]] for _, path, _, _ in gate.applied)
    assert per_user == Counter(dict.fromkeys(wanted, 1)) and gate.rejected == []
    assert sorted(method for method, *_ in gate.applied) == ["DELETE"] * 4 + ["PATCH"] * 2
    for user, role_id in wanted.items():
        membership = org.membership(workspace.id, user)
        assert (membership.role_id if membership else None) == role_id
