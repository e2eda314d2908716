"""``langsmith-access doctor``: will this work, and if not, what do I fix? (DESIGN.md section 8)"""

from __future__ import annotations

import argparse
import json
import os
import sys

from langsmith_access.cli.common import UsageError, add_org_argument, choose_org
from langsmith_access.doctor import ORG_SELECTION_FIX, configuration_failure, run_checks
from langsmith_access.provisioning.expiry import unlisted_org_warnings
from langsmith_access.settings import ORGS_FILE_VARIABLE, SettingsError, load_orgs


def add_commands(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the LangSmith connection, key and plan with read-only calls"
    )
    doctor.add_argument("--json", action="store_true", help='print {"ok", "checks": [...]}')
    add_org_argument(doctor)
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    # A bad orgs file, an unknown --org or none among several: the configuration check fails
    # (exit 1, JSON with --json), as DESIGN.md section 8 promises for any bad configuration.
    warnings: list[str] = []
    try:
        orgs = load_orgs(refuse_unusable_keys=False)
        org = choose_org(orgs, args.org)
    except SettingsError as error:
        # The single-org variables: run_checks names every problem of them, not only the first.
        diagnosis = configuration_failure(str(error)) if os.environ.get(ORGS_FILE_VARIABLE) else run_checks()
    except UsageError as error:  # the message names the orgs configured
        diagnosis = configuration_failure(str(error), fix=ORG_SELECTION_FIX)
    else:
        diagnosis = run_checks(org=org)
        # Not a check of the connection, but what the operator must fix in this deployment.
        warnings = unlisted_org_warnings(orgs)
    if args.json:
        print(json.dumps({**diagnosis.to_dict(), "warnings": warnings}))
    else:
        print(diagnosis.text())
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0 if diagnosis.ok else 1
