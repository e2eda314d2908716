"""``langsmith-access doctor``: will this work, and if not, what do I fix? (DESIGN.md section 8)"""

from __future__ import annotations

import argparse

from langsmith_access.doctor import run_checks


def add_commands(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the LangSmith connection, key and plan with read-only calls"
    )
    doctor.add_argument("--json", action="store_true", help='print {"ok", "checks": [...]}')
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    diagnosis = run_checks()
    print(diagnosis.to_json() if args.json else diagnosis.text())
    return 0 if diagnosis.ok else 1
