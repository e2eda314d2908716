"""``langsmith-access request``, ``requests`` and ``provision``: the provisioning queue."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from langsmith_access import api
from langsmith_access.cli.common import (
    add_org_argument,
    analysts_database,
    failure_log_directory,
    in_org_terms,
    on_one_line,
    print_fix_and_log,
    renamed_slug_refusal,
    selected_org,
)
from langsmith_access.names import APPLY_REQUESTS_OP, REFRESH_OP
from langsmith_access.provisioning.queue import FINAL_STATUSES, STATUSES, QueueResult, iso_minutes
from langsmith_access.settings import Org
from langsmith_access.store.database import PublishFailedError
from langsmith_access.store.queries import iso_utc

if TYPE_CHECKING:  # the runner imports Dagster (seconds): `requests` and `request` never need it
    from langsmith_access.runner import RunOutcome


def add_commands(commands: argparse._SubParsersAction) -> None:
    request = commands.add_parser("request", help="queue a workspace-role grant or revoke")
    request_actions = request.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, verb in (("grant", "give"), ("revoke", "take away")):
        sub = request_actions.add_parser(action, help=f"queue a request to {verb} a workspace role")
        sub.add_argument("--user", required=True, help="email or user id (ls_user_id)")
        sub.add_argument("--workspace", required=True, help="workspace name or id")
        sub.add_argument(
            "--role", required=True,
            help="role display name (Admin, Editor, Viewer, a custom role), name or id",
        )
        sub.add_argument("--reason", default=None, help="why, kept with the request and its audit trail")
        sub.add_argument(
            "--requested-by", default=None,
            help="who asks (default: your OS user name); an email here is checked against approvers",
        )
        # One or the other, for a grant; both, or either on a revoke, is a bad request like any
        # other: the queue rejects it and records the rejection (argparse would refuse it before
        # anything is recorded).
        sub.add_argument(
            "--duration", default=None,
            help="time-bound: how long from when it is applied, <n>s|m|h|d (e.g. 8h, 30d)"
            if action == "grant" else argparse.SUPPRESS,
        )
        sub.add_argument(
            "--until", default=None,
            help="time-bound: when it ends, ISO 8601 with a zone (2026-12-01T18:00Z); not with --duration"
            if action == "grant" else argparse.SUPPRESS,
        )
        sub.add_argument("--json", action="store_true", help="print a JSON object")
        add_org_argument(sub)
        sub.set_defaults(handler=queue_request)

    listing = commands.add_parser("requests", help="list provisioning requests and their status")
    listing.add_argument(
        # Any case, spaces around: `--status " PENDING"` is the same question.
        "--status", default=None, choices=STATUSES, metavar="S", type=_status,
        help="only the requests in this status: awaiting_approval, pending, in_progress, applied, "
             "already_satisfied, rejected, failed, denied or approval_expired",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list of the requests")
    add_org_argument(listing)
    listing.set_defaults(handler=list_requests)

    provision = commands.add_parser("provision", help="apply every pending request now (same job as the sensor)")
    provision.add_argument("--dry-run", action="store_true", help="plan against live state; change nothing")
    provision.add_argument("--json", action="store_true",
                           help="print a JSON object: the run, and what happened to each request")
    provision.add_argument(
        "--verbose", action="store_true", help="also print a failure's stack traces (always in the log file)"
    )
    add_org_argument(provision)
    provision.set_defaults(handler=provision_now)


def _status(text: str) -> str:
    return text.strip().lower()


def queue_request(args: argparse.Namespace) -> int:
    # Blank is not given: every request names who asked (the OS user name at least).
    requested_by = (args.requested_by or "").strip() or getpass.getuser()
    org = selected_org(args)
    if no_database_there(args, org):
        # Nothing to check the request against: recording its rejection would create a database
        # (and its folder) there, as `approve` and `provision` avoid.
        message = in_org_terms(args, no_database_at(analysts_database(args).path))
        if args.json:
            print(json.dumps({"request_id": None, "status": "rejected", "message": message, "duplicate_of": None}))
        else:
            print(f"rejected (not recorded): {message}", file=sys.stderr)
        return 2
    request = api.request_grant if args.action == "grant" else api.request_revoke
    unpublished = None
    try:
        result = request(args.user, args.workspace, args.role, reason=args.reason, requested_by=requested_by,
                         duration=args.duration, until=args.until, org=org)
    except PublishFailedError as error:
        # Queued all the same: its id is printed as for any queued request (a script keeps it), then
        # the error says that only the publish failed (exit 1).
        unpublished, result = error, cast(QueueResult, error.result)
    if args.json:
        print(json.dumps({"request_id": result.request_id, "status": result.status,
                          "message": in_org_terms(args, result.message), "duplicate_of": result.duplicate_of}))
    elif result.accepted:
        print(result.request_id)
        print(in_org_terms(args, result.message), file=sys.stderr)
    else:
        print(f"rejected ({result.request_id}): {in_org_terms(args, result.message)}", file=sys.stderr)
    if unpublished is not None:
        raise unpublished
    return 0 if result.accepted else 2


def list_requests(args: argparse.Namespace) -> int:
    org = selected_org(args)
    rows = api.list_requests(args.status, org=org)  # an unknown status: RequestRejected, exit 2
    elsewhere = None if rows or analysts_database(args).path.exists() else renamed_slug_refusal(org)
    if elsewhere is not None:  # not an empty queue: the org's queue is in the folder of its old slug
        raise elsewhere
    marker = analysts_database(args).unfinished_publish_path
    if marker.exists():  # the rows come from the analysts' copy: said on stderr, stdout stays as documented
        print(f"note: the analysts' copy may be behind what was recorded ({marker.name} is there: a publish "
              "failed or is under way); nothing needs doing: the next writer publishes it", file=sys.stderr)
    for row in rows:  # a recorded fix ("... `langsmith-access review export`") as this org runs it
        if row.get("status_detail"):
            row["status_detail"] = org.in_its_own_terms(row["status_detail"])
    if args.json:
        # Times in UTC with a Z, as access-at prints them: not in this host's time zone.
        print(json.dumps(rows, default=lambda value: iso_utc(value) if isinstance(value, datetime) else str(value)))
        return 0
    for row in rows:
        target = (
            f"{row['role_name'] or row['requested_role']} in "
            f"{row['workspace_name'] or row['requested_workspace']} for "
            f"{row['user_email'] or row['user_id'] or row['requested_user']}"
        )
        # A time-bound grant in force says when it ends (its revoke is queued then).
        ends = f" until {iso_minutes(row['expires_at'])}" if row.get("expires_at") else ""
        detail = f"  ({row['status_detail']})" if row["status_detail"] else ""
        print(f"{row['request_id']}  {row['status']:<17} {row['action']:<6} {on_one_line(target + ends + detail)}")
    if not rows:
        database = analysts_database(args)
        # A mistyped LANGSMITH_ACCESS_DUCKDB (or --org) looks like an empty queue: say there is no file.
        absent = "" if database.path.exists() else no_database_yet(args)
        print(f"no requests{absent}", file=sys.stderr)
    return 0


def no_database_yet(args: argparse.Namespace) -> str:
    """What to add to "no requests" when the org's analysts' database is not there: the path, and
    that it may be mistyped."""
    return in_org_terms(args, ": " + no_database_at(analysts_database(args).path))


def no_database_there(args: argparse.Namespace, org: Org) -> bool:
    """Whether the org's LANGSMITH_ACCESS_DUCKDB names neither an analysts' copy nor a working
    file: nothing synced or queued there, often a mistyped path, where a command must create
    nothing. False for an org whose data is in its renamed slug's old folder: the command itself
    refuses that, naming the folder."""
    database = analysts_database(args)
    return not database.path.exists() and not database.working_path.exists() and renamed_slug_refusal(org) is None


def no_database_at(path: Path) -> str:
    """``no_database_yet`` as written for the single-org variables (``in_org_terms`` not applied)."""
    return (f"there is no database at {path} yet (nothing synced or queued there): check "
            "LANGSMITH_ACCESS_DUCKDB, or run `langsmith-access sync` first")


def provision_now(args: argparse.Namespace) -> int:
    org = selected_org(args)
    org.client()  # refuse a missing or unusable key before starting anything
    if no_database_there(args, org):
        # No queue to apply: a run would create a database (and its folder) there, and
        # `requests` could no longer say the path is wrong.
        # A dry run answers as the run it previews would.
        if args.json:
            answer = json_answer(None, success=True, failure=None, results=[], policy_changes=[], drift={})
            if args.dry_run:
                answer["before_the_queue"] = {"expiries_due": [], "approvals_overdue": [], "expiry_warnings_due": []}
            else:
                answer["done_first"] = {key: [] for key in DONE_FIRST_KEYS}
            print(json.dumps(answer))
        print(f"no pending requests{no_database_yet(args)}", file=sys.stderr)
        return 0
    try:
        outcome = api.provision(
            dry_run=args.dry_run, log_dir=failure_log_directory(org.settings), verbose=args.verbose, org=org
        )
    except PublishFailedError as unpublished:
        # Done and recorded all the same: each request is said as usual, then that only the
        # publish failed (exit 1), as `request` does.
        report_provisioning(cast("RunOutcome", unpublished.result), dry_run=args.dry_run, as_json=args.json)
        raise
    return report_provisioning(outcome, dry_run=args.dry_run, as_json=args.json)


# `provision --json`'s "done_first" (a real run): the request ids of each kind of work it did
# before taking the queue.
DONE_FIRST_KEYS = ("approvals_expired", "expiry_warnings_sent", "expiry_revokes_queued")


def json_answer(run_id: str | None, *, success: bool, failure: str | None, results: list, policy_changes: list,
                drift: dict) -> dict:
    """``provision --json``'s object (README): the keys of every run; the caller adds a real run's
    ``done_first`` or a dry run's ``before_the_queue``."""
    return {"run_id": run_id, "success": success, "failure": failure, "requests": results,
            "policy_changes": policy_changes, "unexplained_changes": drift.get("unexplained_changes", 0),
            "privileged_unexplained_changes": drift.get("privileged_unexplained_changes", 0)}


