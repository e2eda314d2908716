"""Access-review round trip on the command line: ``review export`` and ``review queue-revokes``.

``review export`` writes the review sheet (current workspace grants, with empty ``decision``,
``reviewer`` and ``reason`` columns) as CSV, or as a table in a DuckDB file of the reviewer's own.
``review queue-revokes`` reads the rows marked ``revoke`` back, from that CSV or that table, and
queues one revoke per row through the normal provisioning queue. The format and the rules are in
``langsmith_access/provisioning/review/``.

Exit codes: 0 done (every marked row queued or already queued); 1 the database is missing,
busy or unreadable; 2 the sheet or the arguments cannot be used (nothing queued), or some rows
were rejected (the others are queued; every rejection is recorded with its reason).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import cast

from langsmith_access.cli.common import (
    add_org_argument,
    analysts_database,
    another_orgs_database,
    given,
    in_org_terms,
    named_path,
    on_one_line,
    org_terms,
    refuse_a_file_among_the_folders,
    refuse_another_orgs_folder,
    refused_if_unmakeable,
    selected_org,
)
from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning.review import (
    ADMIN_NOTE,
    DEFAULT_TABLE,
    DUCKDB_SUFFIXES,
    SCIM_NOTE,
    ReviewError,
    ReviewResult,
    SheetOfAnotherOrganization,
    export_review_sheet,
    organization_admins_left_out,
    queue_revokes,
    read_csv_sheet,
    read_table_sheet,
)
from langsmith_access.settings import load_orgs
from langsmith_access.store.database import PublishFailedError
from langsmith_access.store.sync_runs import same_organization


def add_commands(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser(
        "review",
        help="access review: export a sheet of grants, queue the revokes a reviewer marked",
        description="Access-review round trip: `review export` writes the current workspace grants "
        "with an empty decision column; the reviewer writes 'revoke' in the rows to take away; "
        "`review queue-revokes` queues those revokes with the reviewer's name and reason.",
    )
    actions = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    export = actions.add_parser(
        "export",
        help="write the review sheet: current workspace grants with an empty decision column",
        description="Write one row per current workspace grant (grant_id, email, full_name, "
        "user_id, is_disabled, org_role_name, workspace_name, workspace_id, role_name, role_id, "
        "entitlement_type, held_since, deny_policy_names, is_scim_managed, organization_id) plus "
        "empty decision, reviewer and reason columns. "
        "OUT ending in .duckdb/.db/.ddb gets a table (--table) instead of a CSV file. Reads the "
        "analysts' database read-only.",
    )
    export.add_argument("--out", required=True, type=_sheet_file, metavar="FILE",
                        help="review.csv, or review.duckdb for a table in your own DuckDB file")
    export.add_argument("--workspace", metavar="W", type=given("a workspace name or id", "every workspace"),
                        help="only this workspace (name or id)")
    export.add_argument("--include-org-roles", action="store_true",
                        help="list organization roles too (for the record: they cannot be revoked here)")
    export.add_argument("--table", default=None, metavar="T", type=given("a table name", f"table {DEFAULT_TABLE}"),
                        help="table to create when OUT is a DuckDB file (default grant_review)")
    export.add_argument("--force", action="store_true", help="replace an existing sheet or table")
    add_org_argument(export)
    export.set_defaults(handler=export_sheet)

    revokes = actions.add_parser(
        "queue-revokes",
        help="queue a revoke for every row of a review sheet marked 'revoke'",
        description="Read a review sheet (CSV, or a table in the reviewer's own DuckDB file) "
        "and queue one revoke per row whose decision is 'revoke' (or whose revoke column is "
        "yes), through the normal queue: validated, de-duplicated, rejections recorded. Rows "
        "name a grant by grant_id, or by user + workspace + role columns. The sensor (or "
        "`langsmith-access provision`) applies them.",
    )
    source = revokes.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=named_path("the review sheet's CSV file, e.g. --file review.csv"), metavar="F",
                        help="the review sheet, CSV")
    source.add_argument("--table", metavar="T",
                        help="a table (or view) in the DuckDB file given with --review-db")
    revokes.add_argument("--review-db", metavar="FILE",
                         type=named_path("your DuckDB file, e.g. --review-db review.duckdb"),
                         help="the reviewer's own DuckDB file holding --table (never the analysts' database)")
    revokes.add_argument("--reviewer", default=None, metavar="NAME",
                         help="who reviewed, for rows without a reviewer (default: your OS user name)")
    revokes.add_argument("--reason", default=None, metavar="TEXT",
                         help="why, for rows without a reason (default: 'access review (<sheet>)')")
    revokes.add_argument("--dry-run", action="store_true",
                         help="check every marked row against the latest sync; queue nothing")
    revokes.add_argument("--json", action="store_true", help="print a JSON summary")
    add_org_argument(revokes)
    revokes.set_defaults(handler=queue_marked_revokes)


def _sheet_file(text: str) -> Path:
    # pathlib drops a trailing '/': "--out reviews/" would become a file named "reviews".
    if not text.strip() or text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a file name: name the sheet to write, e.g. --out reviews/q4.csv"
        )
    return Path(text)


def export_sheet(args: argparse.Namespace) -> int:
    to_duckdb = args.out.suffix.lower() in DUCKDB_SUFFIXES
    if args.table and not to_duckdb:
        raise ReviewError("--table applies to a DuckDB file only (--out review.duckdb).")
    with refused_if_unmakeable("--out", args.out, "reviews/q4.csv"):
        _refuse_another_orgs_database(args, args.out, "--out")
        refuse_another_orgs_folder(args, "--out", args.out)
        refuse_a_file_among_the_folders("--out", args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
    path, count = export_review_sheet(
        analysts_database(args), args.out, workspace=args.workspace, include_org_roles=args.include_org_roles,
        table=args.table or DEFAULT_TABLE, force=args.force,
    )
    where = f"table {args.table or DEFAULT_TABLE} in {path}" if to_duckdb else str(path)
    print(f"Wrote {count} grant{'s' * (count != 1)} to {where}.")
    if not args.include_org_roles:
        admins = organization_admins_left_out(analysts_database(args), args.workspace)
        if admins:
            print(in_org_terms(
                args,
                f"Not on the sheet: {admins} Organization Admin{'s' * (admins != 1)} with Admin "
                f"{'there' if args.workspace else 'in workspaces'} through the organization role, "
                "which no workspace grant shows (--include-org-roles lists their organization roles; "
                "report_implicit_admins lists where).",
            ), file=sys.stderr)
    print(in_org_terms(
        args,
        "Write 'revoke' in the decision column of each grant to take away (optionally a reviewer "
        "and a reason), then: langsmith-access review queue-revokes "
        + (f"--review-db {path} --table {args.table or DEFAULT_TABLE}" if to_duckdb else f"--file {path}"),
    ), file=sys.stderr)
    return 0


def queue_marked_revokes(args: argparse.Namespace) -> int:
    if args.table is not None:
        if args.review_db is None:
            raise ReviewError(
                "--table needs --review-db FILE: the reviewer's own DuckDB file that holds the table."
            )
        _refuse_another_orgs_database(args, args.review_db, "--review-db")
        if analysts_database(args).owns(args.review_db):
            raise ReviewError(
                "--review-db is the analysts' database (or one of its files), which every sync "
                "and request replaces: "
                "keep review tables in a DuckDB file of your own (langsmith-access review export "
                "--out review.duckdb)."
            )
        sheet = read_table_sheet(args.review_db, args.table)
    else:
        if args.review_db is not None:
            raise ReviewError("--review-db goes with --table, not with --file.")
        sheet = read_csv_sheet(args.file)
    reviewer = (args.reviewer or "").strip() or getpass.getuser()  # blank is not given
    unpublished = None
    try:
        result = queue_revokes(analysts_database(args), sheet, reviewer=reviewer, reason=args.reason,
                               dry_run=args.dry_run, notifier=Notifier.of_org(selected_org(args)))
    except PublishFailedError as error:
        # Queued all the same: each row is said as usual, then the error (exit 1), as `request` does.
        unpublished, result = error, cast(ReviewResult, error.result)
    except SheetOfAnotherOrganization as error:
        # The org it came from, by the slug the command wants, where the orgs file lists it.
        slugs = [org.slug for org in load_orgs(refuse_unusable_keys=False) if org.organization_id and any(
            same_organization(org.organization_id, other) for other in error.organizations)]
        if not slugs:
            raise
        raise ReviewError(str(error).replace(
            SheetOfAnotherOrganization.WHERE, f"(--org {' or --org '.join(slugs)})")) from None
    if args.json:
        report, own_terms = result.to_json(), org_terms(args)
        for outcome in report["outcomes"]:
            outcome["message"] = own_terms(outcome["message"])
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_result(result, args)
    if unpublished is not None:
        raise unpublished
    return 0 if result.all_accepted else 2


def _refuse_another_orgs_database(args: argparse.Namespace, path: Path, option: str) -> None:
    """Another org's database (one of its files) is that org's data, which dbt and its sync write
    alone: a sheet of this org never goes there, nor is one read from there."""
    other = another_orgs_database(args, path)
    if other is not None:
        raise ReviewError(
            f"{option} {path} is one of the database files of org {other!r}, which only its own "
            "sync and requests write: keep review sheets in a file of your own (review.csv or "
            "review.duckdb)."
        )


def _print_result(result: ReviewResult, args: argparse.Namespace) -> None:
    labels = {"queued": "queued", "would_queue": "would queue", "duplicate": "duplicate", "rejected": "rejected"}
    own_terms = org_terms(args)
    for outcome in result.outcomes:
        head = f"{labels[outcome.status]:<11} {outcome.row.where:<9}"
        if outcome.status in ("queued", "would_queue"):
            what = own_terms(outcome.message).split(": ", 1)[-1]
            print(f"{head} {on_one_line(what)}" + (f"  [{outcome.request_id}]" if outcome.request_id else ""))
            if outcome.scim_managed:
                print(f"{'':<22}note: {SCIM_NOTE}.")
            if outcome.admin_access_remains:
                print(f"{'':<22}note: {ADMIN_NOTE}.")
        elif outcome.status == "duplicate":
            print(f"{head} {on_one_line(outcome.row.target())}: {on_one_line(own_terms(outcome.message))}")
        else:
            recorded = f"  [recorded as {outcome.request_id}]" if outcome.request_id else ""
            why = on_one_line(own_terms(outcome.message))
            print(f"{head} {on_one_line(outcome.row.target())}{recorded}\n{'':<22}{why}")
    queued = len(result.with_status("queued", "would_queue"))
    duplicates = len(result.with_status("duplicate"))
    rejected = len(result.with_status("rejected"))
    verb = "would queue" if result.dry_run else "queued"
    print(
        f"{result.source}: {result.rows} row{'s' * (result.rows != 1)}, "
        f"{len(result.outcomes)} marked revoke: {queued} {verb}, {duplicates} already queued or done, "
        f"{rejected} rejected" + (" (dry run: nothing recorded)" if result.dry_run else "")
    )
    if not result.outcomes:
        print("No row is marked revoke: nothing to queue.", file=sys.stderr)
    elif rejected and not result.dry_run:
        print(in_org_terms(args, "Rejected rows are recorded with their reason (langsmith-access requests "
                           "--status rejected); the others wait for the sensor or `langsmith-access provision`."),
              file=sys.stderr)
