"""What storing a sync's Dagster events costs: one small sync in this process, then its events
stored again into a new event log, timed, and once under cProfile.

    .venv/bin/python benchmarks/event_log_bench.py              # 3 timed rounds
    .venv/bin/python benchmarks/event_log_bench.py --top 40     # and the profile's top functions

The number of events does not depend on the org's size (a materialization or a check result per
dbt node, and the run's own), so a 30-member org stands for any. The event log is the runner's
(``runner.OneConnectionEventLogStorage``, what every CLI run uses).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    DefaultsShown,
    machine_line,
    rounds,
    size,
    start_sandbox,
    temporary_workdir,
    use_sandbox_environment,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--repeat", type=rounds, default=3)
    parser.add_argument("--top", type=size, default=0, help="print the profile's top N functions")
    args = parser.parse_args()
    print(f"Machine: {machine_line()}", flush=True)
    sandbox = start_sandbox(members=30, workspaces=4, pending_invites=2, latency_ms=0.0,
                            rate_limit_per_minute=None)
    workdir = temporary_workdir("langsmith-access-event-log-")
    try:
        use_sandbox_environment(sandbox, workdir / "access.duckdb")
        from langsmith_access import runner
        from langsmith_access.names import SYNC_JOB

        instance = runner.ephemeral_instance()
        outcome = runner.run_job(SYNC_JOB, runner.sync_run_config(), dagster_instance=instance)
        assert outcome.success, outcome.failure
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    events = [record.event_log_entry
              for record in instance.get_records_for_run(outcome.run_id, limit=100_000).records]
    print(f"{len(events)} events stored by one sync")

    for round_ in range(1, args.repeat + 1):
        storage = runner.OneConnectionEventLogStorage()
        wall, cpu = time.perf_counter(), time.process_time()
        for event in events:
            storage.store_event(event)
        print(f"  round {round_}: {time.perf_counter() - wall:.3f} s wall, "
              f"{time.process_time() - cpu:.3f} s CPU", flush=True)
    if args.top:
        storage = runner.OneConnectionEventLogStorage()
        profile = cProfile.Profile()
        profile.enable()
        for event in events:
            storage.store_event(event)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
