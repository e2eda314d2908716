"""Time to access (issue 15): from queueing a request (or approving one) to the moment LangSmith
received the write, with a real Dagster daemon running the sensor at its defaults.

    .venv/bin/python benchmarks/time_to_access.py                 # 10 samples of each kind
    .venv/bin/python benchmarks/time_to_access.py --samples 3
    .venv/bin/python benchmarks/time_to_access.py --interval 30   # another sensor interval

Starts the sandbox in this process (20 ms latency, 2,000 requests a minute per key), syncs it
once with the real CLI, then starts ``dagster-daemon run`` in its own process group, with its
own ``DAGSTER_HOME`` (no dagster.yaml: Dagster's defaults, the queued run coordinator and the
default run launcher) and a ``workspace.yaml`` loading ``langsmith_access.definitions``, and an
access policy under which Admin grants in one workspace need approval. After one warm-up
request (not measured: the daemon's first tick loads the code location), ``--samples`` times:

- **queued**: queue a grant (or, every other time, the revoke that undoes it) that needs no
  approval, and measure from the moment it is in the queue (``queue.submit`` returned: queued
  and published) to the moment the sandbox logged the write (``LoggedRequest.at``);
- **approved**: queue an Admin grant that awaits approval, approve it, and measure from the
  moment the approval is recorded to the write (then revoke it, unmeasured).

Each sample is split, from its provisioning run's events, into the sensor's wait (until the run
is enqueued), the run queue (until it is launched), the run worker's start-up (until execution
starts) and the run's ops up to the write.

Each sample waits until its provisioning run has finished (history refreshed) before the next,
so samples never queue behind one another, then a random pause of up to one sensor interval
(seeded), so requests arrive at random points of the sensor's cycle, as real ones do. Prints
each sample, the median and the maximum of each kind, and the CPU the daemon's process tree
(daemon, code server, run workers) used per minute idle (before the samples) and while serving them. The
daemon is stopped by its process group id.

``--interval`` sets ``LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS`` for the daemon; without
it the default of ``settings.py`` applies, which is what the issue asks to measure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    DefaultsShown,
    cli_env,
    duration,
    machine_line,
    markdown_table,
    rounds,
    run_cli,
    size,
    start_sandbox,
    temporary_workdir,
)

from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning import approvals, queue
from langsmith_access.settings import Settings
from langsmith_access.store.database import AccessDatabase

WRITES = ("POST", "PATCH", "DELETE")
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: langsmith_access.definitions
      attribute: defs
"""
SAMPLE_TIMEOUT_SECONDS = 300.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--samples", type=rounds, default=10, help="samples of each kind (queued, approved)")
    parser.add_argument("--members", type=size, default=400)
    parser.add_argument("--workspaces", type=size, default=20)
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--interval", type=rounds, default=None,
                        help="LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS for the daemon "
                        f"(default: unset, i.e. settings.py's {Settings().provisioning_interval_seconds})")
    parser.add_argument("--idle-seconds", type=duration, default=60.0,
                        help="how long to watch the idle daemon's CPU before the samples")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    interval = args.interval or Settings().provisioning_interval_seconds
    print(f"Machine: {machine_line()}", flush=True)
    print(f"Sensor interval: {interval} s ({'--interval' if args.interval else 'the default'})", flush=True)
    sandbox = start_sandbox(members=args.members, workspaces=args.workspaces,
                            pending_invites=args.members // 40, latency_ms=args.latency_ms,
                            rate_limit_per_minute=2_000)
    workdir = temporary_workdir("langsmith-access-time-to-access-")  # right before the try that removes it
    daemon = None
    daemon_log = workdir / "daemon.log"
    samples: list[dict] = []
    try:
        database = AccessDatabase(workdir / "data" / "access.duckdb")
        env = cli_env(sandbox, database.path)
        synced = run_cli(["sync", "--quiet"], env, sandbox)
        if not synced.ok:
            raise SystemExit(f"sync failed:\n{synced.stderr[-3000:]}")
        people = _people(database)
        policy = workdir / "policy.yaml"
        policy.write_text(f'approval:\n  required: ["Admin"]\n  workspaces: ["{people["workspace_id"]}"]\n'
                          "  approvers: workspace_admins\n")

        home = workdir / "dagster_home"
        home.mkdir()
        (workdir / "workspace.yaml").write_text(WORKSPACE_YAML)
        daemon_env = {**env, "DAGSTER_HOME": str(home), "LANGSMITH_ACCESS_POLICY": str(policy)}
        if args.interval:
            daemon_env["LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS"] = str(args.interval)
        with open(daemon_log, "wb") as log:
            daemon = subprocess.Popen(
                [DAEMON, "run", "-w", str(workdir / "workspace.yaml")], cwd=workdir, env=daemon_env,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped by its id, nothing else
            )
        print(f"dagster-daemon started (pid {daemon.pid}); warming up with one request ...", flush=True)
        warm = _measure_queued(database, sandbox, home, daemon, people, "grant", policy)
        print(f"  warm-up (not counted): {warm:.2f} s", flush=True)
        _measure_queued(database, sandbox, home, daemon, people, "revoke", policy)

        idle_cpu = _idle_cpu_per_minute(daemon.pid, args.idle_seconds)
        print(f"Idle daemon tree: {idle_cpu:.1f} CPU s per minute ({idle_cpu / 60 * 100:.1f}% of one core)",
              flush=True)
        cpu_start, wall_start = _tree_cpu_seconds(daemon.pid), time.monotonic()
        phase = random.Random(15)
        for index in range(args.samples):
            action = "grant" if index % 2 == 0 else "revoke"
            time.sleep(phase.uniform(0, interval))
            phases: dict = {}
            seconds = _measure_queued(database, sandbox, home, daemon, people, action, policy, phases)
            samples.append({"kind": "queued", "action": action, "seconds": round(seconds, 2), **phases})
            print(f"  queued {action:<6} {seconds:6.2f} s  {_phase_line(phases)}", flush=True)
        for _ in range(args.samples):
            time.sleep(phase.uniform(0, interval))
            phases = {}
            seconds = _measure_approved(database, sandbox, home, daemon, people, policy, phases)
            samples.append({"kind": "approved", "action": "grant Admin", "seconds": round(seconds, 2), **phases})
            print(f"  approved grant  {seconds:6.2f} s  {_phase_line(phases)}", flush=True)
        busy_cpu = (_tree_cpu_seconds(daemon.pid) - cpu_start) / (time.monotonic() - wall_start) * 60
    finally:
        if daemon is not None:
            _stop(daemon)
            if sys.exc_info()[0] is not None:  # why no write came (a code server that failed...)
                print(f"dagster-daemon's output, last lines:\n{daemon_log.read_text(errors='replace')[-5000:]}",
                      file=sys.stderr)
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n### Time to access, sensor interval {interval} s, {args.samples} samples of each kind\n")
    print(markdown_table(["#", "kind", "action", "seconds", *(f"{p} s" for p in PHASES)],
                         [[i + 1, s["kind"], s["action"], s["seconds"], *(s.get(p, "") for p in PHASES)]
                          for i, s in enumerate(samples)]))
    summary = {}
    for kind in ("queued", "approved"):
        values = [s["seconds"] for s in samples if s["kind"] == kind]
        if values:
            summary[kind] = {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}
            print(f"\n{kind}: median {summary[kind]['median']:.2f} s, max {summary[kind]['max']:.2f} s")
    print(f"\nDaemon tree CPU: idle {idle_cpu:.1f} s per minute, while serving the samples {busy_cpu:.1f} s per minute")
    if args.json:
        args.json.write_text(json.dumps({"interval_seconds": interval, "summary": summary, "samples": samples,
                                         "idle_cpu_seconds_per_minute": idle_cpu,
                                         "busy_cpu_seconds_per_minute": busy_cpu}, indent=2))
    return 0


