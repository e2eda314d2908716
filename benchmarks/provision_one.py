"""One queued request, `langsmith-access provision` end to end (issue 13's "provisioning runs that
start fast"): the fixed cost every provisioning run pays, whatever it applies.

    .venv/bin/python benchmarks/provision_one.py               # 20,000 members, 5 runs
    .venv/bin/python benchmarks/provision_one.py --members 2000 --repeat 9

Starts the sandbox in this process (20 ms latency, 2,000 requests a minute per key) with the
sync benchmark's org, syncs it once with the real CLI, then, ``--repeat`` times: queues one grant
(alternately adding a member to a workspace and removing them again, so each run needs exactly
one write), runs `langsmith-access provision` as a child process, and reports

- wall: from starting the CLI to its exit (the request applied, verified, `grants`, every
  report and history rebuilt and published);
- CPU: the CLI's CPU seconds (user and system, its threads and any children it waited for):
  steadier than wall time on a machine shared with other work;
- write at: when the sandbox received the write, from the same start;
- refresh at: when the history refresh step started (from the run's events: the CLI runs with
  ``DAGSTER_HOME`` set, as a deployment does, so its runs are kept in that instance);

and checks that the write reached LangSmith before the refresh started, and that the request
ended `applied`. Prints the medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    DefaultsShown,
    cli_env,
    duration,
    machine_line,
    markdown_table,
    per_minute,
    rounds,
    run_cli,
    size,
    start_sandbox,
    temporary_workdir,
)

from langsmith_access.provisioning import queue
from langsmith_access.store.database import AccessDatabase

WRITES = ("POST", "PATCH", "DELETE")
REFRESH_STEP = "refresh_access_history"  # the op that rebuilds grants, reports and history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    parser.add_argument("--repeat", type=rounds, default=5)
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--rate-limit-per-minute", type=per_minute, default=2_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    print(f"Machine: {machine_line()}", flush=True)
    sandbox = start_sandbox(
        members=args.members, workspaces=args.workspaces, pending_invites=args.members // 40,
        latency_ms=args.latency_ms, rate_limit_per_minute=args.rate_limit_per_minute,
    )
    rows = []
    workdir = temporary_workdir("langsmith-access-provision-one-")  # right before the try that removes it
    try:
        database = AccessDatabase(workdir / "access.duckdb")
        dagster_home = workdir / "dagster_home"
        dagster_home.mkdir()
        env = cli_env(sandbox, database.path, DAGSTER_HOME=str(dagster_home))
        synced = run_cli(["sync", "--quiet"], env, sandbox)
        if not synced.ok:
            raise SystemExit(f"sync failed:\n{synced.stderr[-3000:]}")
        user_id, workspace_id, role_id = _a_member_and_a_workspace_they_are_not_in(database)
        for attempt in range(args.repeat):
            action = "grant" if attempt % 2 == 0 else "revoke"
            request_id = _queue(database, action, user_id, workspace_id, role_id)
            run = run_cli(["provision", "--json"], env, sandbox)
            if not run.ok:
                raise SystemExit(f"provision failed:\n{run.stderr[-3000:]}")
            outcome = json.loads(run.stdout)
            status = {r["request_id"]: r["status"] for r in outcome["requests"]}.get(request_id)
            writes = [e for e in sandbox.request_log.snapshot() if e.method in WRITES]
            write_at = writes[0].at - run.started_at if len(writes) == 1 else None
            refresh_at = _step_started(dagster_home, REFRESH_STEP) - run.started_at
            rows.append({
                "action": action, "wall_seconds": round(run.wall_seconds, 2), "cpu_seconds": round(run.cpu_seconds, 2),
                "write_at": write_at and round(write_at, 2),
                "refresh_at": refresh_at and round(refresh_at, 2),
                "writes": len(writes), "status": status,
                "write_before_refresh": bool(write_at is not None and refresh_at is not None
                                             and write_at < refresh_at),
                "peak_rss_mb": round(run.peak_tree_rss_mb), "load": round(run.load_before, 1),
            })
            print(f"  {action}: {run.wall_seconds:.2f} s wall, {run.cpu_seconds:.2f} CPU s, "
                  f"write at {write_at and round(write_at, 2)} s, "
                  f"refresh at {round(refresh_at, 2)} s, {status}, load {run.load_before:.1f}", flush=True)
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n### One queued request, {args.members:,} members, {args.repeat} runs\n")
    print(markdown_table(
        ["run", "action", "wall s", "CPU s", "write at s", "refresh at s", "writes", "status",
         "write before refresh", "peak RSS MB", "load"],
        [[i + 1, r["action"], r["wall_seconds"], r["cpu_seconds"], r["write_at"], r["refresh_at"], r["writes"],
          r["status"], "yes" if r["write_before_refresh"] else "NO", r["peak_rss_mb"], r["load"]]
         for i, r in enumerate(rows)],
    ))
    median = statistics.median(r["wall_seconds"] for r in rows)
    median_cpu = statistics.median(r["cpu_seconds"] for r in rows)
    ok = all(r["status"] == "applied" and r["writes"] == 1 and r["write_before_refresh"] for r in rows)
    print(f"\nMedian wall: {median:.2f} s, CPU {median_cpu:.2f} s; every request applied with one write, "
          f"each before its refresh: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(
            {"median_wall_seconds": median, "median_cpu_seconds": median_cpu, "runs": rows}, indent=2))
    return 0 if ok else 1


def _a_member_and_a_workspace_they_are_not_in(database: AccessDatabase) -> tuple[str, str, str]:
    with database.read_published() as conn:
        row = conn.execute(
            "SELECT u.user_id, w.workspace_id, r.role_id FROM main.users u, main.workspaces w, "
            "main.roles r WHERE NOT u.is_disabled AND r.access_scope = 'workspace' "
            "AND NOT EXISTS (SELECT 1 FROM main.grants g WHERE g.user_id = u.user_id "
            "AND g.workspace_id = w.workspace_id) ORDER BY u.user_id, w.workspace_id, r.role_id LIMIT 1"
        ).fetchone()
    if row is None:
        raise SystemExit("no member outside some workspace: use a bigger org")
    return row


def _step_started(dagster_home: Path, step_key: str) -> float:
    """When ``step_key`` of the latest provisioning run started (time.time()), from the events
    the run recorded in the instance at ``dagster_home``."""
    import dagster as dg

    from langsmith_access.names import PROVISION_JOB

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (latest,) = instance.get_runs(dg.RunsFilter(job_name=PROVISION_JOB), limit=1)
        for record in instance.all_logs(latest.run_id, of_type=dg.DagsterEventType.STEP_START):
            if record.step_key == step_key:
                return record.timestamp
    raise SystemExit(f"run {latest.run_id} has no step {step_key}")


def _queue(database: AccessDatabase, action: str, user_id: str, workspace_id: str, role_id: str) -> str:
    with database.writer_lease("queue one benchmark request"):
        database.ensure_working()
        with database.connect() as conn:
            result = queue.submit_on(conn, queue.ChangeRequest(
                action, user_id, workspace_id, role_id,
                reason="benchmark", requested_by="provision_one"))
        database.publish()
    if not result.accepted:
        raise SystemExit(f"request refused: {result.message}")
    return result.request_id


if __name__ == "__main__":
    sys.exit(main())
