"""Many-orgs benchmark: two sandbox orgs synced one after the other vs side by side.

    .venv/bin/python benchmarks/orgs_bench.py                    # 2 x 5,000 members (a few minutes)
    .venv/bin/python benchmarks/orgs_bench.py --members 1000 --workspaces 50 --repeats 1   # quick

Two sandboxes in this process, each its own org and key (20 ms latency on every request, 2,000
requests a minute per key), one orgs file naming both. Each round syncs both orgs:

- one after the other: `langsmith-access sync --all-orgs` (one CLI process, org after org);
- one after the other, one process each: `sync --org us`, then `sync --org eu` (as a queue
  allowing one run at a time would run them: each run its own process);
- side by side: `langsmith-access sync --org us` and `... --org eu` started together, two
  processes, as the production queue runs two orgs' scheduled syncs (one run per org at once,
  different orgs in parallel); wall time from the first start to the last end.

The first round starts from empty databases ("cold"); the next ones are warm, as the hourly
schedule runs. Prints wall times (median over --repeats), the ratio, API calls per org, and the
1-minute load average before each round (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    CLI,
    DefaultsShown,
    duration,
    machine_line,
    markdown_table,
    median,
    per_minute,
    settings_left_out,
    size,
    start_sandbox,
    stop_process,
    temporary_workdir,
)

SLUGS = ("us", "eu")
MODES = ("one after the other", "one after the other, one process each", "side by side")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=5_000, help="active members per org")
    parser.add_argument("--workspaces", type=size, default=200, help="shared workspaces per org")
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--rate-limit-per-minute", type=per_minute, default=2_000)
    parser.add_argument("--repeats", type=size, default=3, help="warm rounds of each mode")
    args = parser.parse_args()

    sandboxes = {
        slug: start_sandbox(members=args.members, workspaces=args.workspaces,
                            pending_invites=args.members // 40, latency_ms=args.latency_ms,
                            rate_limit_per_minute=args.rate_limit_per_minute, seed=seed)
        for seed, slug in enumerate(SLUGS, start=1)
    }
    root = temporary_workdir("langsmith-access-orgs-bench-")
    try:
        orgs_file = root / "orgs.yaml"
        orgs_file.write_text("".join(
            f"- slug: {slug}\n  organization_id: {s.organization_id}\n  endpoint: {s.url}\n"
            f"  api_key_env: LANGSMITH_API_KEY_{slug.upper()}\n" for slug, s in sandboxes.items()
        ))
        env = {k: v for k, v in os.environ.items() if not settings_left_out(k)}
        env.update({"LANGSMITH_ACCESS_ORGS_FILE": str(orgs_file),
                    **{f"LANGSMITH_API_KEY_{slug.upper()}": s.api_key for slug, s in sandboxes.items()}})
        print(machine_line(), flush=True)
        print(f"2 orgs x {args.members:,} members, {args.workspaces:,} workspaces, "
              f"{args.latency_ms:g} ms latency, {args.rate_limit_per_minute:,} requests/min per key\n", flush=True)
        rows = []
        for mode in MODES:
            data = root / mode.replace(" ", "-").replace(",", "")
            env["LANGSMITH_ACCESS_DUCKDB"] = str(data / "langsmith_access.duckdb")
            runs = [run_round(mode, env, sandboxes) for _ in range(1 + args.repeats)]
            cold, warm = runs[0], runs[1:]
            rows.append([mode, "cold", f"{cold['wall']:.1f}", cold["calls"], f"{cold['load']:.2f}"])
            if warm:
                rows.append([mode, f"warm (median of {len(warm)})", f"{median([r['wall'] for r in warm]):.1f}",
                             warm[-1]["calls"], f"{median([r['load'] for r in warm]):.2f}"])
            print(f"  {mode}: cold {cold['wall']:.1f} s, warm {[round(r['wall'], 1) for r in warm]}", flush=True)
        print()
        print(markdown_table(["mode", "run", "wall s", "API calls (us, eu)", "load before"], rows))
        walls = {mode: [float(r[2]) for r in rows if r[0] == mode] for mode in MODES}
        for index, label in enumerate(("cold", "warm")):
            if all(len(w) > index for w in walls.values()):
                side = walls["side by side"][index]
                print(f"\n{label}: side by side takes "
                      + ", ".join(f"{side / walls[m][index]:.2f}x the time of {m}" for m in MODES[:2]))
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def run_round(mode: str, env: dict[str, str], sandboxes: dict) -> dict:
    """One sync of both orgs in ``mode``; wall time, API calls per org, load before."""
    for sandbox in sandboxes.values():
        sandbox.reset_log()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    if mode == "one after the other":
        batches = [[[CLI, "sync", "--all-orgs", "--quiet"]]]
    elif mode == "side by side":
        batches = [[[CLI, "sync", "--org", slug, "--quiet"] for slug in SLUGS]]
    else:
        batches = [[[CLI, "sync", "--org", slug, "--quiet"]] for slug in SLUGS]
    for batch in batches:  # the commands of a batch run at once; batches one after the other
        processes: list[subprocess.Popen] = []
        try:
            for command in batch:
                processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True))
            # Every process of the batch ends before a failure is raised: one left running would go
            # on syncing after this script exits, in a directory it removes.
            outputs = [process.communicate() for process in processes]
        except BaseException:  # stopped (SIGTERM, Ctrl-C) while they run: they stop too
            for process in processes:
                stop_process(process)
            raise
        for process, (out, err) in zip(processes, outputs, strict=True):
            if process.returncode != 0:
                raise SystemExit(f"{' '.join(process.args)} failed ({process.returncode}):\n{out}\n{err}")
    wall = time.perf_counter() - started
    calls = ", ".join(str(len(sandboxes[slug].request_log.snapshot())) for slug in SLUGS)
    return {"wall": wall, "calls": calls, "load": load}


if __name__ == "__main__":
    sys.exit(main())