# ----------------------------------------------------------------------------- the samples


def _phase_line(phases: dict) -> str:
    return ", ".join(f"{name} {phases[name]:.2f}" for name in PHASES if name in phases)


def _people(database: AccessDatabase) -> dict:
    """A shared workspace with a unique name and an Admin (the approver), and a member outside it."""
    with database.read_published() as conn:
        row = conn.execute("""
            SELECT w.workspace_id, admin.email, outsider.user_id,
                   (SELECT role_id FROM main.roles WHERE name = 'WORKSPACE_USER'),
                   (SELECT role_id FROM main.roles WHERE name = 'WORKSPACE_ADMIN')
            FROM main.workspaces w
            JOIN main.grants g ON g.workspace_id = w.workspace_id
            JOIN main.roles r ON r.role_id = g.role_id AND r.name = 'WORKSPACE_ADMIN'
            JOIN main.users admin ON admin.user_id = g.user_id AND NOT admin.is_disabled
            JOIN main.users outsider ON NOT outsider.is_disabled AND outsider.user_id <> admin.user_id
            JOIN main.roles org_role ON org_role.role_id = outsider.org_role_id
                AND org_role.name <> 'ORGANIZATION_ADMIN'
            WHERE (SELECT count(*) FROM main.workspaces o WHERE o.display_name = w.display_name) = 1
              AND NOT EXISTS (SELECT 1 FROM main.grants m WHERE m.user_id = outsider.user_id
                              AND m.workspace_id = w.workspace_id)
            ORDER BY w.workspace_id, admin.email, outsider.user_id LIMIT 1""").fetchone()
    if row is None:
        raise SystemExit("no workspace with an Admin and a member outside it: use a bigger org")
    return dict(zip(("workspace_id", "approver", "user_id", "editor_role_id", "admin_role_id"), row, strict=True))


