"""The ``langsmith-access`` command line (DESIGN.md section 2)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys

from langsmith_access import reports_cli, review_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langsmith-access",
        description="Who can do what in a LangSmith organization, and safe workspace-role changes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sandbox = commands.add_parser(
        "sandbox", help="run the LangSmith-compatible sandbox server until stopped"
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sandbox.add_argument("--seed", type=int, default=42)
    sandbox.add_argument("--members", type=int, default=50, help="active org members")
    sandbox.add_argument("--workspaces", type=int, default=8, help="shared workspaces")
    sandbox.add_argument("--api-key", default=None, help="service key to accept (default: generated)")
    sandbox.add_argument("--organization-id", default=None, help="org UUID (default: from the seed)")
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    sandbox.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests answered 5xx or 429"
    )
    sandbox.add_argument(
        "--pending-invites",
        type=int,
        default=None,
        help="pending org invites (default: members / 40 + 2)",
    )
    sandbox.add_argument(
        "--rate-limit-per-minute",
        type=int,
        default=None,
        help="answer 429 once a key sent more than N requests in its current 60 s window "
        "(default: no limit)",
    )
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
        help="largest allowed drop in members or grants, 0..1 (default 0.2, or "
        "LANGSMITH_ACCESS_MAX_SHRINK_SHARE)",
    )
    sync.add_argument(
        "--membership-route",
        choices=["auto", "enriched_members", "workspace_members"],
        default=None,
        help="how to read workspace memberships (default: auto, the cheapest that works)",
    )
    sync.add_argument("--quiet", action="store_true", help="no progress lines")

    request = commands.add_parser("request", help="queue a workspace-role grant or revoke")
    request_actions = request.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, verb in (("grant", "give"), ("revoke", "take away")):
        sub = request_actions.add_parser(action, help=f"queue a request to {verb} a workspace role")
        sub.add_argument("--user", required=True, help="email or user id (ls_user_id)")
        sub.add_argument("--workspace", required=True, help="workspace name or id")
        sub.add_argument("--role", required=True, help="role display name (Admin, Editor, Viewer, a custom role), name or id")
        sub.add_argument("--reason", default=None)
        sub.add_argument("--requested-by", default=None, help="who asks (default: your OS user name)")
        sub.add_argument("--json", action="store_true", help="print a JSON object")

    listing = commands.add_parser("requests", help="list provisioning requests and their status")
    listing.add_argument("--status", default=None, help="pending, in_progress, applied, already_satisfied, rejected or failed")
    listing.add_argument("--json", action="store_true")

    provision = commands.add_parser("provision", help="apply every pending request now (same job as the sensor)")
    provision.add_argument("--dry-run", action="store_true", help="plan against live state; change nothing")
    provision.add_argument("--json", action="store_true")

    demo = commands.add_parser(
        "demo", help="the whole story on the embedded defaults: sandbox, sync, example queries"
    )
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--members", type=int, default=50)
    demo.add_argument("--workspaces", type=int, default=8)
    reports_cli.add_commands(commands)
    review_cli.add_commands(commands)
    return parser


def _sync(args: argparse.Namespace) -> int:
    from langsmith_access import runner
    from langsmith_access.settings import Settings
    from langsmith_access.store.database import AccessDatabase

    settings = Settings.from_env()
    settings.client()  # refuse a missing or unusable key before starting anything
    if args.max_shrink_share is not None and not 0 <= args.max_shrink_share <= 1:
        print("error: --max-shrink-share must be between 0 and 1 (0.2 = 20%)", file=sys.stderr)
        return 2
    print(f"Syncing {settings.endpoint} into {settings.duckdb_path}", file=sys.stderr)
    outcome = runner.run_job(
        runner.SYNC_JOB,
        runner.sync_run_config(
            accept_shrink=args.accept_shrink,
            max_shrink_share=args.max_shrink_share,
            membership_route=args.membership_route,
        ),
        progress=None if args.quiet else runner.print_progress(),
    )
    if not outcome.success:
        print(f"Sync failed: {outcome.failure}", file=sys.stderr)
        for check in outcome.failed_checks:
            print(f"  failed check {check}", file=sys.stderr)
        for line in outcome.dbt_errors:
            print(f"  dbt: {line}", file=sys.stderr)
        print(
            "The analysts' database and its history were left as they were.", file=sys.stderr
        )
        return 1
    with AccessDatabase(settings.duckdb_path).read_published() as conn:
        row = conn.execute(
            "SELECT * FROM main.sync_runs WHERE sync_id = ?", [outcome.run_id]
        ).fetchone()
        columns = [d[0] for d in conn.description]
    summary = dict(zip(columns, row))
    print(
        f"Sync {outcome.run_id} succeeded in {outcome.duration_seconds:.1f} s "
        f"({summary['membership_route']} route)\n"
        f"  users {summary['users']}, pending invites {summary['pending_invites']}, "
        f"workspaces {summary['workspaces']}, roles {summary['roles']}\n"
        f"  entitlements {summary['entitlements']}, grants {summary['grants']} "
        f"({summary['workspace_grants']} workspace grants)\n"
        f"  API calls {summary['api_calls']}, retries {summary['api_retries']}, "
        f"rate limited {summary['api_rate_limited']}, waited {summary['api_wait_seconds']:.1f} s\n"
        f"  published to {settings.duckdb_path}"
    )
    return 0


def _request(args: argparse.Namespace) -> int:
    import getpass
    import json

    from langsmith_access.provisioning.api import request_grant, request_revoke

    requested_by = args.requested_by if args.requested_by is not None else getpass.getuser()
    queue_it = request_grant if args.action == "grant" else request_revoke
    result = queue_it(args.user, args.workspace, args.role, reason=args.reason, requested_by=requested_by)
    if args.json:
        print(json.dumps({"request_id": result.request_id, "status": result.status,
                          "message": result.message, "duplicate_of": result.duplicate_of}))
    elif result.accepted:
        print(result.request_id)
        print(result.message, file=sys.stderr)
    else:
        print(f"rejected ({result.request_id}): {result.message}", file=sys.stderr)
    return 0 if result.accepted else 2


def _requests(args: argparse.Namespace) -> int:
    import json

    from langsmith_access.provisioning.api import list_requests
    from langsmith_access.provisioning.queue import RequestRejected

    try:
        rows = list_requests(args.status)
    except RequestRejected as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for row in rows:
        target = (
            f"{row['role_name'] or row['requested_role']} in "
            f"{row['workspace_name'] or row['requested_workspace']} for "
            f"{row['user_email'] or row['user_id'] or row['requested_user']}"
        )
        detail = f"  ({row['status_detail']})" if row["status_detail"] else ""
        print(f"{row['request_id']}  {row['status']:<17} {row['action']:<6} {target}{detail}")
    if not rows:
        print("no requests", file=sys.stderr)
    return 0


def _provision(args: argparse.Namespace) -> int:
    import json

    from langsmith_access.provisioning.api import provision
    from langsmith_access.provisioning.queue import FINAL_STATUSES
    from langsmith_access.settings import Settings

    Settings.from_env().client()  # refuse a missing or unusable key before starting anything
    outcome = provision(dry_run=args.dry_run)
    results = (outcome.outputs.get("apply_requests") or {}).get("outcomes", [])
    if args.json:
        print(json.dumps({"run_id": outcome.run_id, "success": outcome.success,
                          "failure": outcome.failure, "requests": results}))
    else:
        for item in results:
            print(f"{item['status']:<17} {item['request_id']}  {item['detail']}")
        if not results:
            print("no pending requests", file=sys.stderr)
    if not outcome.success:
        print(f"Provisioning run failed: {outcome.failure}", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    return 0 if all(item["status"] in FINAL_STATUSES for item in results) else 1


def main(argv: list[str] | None = None) -> int:
    from langsmith_access.settings import SettingsError

    # Dagster's beta/preview warnings are silenced where Dagster runs (runner.run_job); every
    # other warning, a deprecation included, shows.

    args = build_parser().parse_args(argv)
    try:
        result = reports_cli.run(args) if args.command != "review" else review_cli.run(args)
        if result is not None:
            return result
        if args.command == "sandbox":
            from langsmith_access.sandbox.server import serve_from_cli

            return serve_from_cli(args)
        if args.command == "sync":
            return _sync(args)
        if args.command == "request":
            return _request(args)
        if args.command == "requests":
            return _requests(args)
        if args.command == "provision":
            return _provision(args)
        if args.command == "demo":
            from langsmith_access.demo import run_demo

            return run_demo(seed=args.seed, members=args.members, workspaces=args.workspaces)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command!r}")


def run() -> None:
    """The ``langsmith-access`` console script: ``main()``, then exit without tearing the
    interpreter down.

    A run leaves Dagster's and dbt's modules (hundreds of MB of objects) in memory, and freeing
    them one by one at interpreter exit takes over a second. By the time ``main()`` returns,
    every file and database this process wrote is closed; the exit handlers (logging,
    temporary files, thread pools) still run, then the process ends with ``main()``'s code.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
