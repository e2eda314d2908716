"""The ``langsmith-access`` command line (DESIGN.md section 2)."""

from __future__ import annotations

import argparse
import sys


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        from langsmith_access.sandbox.server import serve_from_cli

        return serve_from_cli(args)
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
