"""The provisioning refresh alone (``transform.history.rebuild_history``, what a provisioning run
does after its writes): the scoped models replacing only the changed users' rows, against the
same refresh writing every table whole.

    .venv/bin/python benchmarks/refresh_bench.py                  # 20,000 members, 5 rounds
    .venv/bin/python benchmarks/refresh_bench.py --changed-users 200

Syncs the sync benchmark's org once with the real CLI, then, ``--repeat`` rounds of: for each
variant, copy the working file, record ``--changed-users`` verified role changes in it (as a
provisioning run's requests would: one observation each, a member of a workspace given another
role), and run the refresh on the copy in this process. ``scoped`` is the packaged behaviour;
``whole`` is the same build with no users listed for the scoped models (as before they
existed). The first round warms dbt's caches and is not counted. Prints each variant's median
and checks that both variants leave the same rows in every table the refresh builds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import DefaultsShown, cli_env, machine_line, rounds, run_cli, size, start_sandbox, temporary_workdir

from langsmith_access.transform import history

COMPARED = ("grants", "effective_access", "effective_permissions", "report_implicit_admins", "review_sheet",
            "grant_history")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    parser.add_argument("--changed-users", type=size, default=1)
    parser.add_argument("--repeat", type=rounds, default=5)
    parser.add_argument("--keep", default=None, metavar="DIR", help="where to copy both files when they differ")
    args = parser.parse_args()
    if args.keep and not Path(args.keep).is_dir():  # found so only when copying, after every round
        parser.error(f"--keep {args.keep}: no such directory; make it first")

    print(f"Machine: {machine_line()}", flush=True)
    workdir = temporary_workdir("langsmith-access-refresh-")
    try:
        working = sync_once(workdir, args.members, args.workspaces)
        target = working.with_name("access.dbt")  # the sync's parse, as a provisioning run finds it
        # After the sync, and the same in every copy (ids and time), so the variants' rows compare.
        changes = changed_memberships(working, args.changed_users, datetime.now(UTC))
        walls: dict[str, list[float]] = {"scoped": [], "whole": []}
        built: dict[str, Path] = {}
        for round_ in range(args.repeat + 1):
            for name in walls:
                scratch = working.with_name("access.sync-scratch.duckdb")
                shutil.copyfile(working, scratch)
                record(scratch, changes)
                limit = history.MAX_REFRESH_SCOPE_USERS
                history.MAX_REFRESH_SCOPE_USERS = limit if name == "scoped" else 0
                try:
                    started = time.perf_counter()
                    history.rebuild_history(scratch, target, unused_days=90)
                    wall = time.perf_counter() - started
                finally:
                    history.MAX_REFRESH_SCOPE_USERS = limit
                label = "warm-up" if round_ == 0 else f"round {round_}"
                print(f"  {name} {label}: {wall:.2f} s", flush=True)
                if round_:
                    walls[name].append(wall)
                built[name] = scratch.replace(workdir / f"{name}.duckdb")
        print()
        for name, values in walls.items():
            print(f"{name}: median {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})")
        differing = {table: n for table in COMPARED if (n := differences(built["scoped"], built["whole"], table))}
        print(f"Same rows in {', '.join(COMPARED)} (last round): "
              f"{'yes' if not differing else f'NO, rows differing: {differing}'}")
        if differing and args.keep:
            kept = Path(args.keep)
            for name, path in built.items():
                shutil.copyfile(path, kept / f"{name}.duckdb")
        return 0 if not differing else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def sync_once(workdir: Path, members: int, workspaces: int) -> Path:
    sandbox = start_sandbox(members=members, workspaces=workspaces, pending_invites=members // 40,
                            latency_ms=20.0, rate_limit_per_minute=2_000)
    try:
        result = run_cli(["sync", "--quiet"], cli_env(sandbox, workdir / "access.duckdb"), sandbox)
        if not result.ok:
            raise SystemExit(f"the sync failed:\n{result.stderr}")
    finally:
        sandbox.stop()
    return workdir / "access.working.duckdb"


def changed_memberships(database: Path, users: int, verified_at: datetime) -> list[tuple]:
    """``users`` members each given another workspace role, as the observations a provisioning
    run records when it has verified them."""
    with duckdb.connect(str(database), read_only=True) as conn:
        memberships = conn.execute(
            "SELECT g.workspace_id, g.user_id, g.workspace_identity_id, "
            "(SELECT min(r.role_id) FROM main.roles r WHERE r.access_scope = 'workspace' AND r.role_id <> g.role_id) "
            "FROM main.grants g WHERE g.entitlement_type = 'workspace_role' ORDER BY g.grant_id LIMIT ?",
            [users]).fetchall()
    run_id = str(uuid.uuid4())
    return [(str(uuid.uuid4()), str(uuid.uuid4()), run_id, verified_at, workspace_id, user_id, role_id, identity_id,
             "verified")
            for workspace_id, user_id, identity_id, role_id in memberships]


def record(database: Path, changes: list[tuple]) -> None:
    with duckdb.connect(str(database)) as conn:
        conn.executemany("INSERT INTO raw.provisioning_observations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", changes)


def differences(left: Path, right: Path, table: str) -> int:
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        conn.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        return conn.execute(
            f"SELECT (SELECT count(*) FROM (SELECT * FROM l.main.{table} EXCEPT ALL SELECT * FROM r.main.{table})) "
            f"+ (SELECT count(*) FROM (SELECT * FROM r.main.{table} EXCEPT ALL SELECT * FROM l.main.{table}))"
        ).fetchone()[0]


if __name__ == "__main__":
    sys.exit(main())
