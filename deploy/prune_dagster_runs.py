"""Delete Dagster's finished runs older than a number of days, with their event logs.

Dagster keeps every run and its events for ever (``retention:`` in dagster.yaml covers schedule
and sensor ticks only): each sync stores some 330 events (every dbt model's materialization and
every check's result), gigabytes a year for one org synced hourly (README "Keeping growth in
check", which gives the figures and the command to run daily as the units' user). Needs only
the instance's environment (dagster.env and DAGSTER_HOME), no LangSmith key.

Only runs that ended (succeeded, failed or canceled) go: a queued or running run, however old,
is what the schedules, the sensors and run monitoring look at, and stays. The org's DuckDB
files keep their own history (``sync_runs``, ``grant_history``, ...): nothing there is touched.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
BATCH = 500  # runs read and deleted at a time: a first prune of a year's runs never holds them all


def prune_runs(instance: dg.DagsterInstance, created_before: datetime) -> int:
    """Delete every finished run created before ``created_before``, with its events; the count."""
    deleted = 0
    while records := instance.get_run_records(
            filters=dg.RunsFilter(created_before=created_before, statuses=FINISHED), limit=BATCH):
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
        deleted += len(records)
    return deleted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--older-than-days", type=float, required=True, metavar="DAYS",
                        help="delete finished runs created more than DAYS days ago (at least 1)")
    args = parser.parse_args(argv)
    if args.older_than_days < 1:
        parser.error(f"--older-than-days {args.older_than_days:g}: keep at least a day of runs (the UI's "
                     "recent history, and a failed run's logs to read): pass 1 or more")
    cutoff = datetime.now(UTC) - timedelta(days=args.older_than_days)
    with dg.DagsterInstance.get() as instance:
        deleted = prune_runs(instance, cutoff)
    print(f"deleted {deleted} finished run(s) created before {cutoff:%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