def report_provisioning(outcome: RunOutcome, *, dry_run: bool, as_json: bool) -> int:
    """Print what a provisioning run did (text, or one JSON object) and return the exit code: 1
    when the run failed or a request did not reach a final status."""
    applied = outcome.outputs.get(APPLY_REQUESTS_OP) or {}
    results = applied.get("outcomes", [])
    # Pending grants the access policy, changed since they were queued, rejected or sent for approval.
    policy_changes = applied.get("policy_changes") or []
    # A dry run's word on what the real run does first: end time-bound grants, expire approvals.
    ahead = applied.get("ahead") or {}
    # What a real run did first: approvals it expired, warnings it sent, revokes of ended grants
    # it queued (those are among its requests too).
    done_first = applied.get("done_first") or {}
    # Changes made outside langsmith-access that the run's requests found (drift).
    drift = outcome.outputs.get(REFRESH_OP) or {}
    if as_json:
        answer = json_answer(outcome.run_id, success=outcome.success, failure=outcome.failure, results=results,
                             policy_changes=policy_changes, drift=drift)
        if dry_run:
            answer["before_the_queue"] = ahead
        else:
            answer["done_first"] = {key: done_first.get(key, []) for key in DONE_FIRST_KEYS}
        print(json.dumps(answer))
    else:
        for request_id in ahead.get("expiries_due", []):
            print(f"{'would expire':<17} {request_id}  its end is due: the real run queues the revoke "
                  "that ends it, first")
        for request_id in ahead.get("approvals_overdue", []):
            print(f"{'would expire':<17} {request_id}  past its approval deadline or its --until: approval_expired")
        for request_id in ahead.get("expiry_warnings_due", []):
            print(f"{'would warn':<17} {request_id}  its end is near (LANGSMITH_ACCESS_EXPIRY_WARNING): "
                  "access.expiring")
        for request_id in done_first.get("approvals_expired", []):
            print(f"{'approval_expired':<17} {request_id}  past its approval deadline or its --until")
        for request_id in done_first.get("expiry_warnings_sent", []):
            # Only queued in the outbox here: delivered as the command ends (which says so if not).
            print(f"{'warned':<17} {request_id}  its end is near: access.expiring queued for the webhook")
        for item in policy_changes:
            status = f"would be {item['status']}" if dry_run else item["status"]
            print(f"{status:<17} {item['request_id']}  {on_one_line(item['detail'])}")
        for item in results:  # a detail may quote a name LangSmith sent (a custom role's)
            print(f"{item['status']:<17} {item['request_id']}  {on_one_line(item['detail'])}")
        # A run that failed before its first request had some. A dry run whose real run would
        # first end grants or expire approvals (the `would ...` lines above) had work too.
        if (not results and not policy_changes and not any(ahead.values()) and not any(done_first.values())
                and outcome.success):
            print("no pending requests", file=sys.stderr)
        if drift.get("unexplained_changes"):
            privileged = drift.get("privileged_unexplained_changes", 0)
            print(f"drift: {drift['unexplained_changes']} change(s) made outside langsmith-access, found by "
                  "these requests" + (f", {privileged} of them to Admin rights" if privileged else "")
                  + ": see main.report_unexplained_changes")
    if not outcome.success:
        print(f"Provisioning run failed: {outcome.failure}", file=sys.stderr)
        print_fix_and_log(outcome)
        return 1
    if dry_run:
        return 0
    return 0 if all(item["status"] in FINAL_STATUSES for item in results) else 1
