"""The inventory's cost, with the resource tags and without: what reading them adds.

    .venv/bin/python benchmarks/inventory_bench.py                           # 20,000 members, 1,000 workspaces
    .venv/bin/python benchmarks/inventory_bench.py --members 2000 --workspaces 100 --repeats 1   # quick

Two sandboxes of the same generated org (20 ms latency on every request, LangSmith's 2,000
requests a minute per key): one serves the workspace tag routes, the other answers them 404 (an
install without them: the inventory skips the section after its first answer). Each round runs
`langsmith-access sync --all-sections` against each; the first round reads the audit log's
first load ("cold"), the next ones are warm, as the hourly schedule runs them. Prints the
inventory's wall time (its own line of the CLI's summary) and API calls, median over the warm
rounds, and the requests the tag reads took.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    DefaultsShown,
    cli_env,
    duration,
    machine_line,
    markdown_table,
    median,
    per_minute,
    run_cli,
    size,
    temporary_workdir,
)

from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org

TAGGINGS = "/api/v1/workspaces/current/taggings"
VARIANTS = {"tags read": (), "tag routes missing (404)": ("resource_tags",)}


def inventory_figures(stdout: str) -> tuple[float, int, str]:
    """The inventory's wall seconds, API calls and resource_tags line, from the CLI's summary."""
    inventory = stdout[stdout.index("Inventory "):]
    seconds = float(re.search(r"succeeded in ([0-9.]+) s", inventory).group(1))
    calls = int(re.search(r"API calls (\d+)", inventory).group(1))
    tags = next(line.strip() for line in inventory.splitlines() if "resource_tags:" in line)
    return seconds, calls, tags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000, help="shared workspaces")
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--rate-limit-per-minute", type=per_minute, default=2_000)
    parser.add_argument("--repeats", type=size, default=3, help="warm rounds")
    args = parser.parse_args()

    print(machine_line())
    faults = FaultConfig(latency_ms=args.latency_ms, rate_limit_per_minute=args.rate_limit_per_minute,
                         rate_limit_per_10_seconds=max(1, args.rate_limit_per_minute // 2))
    workdir = temporary_workdir("inventory-bench-")
    sandboxes = {
        name: SandboxServer(generate_org(seed=42, members=args.members, workspaces=args.workspaces),
                            faults=faults, missing_sections=missing).start()
        for name, missing in VARIANTS.items()
    }
    try:
        figures: dict[str, list[tuple[float, int, str, int]]] = {name: [] for name in VARIANTS}
        for round_number in range(args.repeats + 1):
            for name, sandbox in sandboxes.items():
                database = workdir / name.split()[0] / "access.duckdb"
                run = run_cli(["sync", "--all-sections", "--quiet"], cli_env(sandbox, database), sandbox)
                if not run.ok:
                    print(run.stdout, run.stderr, sep="\n", file=sys.stderr)
                    return 1
                seconds, calls, tags = inventory_figures(run.stdout)
                tag_calls = sum(1 for entry in sandbox.request_log.snapshot() if entry.path == TAGGINGS)
                figures[name].append((seconds, calls, tags, tag_calls))
                print(f"round {round_number} ({'cold' if round_number == 0 else 'warm'}), {name}: inventory "
                      f"{seconds:.1f} s, {calls} API calls ({tag_calls} to {TAGGINGS}); {tags}", flush=True)
        rows = []
        for name, runs in figures.items():
            cold, warm = runs[0], runs[1:]
            if not warm:  # --repeats 0: no warm figures (the cold ones were shown under "warm")
                rows.append([name, f"{cold[0]:.1f}", "-", "-", "-"])
                continue
            rows.append([name, f"{cold[0]:.1f}", f"{median([w[0] for w in warm]):.1f}",
                         int(median([w[1] for w in warm])), int(median([w[3] for w in warm]))])
        print(f"\n{args.members:,} members, {args.workspaces:,} workspaces, {args.latency_ms:g} ms latency, "
              f"{args.rate_limit_per_minute:,} requests a minute; warm: median of {args.repeats}")
        print(markdown_table(["variant", "inventory cold s", "inventory warm s", "API calls (warm)",
                              "tag reads (warm)"], rows))
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