def _submit(database: AccessDatabase, action: str, people: dict, role_id: str, policy: Path) -> queue.QueueResult:
    result = queue.submit(database, queue.ChangeRequest(
        action, people["user_id"], people["workspace_id"], role_id, reason="benchmark",
        requested_by="time-to-access@example.com"), policy_path=policy, notifier=Notifier.off())
    if not result.accepted:
        raise SystemExit(f"request refused: {result.message}")
    return result


def _measure_queued(database, sandbox, home: Path, daemon: subprocess.Popen, people: dict, action: str, policy: Path,
                    phases: dict | None = None) -> float:
    sandbox.reset_log()
    result = _submit(database, action, people, people["editor_role_id"], policy)
    if result.status != "pending":
        raise SystemExit(f"expected a pending request, got {result.status}: {result.message}")
    queued_at = time.time()
    return _write_seen(sandbox, database, home, daemon, result.request_id, queued_at, phases)


def _measure_approved(database, sandbox, home: Path, daemon: subprocess.Popen, people: dict, policy: Path,
                      phases: dict | None = None) -> float:
    result = _submit(database, "grant", people, people["admin_role_id"], policy)
    if result.status != "awaiting_approval":
        raise SystemExit(f"expected a request awaiting approval, got {result.status}: {result.message}")
    sandbox.reset_log()
    decided = approvals.decide(database, result.request_id, approvals.APPROVED, people["approver"],
                               policy_path=policy, notifier=Notifier.off())
    if not decided.recorded:
        raise SystemExit(f"approval refused: {decided.message}")
    approved_at = time.time()
    seconds = _write_seen(sandbox, database, home, daemon, result.request_id, approved_at, phases)
    # Undo it (revokes need no approval), unmeasured, so the next sample grants again.
    sandbox.reset_log()
    undo = _submit(database, "revoke", people, people["admin_role_id"], policy)
    _write_seen(sandbox, database, home, daemon, undo.request_id, time.time())
    return seconds


# Where the time goes, from the run's events: the sensor's tick (the run enqueued), the run
# queue (dequeued and launched), the run worker's start-up (execution started), the run's ops
# up to the write.
PHASES = ("sensor", "queue", "worker start", "ops to write")


