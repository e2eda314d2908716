"""``langsmith-access approve`` and ``deny``: decide a request awaiting approval."""

from __future__ import annotations

import argparse
import json
import sys

from langsmith_access import api
from langsmith_access.cli.common import add_org_argument, in_org_terms, selected_org


def add_commands(commands: argparse._SubParsersAction) -> None:
    for name, verb in (("approve", "approve"), ("deny", "deny")):
        sub = commands.add_parser(
            name, help=f"{verb} a request awaiting approval (exit 0 recorded, 2 refused with the reason)"
        )
        sub.add_argument("request_id", metavar="REQUEST_ID",
                         help="the full id `request grant` printed "
                         "(langsmith-access requests --status awaiting_approval)")
        sub.add_argument("--by", required=True, metavar="EMAIL",
                         help="your email as LangSmith knows it; checked against the policy's approvers")
        sub.add_argument("--comment", default=None, help="why, recorded with the decision")
        sub.add_argument("--json", action="store_true", help="print a JSON object")
        add_org_argument(sub)
        sub.set_defaults(handler=decide, decision=name)


def decide(args: argparse.Namespace) -> int:
    record = api.approve if args.decision == "approve" else api.deny
    result = record(args.request_id, by=args.by, comment=args.comment, org=selected_org(args))
    if args.json:
        print(json.dumps({"request_id": result.request_id, "decision": result.decision,
                          "recorded": result.recorded, "status": result.status,
                          "message": in_org_terms(args, result.message)}))
    elif result.recorded:
        print(in_org_terms(args, result.message))
    else:
        print(f"refused: {in_org_terms(args, result.message)}", file=sys.stderr)
    return 0 if result.recorded else 2
