"""``langsmith-access doctor``: will this work, and if not, what do I fix? (DESIGN.md section 8)"""

from __future__ import annotations

import argparse
import json
import os
import sys

from langsmith_access.cli.common import UsageError, add_org_argument, choose_org
from langsmith_access.doctor import ORG_SELECTION_FIX, Diagnosis, configuration_failure, run_checks
from langsmith_access.provisioning.expiry import unlisted_org_warnings
from langsmith_access.settings import ORGS_FILE_VARIABLE, Org, Orgs, SettingsError, load_orgs
from langsmith_access.side_by_side import each_org_side_by_side
from langsmith_access.store.database import AccessDatabase, refusal_ahead


def add_commands(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the LangSmith connection, key and plan with read-only calls"
    )
    doctor.add_argument("--json", action="store_true", help='print {"ok", "checks": [...], "warnings": [...]}')
    add_org_argument(doctor)
    doctor.add_argument(
        "--all-orgs", action="store_true",
        help='check every org of the orgs file; exit 1 naming those with a failed check (--json: '
        '{"ok", "orgs": [{"org", "ok", "checks"}], "warnings": [...]})',
    )
    doctor.set_defaults(handler=run_doctor)


# Orgs checked side by side by `doctor --all-orgs`: each check waits on its own org's LangSmith
# (short timeouts, one retry), so an unreachable one costs its own time, not every org's.
DOCTORS_AT_ONCE = 8


def run_doctor(args: argparse.Namespace) -> int:
    # A bad orgs file, an unknown --org or none among several: the configuration check fails
    # (exit 1, JSON with --json), as DESIGN.md section 8 promises for any bad configuration.
    if args.all_orgs and args.org is not None:
        raise UsageError("--org and --all-orgs do not go together: name one org, or all of them.")
    warnings: list[str] = []
    try:
        orgs = load_orgs(refuse_unusable_keys=False)
        if args.all_orgs:
            return _check_every_org(orgs, args)
        org = choose_org(orgs, args.org)
    except SettingsError as error:
        # The single-org variables: run_checks names every problem of them, not only the first.
        diagnosis = configuration_failure(str(error)) if os.environ.get(ORGS_FILE_VARIABLE) else run_checks()
    except UsageError as error:  # the message names the orgs configured
        diagnosis = configuration_failure(str(error), fix=ORG_SELECTION_FIX)
    else:
        diagnosis = run_checks(org=org)
        # Not a check of the connection, but what the operator must fix in this deployment.
        warnings = database_warnings([org]) + unlisted_org_warnings(orgs)
    if args.json:
        # --all-orgs promises "orgs": with a file that lists none usable, it is empty, and the
        # configuration check beside it says why (a script reading report["orgs"] gets no KeyError).
        print(json.dumps({**diagnosis.to_dict(), **({"orgs": []} if args.all_orgs else {}), "warnings": warnings}))
    else:
        print(diagnosis.text())
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0 if diagnosis.ok else 1


def database_warnings(orgs: list[Org]) -> list[str]:
    """For each org whose runs its database would refuse (another org's data there, or a renamed
    slug's folder holding its own): the refusal and its fix, so an all-ok doctor does not promise
    a sync that cannot run."""
    return [f"org {org.slug!r}: {refusal}" for org in orgs
            if (refusal := refusal_ahead(AccessDatabase.of_org(org))) is not None]


def _check_every_org(orgs: Orgs, args: argparse.Namespace) -> int:
    """``doctor --all-orgs``: each org's checks, in the orgs file's order, then which failed."""
    diagnoses: list[Diagnosis] = list(
        each_org_side_by_side(list(orgs), lambda org: run_checks(org=org), at_once=DOCTORS_AT_ONCE).values())
    warnings = database_warnings(list(orgs)) + unlisted_org_warnings(orgs)
    failed = [org.slug for org, diagnosis in zip(orgs, diagnoses, strict=True) if not diagnosis.ok]
    if args.json:
        print(json.dumps({
            "ok": not failed,
            "orgs": [{"org": org.slug, **diagnosis.to_dict()} for org, diagnosis in zip(orgs, diagnoses, strict=True)],
            "warnings": warnings,
        }))
    else:
        for org, diagnosis in zip(orgs, diagnoses, strict=True):
            print(f"== {org.slug} ==\n{diagnosis.text()}")
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        count = f"{len(orgs)} org" + ("s" if len(orgs) != 1 else "")
        print(f"A check failed for {len(failed)} of {count}: {', '.join(failed)}." if failed
              else f"No check failed for {'any of the ' if len(orgs) != 1 else 'the '}{count}.", file=sys.stderr)
    return 1 if failed else 0
