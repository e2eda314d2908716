"""``langsmith-access sync``: one full sync through the Dagster job the schedule runs, for one
org (``--org``) or for each org in turn (``--all-orgs``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from langsmith_access.cli.common import (
    UsageError,
    add_org_argument,
    choose_org,
    failure_log_directory,
    os_error_text,
    print_fix_and_log,
)
from langsmith_access.governance.drift import unexplained_changes
from langsmith_access.governance.notifications import notify_sync_not_started
from langsmith_access.names import INVENTORY_JOB
from langsmith_access.provisioning.expiry import unlisted_org_warnings
from langsmith_access.settings import Org, Settings, SettingsError, load_orgs, mask_key_fragments
from langsmith_access.store.database import AccessDatabase, DatabaseBusyError, DatabaseUnusableError
from langsmith_access.store.queries import users_without_email
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
    sync.add_argument("--quiet", action="store_true",
                      help="no progress lines (only the summary, and what failed)")
    sync.add_argument(
        "--verbose", action="store_true", help="also print a failure's stack traces (always in the log file)"
    )
    add_org_argument(sync)
    sync.add_argument(
        "--all-orgs", action="store_true",
        help="sync every org of the orgs file, one after the other; exit 1 naming those that failed "
        "(after trying all of them)",
    )
    # A sync raises change.unexplained and sync.failed: POSTed when it is done.
    sync.set_defaults(handler=run_sync)


def run_sync(args: argparse.Namespace) -> int:
    if args.max_shrink_share is not None and not 0 <= args.max_shrink_share <= 1:
        raise UsageError("--max-shrink-share must be between 0 and 1 (0.2 = 20%)")
    if args.all_orgs and args.org is not None:
        raise UsageError("--org and --all-orgs do not go together: name one org, or all of them.")
    # A bad orgs file stops here, before any request (exit 1). An org whose key variable is
    # unset is refused by its own org.client() below: with --all-orgs the others still sync.
    orgs = load_orgs(refuse_unusable_keys=False)
    if not args.all_orgs:
        org = choose_org(orgs, args.org)
        refuse_a_keyless_org(org, lead="")  # before starting anything
        try:
            return 0 if sync_org(org, args, named=orgs.source is not None) else 1
        except _Interrupted:
            return 1
    failed: list[str] = []
    for position, org in enumerate(orgs):
        try:
            refuse_a_keyless_org(org, lead=f"[{org.slug}] ")
            synced = sync_org(org, args, named=True)
        except (SettingsError, DatabaseBusyError, duckdb.Error, OSError) as error:
            # This org's trouble only (its key, its database): the others still sync.
            text = os_error_text(error) if isinstance(error, OSError) else str(error)
            print(f"[{org.slug}] error: {mask_key_fragments(text)}", file=sys.stderr)
            synced = False
        except _Interrupted:
            # Ctrl-C (or a signal) stopped this org's run: it stops the command, not only this org.
            left = [other.slug for other in list(orgs)[position + 1:]]
            print(f"Interrupted while syncing {org.slug}" + (f"; not synced: {', '.join(left)}" if left else "")
                  + (f"; failed before: {', '.join(failed)}" if failed else "")
                  + ". Each org's database was left as its last finished sync published it.", file=sys.stderr)
            return 1
        if not synced:
            failed.append(org.slug)
    count = f"{len(orgs)} org" + ("s" if len(orgs) != 1 else "")
    # Last, where the operator reads the outcome: an org the file no longer names.
    for warning in unlisted_org_warnings(orgs):
        print(f"warning: {warning}", file=sys.stderr)
    if failed:
        others = "the others synced" if len(failed) < len(orgs) else "none synced"
        print(f"Sync failed for {len(failed)} of {count}: {', '.join(failed)} "
              f"({others}; each failed org's database was left as it was).", file=sys.stderr)
        return 1
    print(f"{'All ' if len(orgs) != 1 else ''}{count} synced: {', '.join(orgs.slugs)}.", file=sys.stderr)
    return 0


def refuse_a_keyless_org(org: Org, *, lead: str) -> None:
    """Raise ``SettingsError`` (what ``org.client()`` says) when ``org`` has no usable key. Its
    ``sync.failed`` is recorded first, as the sync schedule's tick records it: a cron running this
    command is the schedule of an install without Dagster's daemon, and a key gone from it would
    otherwise leave the org's tables, and the alerts they drive, silently as they were."""
    try:
        org.client()
    except SettingsError as problem:
        unrecorded = notify_sync_not_started(org, str(problem), scheduled_at=datetime.now(UTC),
                                             asked="asked for by `langsmith-access sync` at")
        if unrecorded:
            print(f"{lead}{unrecorded}", file=sys.stderr)
        raise


class _Interrupted(Exception):
    """A run that Ctrl-C (or a signal) stopped under way, its failure already printed: it ends the
    command, where another failure of one org (``sync --all-orgs``) lets the others sync."""