def _write_seen(sandbox, database: AccessDatabase, home: Path, daemon: subprocess.Popen, request_id: str,
                since: float,
                phases: dict | None = None) -> float:
    """Seconds from ``since`` to the sandbox's log of the request's write; then waits for the
    request's run to finish (history refreshed), so the next sample starts from quiet.
    ``phases``: filled with the seconds of each of ``PHASES``. Stops at once if ``daemon`` exits
    (nothing would launch the run: waiting out the timeout only hides why)."""
    deadline = time.monotonic() + SAMPLE_TIMEOUT_SECONDS
    write_at = None
    while time.monotonic() < deadline and write_at is None:
        _daemon_alive(daemon)
        writes = [r for r in sandbox.request_log.snapshot() if r.method in WRITES and r.at >= since]
        if writes:
            write_at = writes[0].at
        else:
            time.sleep(0.05)
    if write_at is None:
        raise SystemExit(f"no write within {SAMPLE_TIMEOUT_SECONDS:.0f} s for request {request_id}")
    while time.monotonic() < deadline:
        _daemon_alive(daemon)
        if _status(database, request_id) in queue.FINAL_STATUSES and not _run_in_flight(home):
            if phases is not None:
                phases.update(_phases(home, _run_id(database, request_id), since, write_at))
            return write_at - since
        time.sleep(0.2)
    raise SystemExit(f"request {request_id} did not settle within {SAMPLE_TIMEOUT_SECONDS:.0f} s")


def _daemon_alive(daemon: subprocess.Popen) -> None:
    if daemon.poll() is not None:
        raise SystemExit(f"dagster-daemon exited (code {daemon.returncode}) while a sample waited: "
                         "its last lines are printed above")


def _run_id(database: AccessDatabase, request_id: str) -> str | None:
    with database.read_published() as conn:
        row = conn.execute("SELECT run_id FROM main.provisioning_requests WHERE request_id = ?",
                           [request_id]).fetchone()
    return row[0] if row else None


def _phases(home: Path, run_id: str | None, since: float, write_at: float) -> dict:
    import dagster as dg

    if run_id is None:
        return {}
    kinds = {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_START}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_records_for_run(run_id, of_type=kinds).records
    at = {r.event_log_entry.dagster_event.event_type_value: r.timestamp for r in records}
    marks = [since, at.get("PIPELINE_ENQUEUED"), at.get("PIPELINE_STARTING"), at.get("PIPELINE_START"), write_at]
    if None in marks:
        return {}
    return {name: round(marks[i + 1] - marks[i], 2) for i, name in enumerate(PHASES)}


def _status(database: AccessDatabase, request_id: str) -> str | None:
    try:
        with database.read_published(timeout_seconds=2) as conn:
            row = conn.execute("SELECT status FROM main.provisioning_requests WHERE request_id = ?",
                               [request_id]).fetchone()
    except Exception:  # busy for a moment: ask again
        return None
    return row[0] if row else None


def _run_in_flight(home: Path) -> bool:
    import dagster as dg

    from langsmith_access.names import PROVISION_JOB

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return bool(instance.get_runs(dg.RunsFilter(
            job_name=PROVISION_JOB, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                              dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]),
            limit=1))


# ------------------------------------------------------------------------- the daemon's CPU


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                continue
    return pids


def _tree_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process of the daemon's group, and of the children they
    waited for (run workers that have ended)."""
    total = 0
    for pid in _group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name
        total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def _idle_cpu_per_minute(pgid: int, seconds: float) -> float:
    start = _tree_cpu_seconds(pgid)
    time.sleep(seconds)
    return (_tree_cpu_seconds(pgid) - start) / seconds * 60


def _stop(daemon: subprocess.Popen, grace_seconds: float = 30.0) -> None:
    """Stop the daemon's process group (the daemon, its code server, any run worker) by its id,
    and wait until every process of it has ended, not only the daemon: a code server or a run
    worker still writing its last events into ``DAGSTER_HOME`` after SIGTERM left files behind
    the caller's ``rmtree``. SIGKILL for what is left after ``grace_seconds``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(daemon.pid, sig)
        except ProcessLookupError:  # the group is gone
            pass
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if daemon.poll() is not None and not _live_group_pids(daemon.pid):
                return
            time.sleep(0.05)
    daemon.wait(timeout=grace_seconds)


def _live_group_pids(pgid: int) -> list[int]:
    """The processes of the group that have not ended (a zombie, waiting to be reaped, has)."""
    live = []
    for pid in _group_pids(pgid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            live.append(pid)
    return live


if __name__ == "__main__":
    sys.exit(main())
