"""The core sync's `dbt build` alone, on a synced org: what dbt and DuckDB cost, and variants
of the profile compared side by side.

    .venv/bin/python benchmarks/dbt_build_bench.py                      # 20,000 members, 5 builds
    .venv/bin/python benchmarks/dbt_build_bench.py --variant threads1='--threads 1' \\
        --variant duck1='threads: 1' --repeat 5 --sql-time

Syncs the sync benchmark's org once with the real CLI (so the working file holds what a warm
sync's build starts from), then, ``--repeat`` rounds of: for each variant, copy the working file
and run the build the core sync runs (``transform.build`` with the inventory's models left out)
in this process, as the sync's dbt step does. The first round warms each variant's saved parse
and is not counted. A variant is ``name=CHANGE``: a change that starts with ``--`` is added to
dbt's command line (``--threads 1``); otherwise it is a line added to the profile's DuckDB
``settings`` (``threads: 1``). ``base`` (the packaged profile, as is) always runs.

``--sql-time``: also times every statement dbt sends to DuckDB, to split a build into SQL and
dbt's own Python (the statements are timed where dbt-duckdb executes them).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import DefaultsShown, cli_env, machine_line, rounds, run_cli, size, start_sandbox, temporary_workdir

from langsmith_access.transform import invocation, project
from langsmith_access.transform.selection import INVENTORY_SELECTOR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    parser.add_argument("--repeat", type=rounds, default=5, help="counted builds of each variant")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=CHANGE")
    parser.add_argument("--sql-time", action="store_true")
    args = parser.parse_args()
    variants = {"base": ""}
    for spec in args.variant:
        name, _, change = spec.partition("=")
        if not name or not change:
            parser.error(f"--variant {spec!r}: write NAME=CHANGE, e.g. threads1='--threads 1'")
        if name in variants:  # would replace it: base is the packaged profile, always run
            parser.error(f"--variant {spec!r}: {name!r} is taken; give each variant its own name")
        variants[name] = change

    print(f"Machine: {machine_line()}", flush=True)
    workdir = temporary_workdir("langsmith-access-dbt-build-")
    try:
        working = sync_once(workdir, args.members, args.workspaces)
        statements = time_statements() if args.sql_time else None
        walls: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.repeat + 1):
            for name, change in variants.items():
                wall, nodes, sql = build_once(workdir, working, name, change, statements)
                label = "warm-up" if round_ == 0 else f"round {round_}"
                detail = f", SQL {sql:.2f} s" if sql is not None else ""
                print(f"  {name} {label}: {wall:.2f} s, {nodes} nodes{detail}", flush=True)
                if round_:
                    walls[name].append(wall)
        print()
        for name, values in walls.items():
            print(f"{name}: median {statistics.median(values):.2f} s "
                  f"({', '.join(f'{value:.1f}' for value in values)})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def sync_once(workdir: Path, members: int, workspaces: int) -> Path:
    """A synced working file of the benchmark's org (two syncs, so it is a warm one's start)."""
    sandbox = start_sandbox(members=members, workspaces=workspaces, pending_invites=members // 40,
                            latency_ms=20.0, rate_limit_per_minute=2_000)
    try:
        env = cli_env(sandbox, workdir / "access.duckdb")
        for _ in range(2):
            result = run_cli(["sync", "--quiet"], env, sandbox)
            if not result.ok:
                raise SystemExit(f"the sync failed:\n{result.stderr}")
    finally:
        sandbox.stop()
    return workdir / "access.working.duckdb"


def build_once(workdir: Path, working: Path, name: str, change: str,
               statements: collections.Counter | None) -> tuple[float, int, float | None]:
    database = workdir / f"{name}.duckdb"
    shutil.copyfile(working, database)
    dbt_dir = workdir / f"{name}.dbt"
    profile = project.write_profile(dbt_dir, database) / project.PROFILES_FILE
    extra_args = change.split() if change.startswith("--") else []
    if change and not extra_args:  # a line for the profile's DuckDB settings
        marker = "      settings:\n"
        text = profile.read_text()
        assert marker in text, "the packaged profile has no DuckDB settings block"
        profile.write_text(text.replace(marker, f"{marker}        {change}\n"))
    args = ["build", *invocation.build_selection((), [INVENTORY_SELECTOR]), "--no-write-json", *extra_args]
    if statements is not None:
        statements.clear()
    started = time.perf_counter()
    # Not run_dbt: it would write the packaged profile again over the variant's.
    build = invocation.DbtInvocation(
        args, invocation.dbt_command(args, dbt_dir), timeout_seconds=None
    ).raise_on_failure()
    wall = time.perf_counter() - started
    database.unlink()
    return wall, len(build.results), (sum(statements.values()) if statements is not None else None)


def time_statements() -> collections.Counter:
    """Time every statement dbt-duckdb executes (all threads), in a Counter of seconds."""
    from dbt.adapters.duckdb.environments import local

    seconds: collections.Counter = collections.Counter()
    lock = threading.Lock()
    execute = local.DuckDBCursorWrapper.execute

    def timed(self, sql, bindings=None):
        started = time.perf_counter()
        try:
            return execute(self, sql, bindings)
        finally:
            with lock:
                seconds["sql"] += time.perf_counter() - started

    local.DuckDBCursorWrapper.execute = timed
    return seconds


if __name__ == "__main__":
    sys.exit(main())