def sync_org(org: Org, args: argparse.Namespace, *, named: bool) -> bool:
    """One sync of ``org``, its progress and summary printed (each line led by the org's slug
    when ``named``); True when it succeeded."""
    settings = org.settings
    lead = f"[{org.slug}] " if named else ""
    # First, so the operator sees the sync start before the imports below take their seconds.
    if not args.quiet:
        print(f"{lead}Syncing {settings.endpoint} into {settings.duckdb_path}", file=sys.stderr)
    # Deferred on purpose: the runner loads Dagster and the definitions (seconds); other
    # commands never pay for them.
    from langsmith_access import runner

    outcome = runner.run_job(
        runner.SYNC_JOB,
        runner.sync_run_config(
            accept_shrink=args.accept_shrink,
            max_shrink_share=args.max_shrink_share,
            membership_route=args.membership_route,
            settings=settings,
        ),
        org=org,
        progress=None if args.quiet else runner.print_progress(),
        log_dir=failure_log_directory(settings),
        verbose=args.verbose,
    )
    if not outcome.success:
        _print_failure(f"{lead}Sync", outcome)
        if AccessDatabase(settings.duckdb_path).path.exists():
            print("The analysts' database and its history were left as they were.", file=sys.stderr)
        else:
            print("Nothing was published: there is no analysts' database yet.", file=sys.stderr)
        if outcome.interrupted:
            raise _Interrupted
        return False
    try:
        with AccessDatabase(settings.duckdb_path).read_published() as conn:
            summary = succeeded_sync_run(conn, outcome.run_id)
            sections = section_reads(conn, outcome.run_id)
            drift = unexplained_changes(conn, outcome.run_id)
            emails_unknown = users_without_email(conn) if summary.get("anonymity_restricted") else 0
    except (DatabaseBusyError, DatabaseUnusableError, duckdb.Error) as error:
        _print_unread_summary(f"{lead}Sync", outcome, settings.duckdb_path, error)
        return run_inventory(org, args, lead) if args.all_sections else True
    privileged = sum(change.is_privileged for change in drift)
    drift_line = (
        f"  drift: {len(drift)} change(s) no applied request explains"
        + (f", {privileged} of them to Admin rights (check unexplained_privileged_changes warns)"
           if privileged else "")
        + ": see main.report_unexplained_changes\n"
        if drift else ""
    )
    # On a first sync nothing is kept: the count says what the analysts' tables lack.
    anonymity = (
        "  the members answer was anonymity-restricted: withheld emails/names kept from the "
        "previous sync where known"
        + (f"; {emails_unknown} user(s) with no email known (main.users.email is null)\n"
           if emails_unknown else "; every user's email known\n")
        if summary.get("anonymity_restricted")
        else ""
    )
    print(
        f"{lead}Sync {outcome.run_id} succeeded in {outcome.duration_seconds:.1f} s "
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
        + drift_line
        + f"  published to {settings.duckdb_path}"
    )
    if args.all_sections:
        return run_inventory(org, args, lead)
    return True


def run_inventory(org: Org, args: argparse.Namespace, lead: str) -> bool:
    """The inventory job for ``org`` after its sync (``sync --all-sections``), with what each
    section read or why it was skipped; True when it succeeded."""
    # Deferred on purpose, as in sync_org.
    from langsmith_access import runner

    settings = org.settings
    if not args.quiet:
        print(f"{lead}Reading the inventory (credentials, access policies and resource tags, service accounts, "
              "SSO, audit log)", file=sys.stderr)
    outcome = runner.run_job(
        INVENTORY_JOB,
        {},
        org=org,
        progress=None if args.quiet else runner.print_progress(),
        log_dir=failure_log_directory(settings),
        verbose=args.verbose,
    )
    if not outcome.success:
        _print_failure(f"{lead}Inventory", outcome)
        print(
            "The sync above was published; the inventory's tables were left as the previous "
            "inventory published them.",
            file=sys.stderr,
        )
        if outcome.interrupted:
            raise _Interrupted
        return False
    try:
        with AccessDatabase(settings.duckdb_path).read_published() as conn:
            summary = succeeded_sync_run(conn, outcome.run_id)
            sections = section_reads(conn, outcome.run_id)
    except (DatabaseBusyError, DatabaseUnusableError, duckdb.Error) as error:
        _print_unread_summary(f"{lead}Inventory", outcome, settings.duckdb_path, error)
        return True
    print(
        f"{lead}Inventory {outcome.run_id} succeeded in {outcome.duration_seconds:.1f} s\n"
        + "".join(f"  {read.describe()}\n" for read in sections)
        + f"  API calls {summary['api_calls']}, retries {summary['api_retries']}, "
        f"rate limited {summary['api_rate_limited']}, waited {summary['api_wait_seconds']:.1f} s\n"
        f"  published to {settings.duckdb_path}"
    )
    return True


def _print_unread_summary(what: str, outcome, database: Path, error: Exception) -> None:
    """A run that succeeded and published, whose summary the analysts' copy would not give."""
    print(f"{what} {outcome.run_id} succeeded in {outcome.duration_seconds:.1f} s and was published to "
          f"{database}, but its summary could not be read there: {error}", file=sys.stderr)
    fix = getattr(error, "fix", None)
    if fix:
        print(f"  fix: {fix}", file=sys.stderr)


def _print_failure(what: str, outcome) -> None:
    print(f"{what} failed: {outcome.failure}", file=sys.stderr)
    for check in outcome.failed_checks:
        print(f"  failed check {check}", file=sys.stderr)
    for line in outcome.dbt_errors:
        print(f"  dbt: {line}", file=sys.stderr)
    print_fix_and_log(outcome)
