"""The ``langsmith-access`` command line (DESIGN.md section 2).

Each module of this package adds its commands with ``add_commands(commands)``; every command's
parser names the function that runs it with ``set_defaults(handler=...)``. ``main`` parses, then
runs that function through ``common.run_handler``, which turns the errors every command shares
into one message and one exit code (usage 2, missing database or bad settings 1); a closed
stdout only drops the rest of the output (``common.ReaderMayLeave``).

Adding a command: a module here with ``add_commands(commands)`` that adds the parser and sets
its handler (a function ``(args) -> exit code``), listed in ``COMMAND_MODULES`` below. A command
that serves an org takes ``--org`` (``common.add_org_argument``), which also sets
``delivers_notifications``: ``main`` then delivers that org's due notifications when it is done.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import sys
from typing import NoReturn

from langsmith_access import garbage_collector
from langsmith_access.cli import approvals, demo, doctor, provisioning, reports, review, sandbox, sync
from langsmith_access.cli.common import INTERRUPTED, deliver_notifications, printable_output, run_handler
from langsmith_access.settings import mask_keys

# In the order `langsmith-access --help` lists them.
COMMAND_MODULES = (sandbox, sync, provisioning, approvals, doctor, demo, reports, review)


class _StoreOnce(argparse._StoreAction):
    """argparse's ``store``, refusing an option given twice with different values: argparse
    keeps the last, so ``request grant --user alice ... --user bob`` would queue bob's grant."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = namespace.__dict__.setdefault("_options_given", {})
        if self.dest in given and given[self.dest] != values:
            raise argparse.ArgumentError(
                self, f"given twice, as {str(given[self.dest])!r} and {str(values)!r}: give it once, with the value "
                "you mean"
            )
        given[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors (``invalid choice: '<what was typed>'``) never echo
    a key pasted where an option's value belongs, and which refuses an option given twice with
    different values (``_StoreOnce``), nor takes an option for the start of another's name
    (``sandbox --org X`` was read as ``--organization-id X``). Its subcommands' parsers are of
    this class too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message: str) -> NoReturn:
        super().error(mask_keys(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="langsmith-access",
        description="Who can do what in a LangSmith organization, and safe workspace-role changes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


# Options whose value may start with '-': argparse reads `--duration -1h` as a second option
# ("expected one argument") instead of the value its own check refuses with the reason.
_VALUES_MAY_START_WITH_DASH = ("--duration",)


def _joined(argv: list[str]) -> list[str]:
    """``--duration -1h`` as ``--duration=-1h``, which argparse passes on as the value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _VALUES_MAY_START_WITH_DASH and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _org_before_the_command(argv: list[str]) -> str | None:
    """For ``--org SLUG`` written before the command (argparse would call the slug an invalid
    command): the message saying where it goes, with the command line it meant."""
    if not argv or not (argv[0] == "--org" or argv[0].startswith("--org=")):
        return None
    org, rest = (argv[1:2], argv[2:]) if argv[0] == "--org" else ([argv[0].split("=", 1)[1]], argv[1:])
    meant = shlex.join(["langsmith-access", *rest, "--org", *org])
    return f"error: --org goes after the command's name (DESIGN.md section 11): {mask_keys(meant)}"


# Commands whose parser only chooses an action (``request grant``, ``review export``): each
# action takes ``--org``, the command itself none.
_COMMANDS_WITH_ACTIONS = ("request", "review")


def _org_after_the_action(argv: list[str]) -> list[str]:
    """``request --org SLUG grant ...`` as ``request grant ... --org SLUG``: ``--org`` right
    after the command's name (DESIGN.md section 11) belongs to its action, where argparse looks
    for it (it would call the slug an invalid action)."""
    if len(argv) < 2 or argv[0] not in _COMMANDS_WITH_ACTIONS:
        return argv
    if argv[1] == "--org" and len(argv) >= 3:
        return [argv[0], *argv[3:], *argv[1:3]]
    if argv[1].startswith("--org="):
        return [argv[0], *argv[2:], argv[1]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Names LangSmith sent are printed, and may hold escape sequences; so may an argument that a
    # usage error quotes back (pasted from a sheet or a chat), so the parsing is inside too.
    with printable_output():
        misplaced = _org_before_the_command(argv)
        if misplaced is not None:
            print(misplaced, file=sys.stderr)
            return 2
        args = build_parser().parse_args(_joined(_org_after_the_action(argv)))
        code = run_handler(args.handler, args)
        if getattr(args, "delivers_notifications", False) and code != INTERRUPTED:
            # Every command that serves an org then POSTs what is due (never changes the exit code).
            deliver_notifications(args)
    return code


def run() -> None:
    """The ``langsmith-access`` console script (through ``langsmith_access.console``, which guards
    this package's import): ``main()``, then exit without tearing the interpreter down.

    A run leaves Dagster's and dbt's modules (hundreds of MB of objects) in memory, and freeing
    them one by one at interpreter exit takes over a second. By the time ``main()`` returns,
    every file and database this process wrote is closed; the exit handlers (logging,
    temporary files, thread pools) still run, then the process ends with ``main()``'s code.
    """
    # Before the runner imports Dagster and dbt: see garbage_collector.
    garbage_collector.raise_thresholds()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)
