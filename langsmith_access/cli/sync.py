"""``langsmith-access sync``: one full sync through the Dagster job the schedule runs."""

from __future__ import annotations

import argparse
import sys

from langsmith_access.cli.common import UsageError, failure_log_directory, print_fix_and_log
from langsmith_access.names import INVENTORY_JOB
from langsmith_access.settings import Settings
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.sections import section_reads
from langsmith_access.store.sync_runs import succeeded_sync_run


def add_commands(commands: argparse._SubParsersAction) -> None:
    sync = commands.add_parser(
        "sync", help="one full sync: extract, transform, checks, then publish the analysts' database"
    )
    sync.add_argument(
        "--accept-shrink",
        action="store_true",
        help="accept a drop in members or grants beyond the shrink guard's share, for this run",
    )
    sync.add_argument(
        "--max-shrink-share",
        type=float,
        default=None,
        help=f"largest allowed drop in members or grants, 0..1 (default {Settings.max_shrink_share}, "
        "or LANGSMITH_ACCESS_MAX_SHRINK_SHARE)",
    )
    sync.add_argument(
        "--membership-route",
        choices=["auto", "enriched_members", "workspace_members"],
        default=None,
        help="how to read workspace memberships (default: auto, the cheapest that works)",
    )
    sync.add_argument(
        "--all-sections",
        action="store_true",
        help="the whole access picture: the sync, then the inventory (credentials, access policies, "
        "service accounts, SSO settings, the audit log; otherwise on its own schedule)",
    )
    sync.add_argument("--quiet", action="store_true", help="no progress lines")
    sync.add_argument(
        "--verbose", action="store_true", help="also print a failure's stack traces (always in the log file)"
    )
    sync.set_defaults(handler=run_sync)


def run_sync(args: argparse.Namespace) -> int:
    # Deferred on purpose: the runner loads Dagster and the definitions (seconds); other
    # commands never pay for them.
    from langsmith_access import runner

    settings = Settings.from_env()
    settings.client()  # refuse a missing or unusable key before starting anything
    if args.max_shrink_share is not None and not 0 <= args.max_shrink_share <= 1:
        raise UsageError("--max-shrink-share must be between 0 and 1 (0.2 = 20%)")
    print(f"Syncing {settings.endpoint} into {settings.duckdb_path}", file=sys.stderr)
    outcome = runner.run_job(
        runner.SYNC_JOB,
        runner.sync_run_config(
            accept_shrink=args.accept_shrink,
            max_shrink_share=args.max_shrink_share,
            membership_route=args.membership_route,
        ),
        progress=None if args.quiet else runner.print_progress(),
        log_dir=failure_log_directory(settings),
        verbose=args.verbose,
    )
    if not outcome.success:
        _print_failure("Sync", outcome)
        print(
            "The analysts' database and its history were left as they were.", file=sys.stderr
        )
        return 1
    with AccessDatabase(settings.duckdb_path).read_published() as conn:
        summary = succeeded_sync_run(conn, outcome.run_id)
        sections = section_reads(conn, outcome.run_id)
    anonymity = (
        "  the members answer was anonymity-restricted: withheld emails/names kept from the "
        "previous sync where known\n"
        if summary.get("anonymity_restricted")
        else ""
    )
    print(
        f"Sync {outcome.run_id} succeeded in {outcome.duration_seconds:.1f} s "
        f"({summary['membership_route']} route)\n"
        f"  route: {summary['membership_route']}, because {summary.get('route_reason') or 'n/a'}\n"
        f"{anonymity}"
        f"  users {summary['users']}, pending invites {summary['pending_invites']}, "
        f"workspaces {summary['workspaces']}, roles {summary['roles']}\n"
        f"  entitlements {summary['entitlements']}, grants {summary['grants']} "
        f"({summary['workspace_grants']} workspace grants)\n"
        f"  API calls {summary['api_calls']}, retries {summary['api_retries']}, "
        f"rate limited {summary['api_rate_limited']}, waited {summary['api_wait_seconds']:.1f} s\n"
        + "".join(f"  {read.describe()}\n" for read in sections)
        + f"  published to {settings.duckdb_path}"
    )
    if args.all_sections:
        return run_inventory(args, settings)
    return 0


def run_inventory(args: argparse.Namespace, settings: Settings) -> int:
    """The inventory job after a sync (``sync --all-sections``), with what each section read or
    why it was skipped."""
    # Deferred on purpose, as in run_sync.
    from langsmith_access import runner

    print("Reading the inventory (credentials, access policies, service accounts, SSO, audit log)",
          file=sys.stderr)
    outcome = runner.run_job(
        INVENTORY_JOB,
        {},
        progress=None if args.quiet else runner.print_progress(),
        log_dir=failure_log_directory(settings),
        verbose=args.verbose,
    )
    if not outcome.success:
        _print_failure("Inventory", outcome)
        print(
            "The sync above was published; the inventory's tables were left as the previous "
            "inventory published them.",
            file=sys.stderr,
        )
        return 1
    with AccessDatabase(settings.duckdb_path).read_published() as conn:
        summary = succeeded_sync_run(conn, outcome.run_id)
        sections = section_reads(conn, outcome.run_id)
    print(
        f"Inventory {outcome.run_id} succeeded in {outcome.duration_seconds:.1f} s\n"
        + "".join(f"  {read.describe()}\n" for read in sections)
        + f"  API calls {summary['api_calls']}, retries {summary['api_retries']}, "
        f"rate limited {summary['api_rate_limited']}, waited {summary['api_wait_seconds']:.1f} s\n"
        f"  published to {settings.duckdb_path}"
    )
    return 0


def _print_failure(what: str, outcome) -> None:
    print(f"{what} failed: {outcome.failure}", file=sys.stderr)
    for check in outcome.failed_checks:
        print(f"  failed check {check}", file=sys.stderr)
    for line in outcome.dbt_errors:
        print(f"  dbt: {line}", file=sys.stderr)
    print_fix_and_log(outcome)
