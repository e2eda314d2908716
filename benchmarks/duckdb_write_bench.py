"""What DuckDB's writes to the database file cost in the core build's heaviest models, and
which DuckDB settings move it.

    .venv/bin/python benchmarks/duckdb_write_bench.py                 # 20,000 members, 3 rounds
    .venv/bin/python benchmarks/duckdb_write_bench.py --variant nofsst="disabled_compression_methods='fsst'"

Syncs the sync benchmark's org twice with the real CLI, then, ``--repeat`` rounds of: for each
variant, a fresh copy of the synced working file, one DuckDB connection with the profile's
config options (``preserve_insertion_order``, ``memory_limit``), and ``CREATE TABLE ... AS`` the
compiled SQL dbt wrote for each model of ``MODELS`` (the sync's own statements), each timed,
then the close (where a deferred checkpoint lands). Variants:

- ``file``: as the build writes them (always run);
- ``memory``: into an in-memory database, the file attached read-only under its catalog name
  (what the same SQL costs when no table is written to the file);
- ``NAME=SETTING``: ``file`` with ``SET SETTING`` first (``checkpoint_threshold='10GB'``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import DefaultsShown, machine_line, rounds, size, temporary_workdir
from dbt_build_bench import sync_once

# The five heaviest models of the core build at 20,000 members (BENCHMARKS.md), in an order
# their dependencies allow (each reads the tables the working file already has).
# effective_permissions has been a view since 201bd37 (builds no longer write it); its query is
# still written here, so these figures stay comparable with the ones BENCHMARKS.md records.
MODELS = {
    "grants": "marts/grants.sql",
    "effective_access": "marts/effective_access.sql",
    "effective_permissions": "marts/effective_permissions.sql",
    "report_implicit_admins": "reports/report_implicit_admins.sql",
    "review_sheet": "reports/review_sheet.sql",
}
# The profile's config options (dbt_project/profiles.yml), given when the file opens.
PROFILE_CONFIG = {"preserve_insertion_order": False, "memory_limit": "384MB"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    parser.add_argument("--repeat", type=rounds, default=3)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SETTING")
    args = parser.parse_args()
    variants = {"file": None, "memory": None}
    for spec in args.variant:
        name, _, setting = spec.partition("=")
        if not name or not setting or name in variants:
            parser.error(f"--variant {spec!r}: write NAME=SETTING, e.g. ckpt=\"checkpoint_threshold='10GB'\"")
        variants[name] = setting

    print(f"Machine: {machine_line()}", flush=True)
    workdir = temporary_workdir("langsmith-access-duckdb-write-")
    try:
        working = sync_once(workdir, args.members, args.workspaces)
        compiled = workdir / "access.dbt" / "compiled" / "langsmith_access" / "models"
        statements = {model: (compiled / path).read_text() for model, path in MODELS.items()}
        totals: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(1, args.repeat + 1):
            for name, setting in variants.items():
                seconds = write_once(workdir, working, name, setting, statements)
                total = sum(seconds.values())
                totals[name].append(total)
                print(f"  {name} round {round_}: {total:.2f} s ("
                      + ", ".join(f"{model} {value:.2f}" for model, value in seconds.items()) + ")",
                      flush=True)
        print()
        for name, values in totals.items():
            print(f"{name}: median {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def write_once(workdir: Path, working: Path, name: str, setting: str | None,
               statements: dict[str, str]) -> dict[str, float]:
    """Seconds of each model's CREATE TABLE AS, and of the close, on a fresh copy."""
    # The compiled SQL names the catalog "access" (the file's stem): the copy keeps the name.
    copy = workdir / "round" / "access.duckdb"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(working, copy)
    if name == "memory":
        conn = duckdb.connect(":memory:", config=PROFILE_CONFIG)
        conn.execute(f"ATTACH '{copy}' AS access (READ_ONLY)")
        target = "memory.main"
    else:
        conn = duckdb.connect(str(copy), config=PROFILE_CONFIG)
        if setting:
            conn.execute(f"SET {setting}")
        target = "access.main"
    seconds = {}
    try:
        conn.execute("SET TimeZone = 'UTC'")
        for model, sql in statements.items():
            started = time.perf_counter()
            conn.execute(f"CREATE TABLE {target}.{model}__written AS {sql}")
            seconds[model] = time.perf_counter() - started
    finally:
        started = time.perf_counter()
        conn.close()
        seconds["close"] = time.perf_counter() - started
    shutil.rmtree(copy.parent)
    return seconds


if __name__ == "__main__":
    sys.exit(main())
