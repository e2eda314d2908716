"""Sync benchmark: `langsmith-access sync`, end to end, against the sandbox.

    .venv/bin/python benchmarks/sync_bench.py                  # everything (about 12 minutes)
    .venv/bin/python benchmarks/sync_bench.py --quick          # the 20,000-member sync only
    .venv/bin/python benchmarks/sync_bench.py --memory         # peak memory at 20k and 50k members

Starts the sandbox in this process (20 ms latency on every request, 2,000 requests a minute per
key), runs the real CLI as a child process with an ephemeral Dagster instance, and prints tables
of wall time, CPU time (the CLI, dbt inside it, and its children), API calls against the API's lower bound, and peak
memory, beside a naive sequential read of the same org (one workspace at a time, no
concurrency) as a ratio. The first sync of a scenario starts from an empty database ("cold");
the next ones are what the hourly schedule does ("warm").

Scenarios:

- main: 20,000 active members, 500 pending invites, 1,000 shared workspaces (about 100,000
  workspace grants), enriched members route; targets <= 20 s, <= 1.2x the lower bound, < 800 MB (issue 13);
- per-workspace route on the same org (the enriched route turned off in the sandbox);
- growth: 1,000, 5,000, 20,000 and 50,000 members (1,000 workspaces, members / 40 invites);
- memory (``--memory``, on its own): a cold and a warm sync at 20,000 and 50,000 members,
  with the peak memory of the CLI process (dbt runs in it) and of its children; targets < 800 MB and < 1 GB.

The machine is shared: the 1-minute load average before each run is printed with it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from datetime import time as time_of_day
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    CliRun,
    DefaultsShown,
    cli_env,
    duration,
    lower_bound_calls,
    machine_line,
    markdown_table,
    median,
    per_minute,
    rounds,
    run_cli,
    run_naive_read,
    size,
    sizes,
    start_sandbox,
    temporary_workdir,
)

MAIN_SCENARIO_MEMBERS = 20_000  # the org the main scenario's targets are set for
MAIN_SCENARIO_WORKSPACES = 1_000
MAIN_SCENARIO_INVITES = 500
TARGET_SECONDS = 20.0
TARGET_CALL_RATIO = 1.2
# Peak memory of a sync (the CLI, dbt inside it, and its children) by org size: issue 13's targets.
MEMORY_TARGETS_MB = {20_000: 800.0, 50_000: 1024.0}

COLUMNS = [
    "scenario", "run", "wall s", "CPU s", "API calls", "429s", "lower bound", "calls / bound",
    "peak RSS MB", "load", "naive wall s", "naive calls", "naive / ours (time)",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=MAIN_SCENARIO_MEMBERS)
    parser.add_argument("--workspaces", type=size, default=MAIN_SCENARIO_WORKSPACES)
    parser.add_argument("--pending-invites", type=size, default=MAIN_SCENARIO_INVITES)
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--rate-limit-per-minute", type=per_minute, default=2_000)
    parser.add_argument("--repeat", type=rounds, default=5,
                        help="syncs of the main scenario (the first is cold)")
    parser.add_argument("--growth", type=sizes, default="1000,5000,20000,50000",
                        help="member counts for the growth table ('' to skip)")
    parser.add_argument("--no-per-workspace", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--quick", action="store_true", help="main scenario only")
    parser.add_argument("--memory", action="store_true",
                        help="only the memory scenario: a cold and a warm sync at each size of "
                        "--memory-sizes (no naive read)")
    parser.add_argument("--memory-sizes", type=sizes, default="20000,50000",
                        help="member counts of the memory scenario")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.growth, args.no_per_workspace = [], True

    print(f"Machine: {machine_line()}")
    print(f"Sandbox: {args.latency_ms:g} ms latency per request, "
          f"{args.rate_limit_per_minute} requests/min per key\n", flush=True)
    results: dict[str, list[dict]] = {}
    workdir = temporary_workdir("langsmith-access-sync-bench-")
    if args.memory:
        try:
            results["memory"] = memory_scenario(args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        return 0
    try:
        main_rows = scenario(
            "main", args, workdir, members=args.members, pending=args.pending_invites,
            route="enriched_members", repeat=args.repeat,
        )
        results["main"] = main_rows
        print_table(f"Main scenario: {args.members:,} members", main_rows)
        print_phases("main scenario", main_rows)
        if not args.no_per_workspace:
            # Three syncs: cold; again at once (its first minute shares the rate-limit window
            # with the cold sync's ~1,045 calls, so the API's 429s pace it); again after that
            # window has passed, as an hourly sync would run.
            rows = scenario(
                "per-workspace route", args, workdir, members=args.members,
                pending=args.pending_invites, route="workspace_members", repeat=3,
                labels=["cold", "warm, same minute", "warm, next window"],
                pause_before={2: 61.0},
            )
            results["per_workspace"] = rows
            print_table("Per-workspace route (enriched route unavailable), same org", rows)
            print_phases("per-workspace route, next window", rows, runs=["warm, next window"])
        if args.growth:
            rows = []
            for members in args.growth:
                rows += scenario(
                    f"{members:,} members", args, workdir, members=members, pending=members // 40,
                    route="enriched_members", repeat=2,
                )
            results["growth"] = rows
            print_table(f"Growth (enriched route, {args.workspaces:,} workspaces)", rows)
            print_growth(rows)
            print_memory([r for r in rows if org_size(r) in MEMORY_TARGETS_MB], args.workspaces)
        verdict(results.get("main", []), members=args.members, workspaces=args.workspaces,
                pending_invites=args.pending_invites)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def scenario(
    name, args, workdir: Path, *, members: int, pending: int, route: str, repeat: int,
    labels: list[str] | None = None, pause_before: dict[int, float] | None = None,
):
    """``repeat`` syncs of one org; ``pause_before`` {attempt: seconds} waits that long after
    the previous sync ended (to let the API's 60-second rate-limit window pass)."""
    sandbox = start_sandbox(
        members=members, workspaces=args.workspaces, pending_invites=pending,
        latency_ms=args.latency_ms, rate_limit_per_minute=args.rate_limit_per_minute,
        enriched_route=route == "enriched_members",
    )
    try:
        org = sandbox.org
        grants = sum(len(w.memberships) for w in org.workspaces.values() if w.is_shared)
        print(f"{name}: {len(org.active_members()):,} members, {len(org.pending_invites):,} "
              f"pending invites, {sum(w.is_shared for w in org.workspaces.values()):,} shared "
              f"workspaces, {grants:,} workspace grants", flush=True)
        bound = lower_bound_calls(sandbox, route)
        naive = None if args.no_naive else naive_on_its_own_sandbox(args, members, pending)
        if naive is not None:
            print(f"  naive sequential read: {naive.wall_seconds:.1f} s, {naive.calls} calls",
                  flush=True)
        database = workdir / name.replace(" ", "-").replace(",", "") / "access.duckdb"
        env = cli_env(sandbox, database)
        # Not --quiet: the progress lines on stderr time the phases of the run.
        cli_args = ["sync"] + (["--membership-route", route] if route != "enriched_members" else [])
        rows = []
        for attempt in range(repeat):
            if pause_before and attempt in pause_before:
                print(f"  (waiting {pause_before[attempt]:g} s for a fresh rate-limit window)",
                      flush=True)
                time.sleep(pause_before[attempt])
            run = run_cli(cli_args, env, sandbox)
            if not run.ok:
                print(run.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name}: sync failed (exit {run.returncode})")
            label = labels[attempt] if labels else ("cold" if attempt == 0 else f"warm {attempt}")
            rows.append(row(name, label, run, bound, naive))
            rows[-1]["phases"] = phases(run, database)
            rows[-1]["memory_phases"] = memory_phases(run, database)
            print(f"  {rows[-1]['run']}: {run.wall_seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU, "
                  f"{run.api_calls} calls ({run.rate_limited} answered 429), "
                  f"{run.peak_tree_rss_mb:.0f} MB (CLI {run.peak_cli_rss_mb:.0f}, "
                  f"children {run.peak_child_rss_mb:.0f}), load {run.load_before:.1f}", flush=True)
        return rows
    finally:
        sandbox.stop()


def memory_scenario(args, workdir: Path) -> list[dict]:
    """A cold and a warm sync of each org size in ``--memory-sizes`` (enriched route, members /
    40 invites); prints their peak memory and API calls."""
    args.no_naive = True
    rows = []
    for members in args.memory_sizes:
        rows += scenario(
            f"{members:,} members", args, workdir, members=members, pending=members // 40,
            route="enriched_members", repeat=2,
        )
    print_memory(rows, args.workspaces)
    return rows


def org_size(row: dict) -> int:
    return int(row["scenario"].split()[0].replace(",", ""))


def print_memory(rows: list[dict], workspaces: int) -> None:
    """Peak memory of each sync: the CLI and its children together (sampled), and each process's own
    high-water mark; with the API calls against the lower bound and the targets."""
    if not rows:
        return
    print("\n### Peak memory by org size (enriched route)\n")
    lines = []
    for r in rows:
        # issue 13's targets, for orgs of 1,000 workspaces
        target = MEMORY_TARGETS_MB.get(org_size(r)) if workspaces == MAIN_SCENARIO_WORKSPACES else None
        verdict = "-" if target is None else (
            f"< {target:,.0f}: {'met' if r['peak_rss_mb'] < target else 'NOT met'}")
        lines.append([r["scenario"], r["run"], r["peak_rss_mb"], r["peak_cli_rss_mb"],
                      r["peak_dbt_rss_mb"], verdict, r["api_calls"], r["lower_bound"],
                      f"{r['call_ratio']:.2f}x", r["wall_seconds"], r["load"]])
    print(markdown_table(
        ["org", "run", "peak RSS MB (CLI + children)", "CLI process peak MB", "children's peak MB",
         "target MB", "API calls", "lower bound", "calls / bound", "wall s", "load"],
        lines,
    ))
    print("\n### Where the memory goes: largest RSS in each phase, CLI / children (MB)\n")
    names = [name for name, _, _ in PHASES]
    print(markdown_table(["phase"] + [f"{r['scenario']}, {r['run']}" for r in rows], [
        [name] + [
            "/".join(str(v) for v in r["memory_phases"][name])
            if name in r.get("memory_phases", {}) else "-"
            for r in rows
        ]
        for name in names
    ]))
    print(flush=True)


def naive_on_its_own_sandbox(args, members: int, pending: int):
    """The naive read of an identical org, on a sandbox of its own: the rate limit counts
    requests per key and window, and the naive reader's must not eat into our syncs' window."""
    sandbox = start_sandbox(
        members=members, workspaces=args.workspaces, pending_invites=pending,
        latency_ms=args.latency_ms, rate_limit_per_minute=args.rate_limit_per_minute,
    )
    try:
        return run_naive_read(sandbox)
    finally:
        sandbox.stop()


def row(name: str, label: str, run: CliRun, bound: int, naive) -> dict:
    return {
        "scenario": name,
        "run": label,
        "wall_seconds": round(run.wall_seconds, 2),
        "cpu_seconds": round(run.cpu_seconds, 2),
        "api_calls": run.api_calls,
        "rate_limited": run.rate_limited,
        "lower_bound": bound,
        "call_ratio": round(run.api_calls / bound, 3),
        "peak_rss_mb": round(run.peak_tree_rss_mb),
        "peak_cli_rss_mb": round(run.peak_cli_rss_mb),
        "peak_dbt_rss_mb": round(run.peak_child_rss_mb),
        "load": round(run.load_before, 1),
        "naive_wall_seconds": round(naive.wall_seconds, 1) if naive else None,
        "naive_calls": naive.calls if naive else None,
        # two decimals: a small org's naive read, a few % of our time, printed as "0.0x"
        "naive_ratio": round(naive.wall_seconds / run.wall_seconds, 2) if naive else None,
    }


PHASES = [
    ("python + CLI start", None, "Syncing "),
    ("Dagster start-up (imports, definitions, instance, run)", "Syncing ", "… raw__roles"),
    ("extraction (API, parse, raw load)", "… raw__roles", "✓ raw_members"),
    ("dbt start-up (process, imports, saved parse)", "… access_tables", "dbt:FoundStats"),
    ("dbt models, snapshot and checks", "dbt:FoundStats", "✓ access_tables"),
    ("publish (sync_runs, commit, copy, Parquet)", "… analysts_database", "✓ analysts_database"),
    ("summary and exit", "✓ analysts_database", None),
]


def phases(run: CliRun, database: Path) -> dict[str, float]:
    """Seconds spent in each phase of one sync, from the times the CLI's progress lines arrived
    and the timestamps in dbt's log (the run's last dbt invocation)."""
    result = {}
    for name, begin, finish in phase_spans(run, database):
        result[name] = round(finish - begin, 2)
    return result


def memory_phases(run: CliRun, database: Path) -> dict[str, tuple[float, float]]:
    """The largest RSS of the CLI process and of its children during each phase of one sync (MB)."""
    result = {}
    for name, begin, finish in phase_spans(run, database):
        samples = [(cli, dbt) for at, cli, dbt in run.rss_timeline if begin <= at <= finish]
        if samples:
            result[name] = (round(max(c for c, _ in samples)), round(max(d for _, d in samples)))
    return result


def phase_spans(run: CliRun, database: Path) -> list[tuple[str, float, float]]:
    """(phase, start, end) in seconds since the CLI started, for the phases that could be told."""
    marks: dict[str, float] = {}
    for at, line in run.stderr_lines:
        for _, start, end in PHASES:
            for mark in (start, end):
                if mark and not mark.startswith("dbt:") and line.strip().startswith(mark.strip()):
                    marks.setdefault(mark, at)
    log = database.with_name(database.name.removesuffix(".duckdb") + ".dbt") / "dbt.log"
    if log.exists():
        found = None
        for line in log.read_text().splitlines():
            if line.startswith("{") and '"FoundStats"' in line:
                found = datetime.fromisoformat(json.loads(line)["info"]["ts"].replace("Z", "+00:00"))
            elif "]: Found " in line and " models" in line:
                # dbt's text log (dbt in the CLI's process): local time of day only.
                day = datetime.fromtimestamp(run.started_at).date()
                found = datetime.combine(day, time_of_day.fromisoformat(line.split(" ", 1)[0]))
        if found:
            when = found.timestamp()
            if when < run.started_at - 43_200:  # the run crossed midnight
                when += 86_400
            marks["dbt:FoundStats"] = when - run.started_at
    spans = []
    for name, start, end in PHASES:
        begin = 0.0 if start is None else marks.get(start)
        finish = run.wall_seconds if end is None else marks.get(end)
        if begin is not None and finish is not None:
            spans.append((name, begin, finish))
    return spans


def print_phases(title: str, rows: list[dict], runs: list[str] | None = None) -> None:
    if runs:
        rows = [r for r in rows if r["run"] in runs]
    warm, kind = [r for r in rows if r["run"] != "cold" and r.get("phases")], "warm syncs"
    if not warm:  # --repeat 1: the cold sync, said so
        warm, kind = [r for r in rows if r.get("phases")], "cold syncs"
    if not warm:
        return
    print(f"\n### Where the time goes: {title} (median of {len(warm)} {kind})\n")
    lines = [[name, median([r["phases"][name] for r in warm if name in r["phases"]])]
             for name, _, _ in PHASES]
    lines.append(["total (wall)", median([r["wall_seconds"] for r in warm])])
    print(markdown_table(["phase", "seconds"], lines))
    print(flush=True)


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print(markdown_table(COLUMNS, [[
        r["scenario"], r["run"], r["wall_seconds"], r["cpu_seconds"], r["api_calls"],
        r["rate_limited"], r["lower_bound"], f"{r['call_ratio']:.2f}x", r["peak_rss_mb"], r["load"],
        r["naive_wall_seconds"] if r["naive_wall_seconds"] is not None else "-",
        r["naive_calls"] if r["naive_calls"] is not None else "-",
        f"{r['naive_ratio']}x" if r["naive_ratio"] is not None else "-",
    ] for r in rows]))
    print(flush=True)


def print_growth(rows: list[dict]) -> None:
    """Warm syncs by org size, and what each size added over the previous one per 1,000
    members: a fixed cost (start-up, dbt's ~125 nodes) plus a part that grows with the org."""
    warm = [r for r in rows if r["run"] != "cold"]
    if not warm:
        return
    lines, previous = [], None
    for r in warm:
        members = int(r["scenario"].split()[0].replace(",", ""))
        if previous is None:
            marginal_time = marginal_calls = "-"
        else:
            added = (members - previous[0]) / 1000
            marginal_time = round((r["wall_seconds"] - previous[1]) / added, 3)
            marginal_calls = round((r["api_calls"] - previous[2]) / added, 2)
        lines.append([r["scenario"], r["wall_seconds"], r["cpu_seconds"], marginal_time,
                      r["api_calls"], marginal_calls, r["peak_rss_mb"]])
        previous = (members, r["wall_seconds"], r["api_calls"])
    print(markdown_table(
        ["org", "warm wall s", "CPU s", "added s per 1k members", "API calls",
         "added calls per 1k members", "peak RSS MB"],
        lines,
    ))
    print(flush=True)


def verdict(rows: list[dict], *, members: int, workspaces: int, pending_invites: int) -> None:
    if not rows:
        return
    warm = [r for r in rows if r["run"] != "cold"]
    kind = "median of warm syncs" if warm else "the cold sync: no warm one"
    wall = median([r["wall_seconds"] for r in warm or rows])
    ratio = max(r["call_ratio"] for r in rows)
    memory = max(r["peak_rss_mb"] for r in rows)
    # The time and memory targets are set for orgs of given sizes: a smaller org meets them
    # whatever the code does. The call ratio holds at any size.
    print(f"Targets (main scenario, {kind}):")
    if (members, workspaces, pending_invites) == (
            MAIN_SCENARIO_MEMBERS, MAIN_SCENARIO_WORKSPACES, MAIN_SCENARIO_INVITES):
        print(f"  wall time  {wall:6.1f} s   target <= {TARGET_SECONDS:g} s   "
              f"{'met' if wall <= TARGET_SECONDS else 'NOT met'}")
    else:
        print(f"  wall time  {wall:6.1f} s   not judged: the target is for {MAIN_SCENARIO_MEMBERS:,} members, "
              f"{MAIN_SCENARIO_WORKSPACES:,} workspaces, {MAIN_SCENARIO_INVITES} invites")
    print(f"  API calls  {ratio:6.2f} x   target <= {TARGET_CALL_RATIO:g} x the lower bound   "
          f"{'met' if ratio <= TARGET_CALL_RATIO else 'NOT met'}")
    # issue 13's, for the sizes it names (the workspaces hold most of the rows)
    memory_target = MEMORY_TARGETS_MB.get(members) if workspaces == MAIN_SCENARIO_WORKSPACES else None
    if memory_target is not None:
        print(f"  memory     {memory:6.0f} MB  target < {memory_target:g} MB   "
              f"{'met' if memory < memory_target else 'NOT met'}")
    else:
        print(f"  memory     {memory:6.0f} MB  not judged: the targets are for "
              f"{' and '.join(f'{size:,}' for size in MEMORY_TARGETS_MB)} members, "
              f"{MAIN_SCENARIO_WORKSPACES:,} workspaces")


if __name__ == "__main__":
    sys.exit(main())
