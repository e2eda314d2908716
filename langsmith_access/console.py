"""The ``langsmith-access`` console script (``pyproject.toml``): ``cli.run`` behind a guard for
Ctrl-C while the command line is still being imported.

Importing ``langsmith_access.cli`` takes a few tenths of a second (its commands' modules, DuckDB,
requests); a Ctrl-C then, before ``cli.run`` can catch anything, printed a KeyboardInterrupt
traceback. It now ends the way an interrupted command does: a line on stderr, exit 130.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # as langsmith_access.cli.common.INTERRUPTED, which cannot be imported yet


def run() -> None:
    try:
        # Deferred on purpose: the import is what the guard is for.
        from langsmith_access import cli
    except KeyboardInterrupt:
        print("interrupted before the command started: nothing was read or changed", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    cli.run()
