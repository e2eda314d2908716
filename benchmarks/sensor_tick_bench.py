"""Sensor-tick benchmark: how long one tick of ``provisioning_queue_sensor`` takes with many orgs.

    .venv/bin/python benchmarks/sensor_tick_bench.py                      # 10, 50 and 200 orgs
    .venv/bin/python benchmarks/sensor_tick_bench.py --orgs 10,31 --repeat 1   # quick

An orgs file of N orgs, each with its analysts' copy holding one pending request, and a Dagster
instance of this process (SQLite in a temporary directory; a deployment's is Postgres). For each
N, the median of --repeat ticks in two cases:

- free: every copy can be read; the tick launches a run for each org;
- held: an analyst's session holds every copy read-write (another process), so each read gives up
  after its 2 s; the tick launches nothing and says so for each org it reached (past
  ``TICK_BUDGET_SECONDS`` it names the orgs it did not reach, for the next tick).

Dagster's daemon fails a tick that takes more than 60 s, for every org (DESIGN.md section 11):
the held figure is the one to keep under it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg
from bench_support import DefaultsShown, counts, machine_line, markdown_table, median, rounds, temporary_workdir

from langsmith_access import names
from langsmith_access.definitions import defs  # each defs() reads the orgs file of the environment
from langsmith_access.provisioning import queue
from langsmith_access.settings import ORGS_FILE_VARIABLE
from langsmith_access.store.database import AccessDatabase

HOLD_READ_WRITE = """
import sys, duckdb
held = [duckdb.connect(path) for path in sys.argv[1:]]
print("holding", flush=True)
sys.stdin.readline()
"""


def write_orgs(workdir: Path, count: int) -> list[AccessDatabase]:
    """``count`` orgs in an orgs file under ``workdir``, each with one pending request published."""
    data = workdir / "data"
    slugs = [f"org-{number:03d}" for number in range(count)]
    (workdir / "orgs.yaml").write_text("".join(
        f"- slug: {slug}\n  organization_id: 00000000-0000-4000-8000-{number:012d}\n"
        f"  endpoint: http://127.0.0.1:9\n  api_key_env: BENCH_KEY_{number}\n"
        for number, slug in enumerate(slugs)))
    os.environ[ORGS_FILE_VARIABLE] = str(workdir / "orgs.yaml")
    os.environ["LANGSMITH_ACCESS_DUCKDB"] = str(data / "langsmith_access.duckdb")
    for number in range(count):
        os.environ[f"BENCH_KEY_{number}"] = "lsv2_sk_" + "0" * 32 + f"_{number}"
    databases = []
    for slug in slugs:
        database = AccessDatabase(data / slug / "langsmith_access.duckdb")
        with database.writer_lease("benchmark"):
            database.ensure_working()
            with database.connect() as conn:
                conn.execute("INSERT INTO main.provisioning_requests (request_id, action, status, requested_at, "
                             "updated_at, run_id) VALUES (?, 'grant', 'pending', now(), now(), 'bench')",
                             [queue.new_id()])
            database.publish()
        databases.append(database)
    return databases


def tick_seconds(definitions: dg.Definitions, instance: dg.DagsterInstance) -> tuple[float, int, int]:
    """One tick of the provisioning sensor, from a cleared cursor: (seconds, runs it launches,
    orgs it did not reach within its budget)."""
    context = dg.build_sensor_context(instance=instance, repository_def=definitions.get_repository_def())
    started = time.monotonic()
    result = definitions.resolve_sensor_def(names.PROVISIONING_SENSOR).evaluate_tick(context)
    took = time.monotonic() - started
    left = re.search(r"(\d+) org\(s\) not reached", result.skip_message or "")
    return took, len(result.run_requests or []), int(left.group(1)) if left else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--orgs", type=counts, default=[10, 50, 200], help="org counts, comma-separated")
    parser.add_argument("--repeat", type=rounds, default=3, help="ticks per case (the median is printed)")
    args = parser.parse_args()

    print(machine_line())
    rows = []
    workdir = temporary_workdir("langsmith-access-sensor-tick-")
    try:
        for count in args.orgs:
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            databases = write_orgs(workdir, count)
            definitions = defs()
            with dg.instance_for_test() as instance:
                free = [tick_seconds(definitions, instance) for _ in range(args.repeat)]
                holder = subprocess.Popen([sys.executable, "-c", HOLD_READ_WRITE, *(str(d.path) for d in databases)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                try:
                    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
                    held = [tick_seconds(definitions, instance) for _ in range(args.repeat)]
                finally:
                    holder.communicate("\n", timeout=60)
            rows.append([count, median([tick[0] for tick in free]), free[0][1], median([tick[0] for tick in held]),
                         held[0][1], count - held[0][2]])
            print(json.dumps({"orgs": count, "free_s": rows[-1][1], "held_s": rows[-1][3],
                              "held_reached": rows[-1][5]}), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown_table(["orgs", "tick, copies free (s)", "runs launched", "tick, every copy held (s)",
                          "runs launched", "orgs reached"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
