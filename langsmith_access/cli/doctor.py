"""``langsmith-access doctor``: will this work, and if not, what do I fix? (DESIGN.md section 8)"""

from __future__ import annotations

import argparse

from langsmith_access.cli.common import add_org_argument, selected_org
from langsmith_access.doctor import configuration_failure, run_checks
from langsmith_access.settings import SettingsError


def add_commands(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the LangSmith connection, key and plan with read-only calls"
    )
    doctor.add_argument("--json", action="store_true", help='print {"ok", "checks": [...]}')
    add_org_argument(doctor)
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    try:
        org = selected_org(args)  # an unknown --org stays a usage error (exit 2)
    except SettingsError as error:  # a bad orgs file is the configuration check failing
        diagnosis = configuration_failure(error)
    else:
        diagnosis = run_checks(settings=org.settings)
    print(diagnosis.to_json() if args.json else diagnosis.text())
    return 0 if diagnosis.ok else 1
