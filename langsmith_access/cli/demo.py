"""``langsmith-access demo``: the story end to end on the embedded defaults (``langsmith_access.demo``)."""

from __future__ import annotations

import argparse

from langsmith_access.cli.common import org_size


def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="the whole story on the embedded defaults: sandbox, sync, a queued grant and revoke, "
        "provisioning, a re-sync, a summary and example queries"
    )
    demo.add_argument("--seed", type=int, default=42, help="seed of the sandbox's generated org (default 42)")
    demo.add_argument("--members", type=org_size, default=50, help="active org members (default 50)")
    demo.add_argument("--workspaces", type=org_size, default=8, help="shared workspaces (default 8)")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    # Deferred on purpose: the demo loads Dagster and the definitions (seconds).
    from langsmith_access.demo import run_demo as demo

    return demo(seed=args.seed, members=args.members, workspaces=args.workspaces)
