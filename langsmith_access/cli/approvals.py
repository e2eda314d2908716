"""``langsmith-access approve`` and ``deny``: decide a request awaiting approval."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import cast

from langsmith_access import api
from langsmith_access.cli.common import (
    add_org_argument,
    analysts_database,
    in_org_terms,
    selected_org,
)
from langsmith_access.cli.provisioning import no_database_at, no_database_there
from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.approvals import APPROVED, DENIED, UNKNOWN_REQUEST, DecisionResult
from langsmith_access.settings import load_orgs, mask_keys
from langsmith_access.store.database import PublishFailedError


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
    org = selected_org(args)
    unpublished = None
    if no_database_there(args, org):
        # No queue, so no such request: recording the refusal would create a database (and its
        # folder) there, as `provision` avoids. The id as the refusal would record it: a key or
        # the org's webhook URL pasted in is not echoed.
        shown_id = Notifier.of_org(org).hidden(mask_keys(args.request_id.strip()))
        result = DecisionResult(shown_id, APPROVED if args.decision == "approve" else DENIED, False,
                                f"{UNKNOWN_REQUEST} {shown_id}: {no_database_at(analysts_database(args).path)}.",
                                held_by=_other_org_holding(args, args.request_id.strip()))
    else:
        record = api.approve if args.decision == "approve" else api.deny
        try:
            result = record(args.request_id, by=args.by, comment=args.comment, org=org)
        except PublishFailedError as error:  # recorded all the same: said as usual, then the error (exit 1)
            unpublished, result = error, cast(DecisionResult, error.result)
    if not result.recorded and result.message.startswith(UNKNOWN_REQUEST):
        if result.held_by is not None:  # `approve --org beta` with alpha's id: say whose it is
            result = replace(result, message=f"{result.message} It is a request of org {result.held_by!r}: "
                             f"{args.decision} it with --org {result.held_by}.")
    if args.json:
        print(json.dumps({"request_id": result.request_id, "decision": result.decision,
                          "recorded": result.recorded, "status": result.status,
                          "message": in_org_terms(args, result.message)}))
    elif result.recorded:
        print(in_org_terms(args, result.message))
    else:
        print(f"refused: {in_org_terms(args, result.message)}", file=sys.stderr)
    if unpublished is not None:
        raise unpublished
    return 0 if result.recorded else 2


def _other_org_holding(args: argparse.Namespace, request_id: str) -> str | None:
    """The slug of another configured org whose queue (its analysts' copy) holds ``request_id``."""
    return queue.org_holding_request(load_orgs(refuse_unusable_keys=False), request_id,
                                     besides=selected_org(args).slug)
