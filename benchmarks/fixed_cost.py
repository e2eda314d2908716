"""Fixed cost of a warm sync: two versions of the code side by side, runs interleaved.

    .venv/bin/python benchmarks/fixed_cost.py                              # this checkout, 5 warm syncs
    .venv/bin/python benchmarks/fixed_cost.py --variant base=/tmp/base --variant new=. --runs 6
    .venv/bin/python benchmarks/fixed_cost.py --profile profile.txt        # + py-spy of one warm sync

The figures that issue 13 asks about are the ones every hourly sync pays whatever the org's
size: start-up, dbt's nodes and Dagster's events for each, the publish. A mid-size org (3,000
members, 150 workspaces by default) keeps the per-member part small but real.

Each variant is a directory holding a ``langsmith_access`` package (``.`` is this checkout; any
other, e.g. ``git archive <commit> | tar -x -C /tmp/base``, is put first on ``PYTHONPATH`` of
the CLI child, so the same virtualenv runs that version's code and dbt project). Each variant
gets its own database; its first sync (cold: dbt parses the project) is run and not counted;
then the warm syncs alternate between variants (A B, then B A, ...), so a change in the shared
machine's load touches both alike. Printed: per run, wall and CPU seconds, the machine's load,
the phases told by the CLI's progress lines; then each variant's median and range.

``--profile FILE`` samples one more warm sync of the first variant with py-spy (not a dependency
of the project: ``pip install py-spy``; every thread, idle ones excluded) and writes where its
samples fall, by part of the stack (a rough first rule that matches wins), to FILE.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    DefaultsShown,
    cli_env,
    duration,
    median,
    rounds,
    run_cli,
    size,
    start_sandbox,
    temporary_workdir,
)
from sync_bench import PHASES, phase_spans

HERE = Path(__file__).resolve().parents[1]
SHORT_PHASES = {
    PHASES[0][0]: "cli", PHASES[1][0]: "dagster", PHASES[2][0]: "extract",
    PHASES[3][0]: "dbt start", PHASES[4][0]: "dbt nodes", PHASES[5][0]: "publish",
    PHASES[6][0]: "exit",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=DIR (repeatable); default: this checkout only")
    parser.add_argument("--members", type=size, default=3_000)
    parser.add_argument("--workspaces", type=size, default=150)
    parser.add_argument("--pending-invites", type=size, default=75)
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--runs", type=rounds, default=5, help="warm syncs per variant")
    parser.add_argument("--all-sections", action="store_true",
                        help="the cold sync also runs the inventory (its tables exist, as in production)")
    parser.add_argument("--profile", type=Path, help="py-spy one more warm sync of the first variant")
    args = parser.parse_args()

    variants = [v.split("=", 1) for v in args.variant] or [["this", "."]]
    for spec in variants:
        # Without the package there, the CLI would run the installed code and the comparison
        # would compare it with itself.
        if len(spec) != 2 or not (HERE if spec[1] == "." else Path(spec[1]) / "langsmith_access").is_dir():
            parser.error(f"--variant {'='.join(spec)!r}: write NAME=DIR, DIR holding a langsmith_access package")
    if args.profile and py_spy() is None:  # found missing only after every sync, with a traceback
        parser.error("--profile needs py-spy, which is not a dependency of the project: pip install py-spy")
    names = [name for name, _ in variants]
    if len(set(names)) < len(names):  # one database and one set of figures for two versions
        parser.error(f"--variant: give each variant its own name (given: {', '.join(names)})")
    sandbox = start_sandbox(
        members=args.members, workspaces=args.workspaces, pending_invites=args.pending_invites,
        latency_ms=args.latency_ms, rate_limit_per_minute=None,
    )
    workdir = temporary_workdir("fixed-cost-")
    try:
        print(f"org: {args.members:,} members, {args.workspaces} workspaces, "
              f"{args.pending_invites} invites; {args.latency_ms:g} ms latency", flush=True)
        envs = {}
        for name, directory in variants:
            database = workdir / name / "access.duckdb"
            env = cli_env(sandbox, database)
            # First on the path, "." too: the virtualenv's install may be another checkout's.
            env["PYTHONPATH"] = str(HERE if directory == "." else Path(directory).resolve())
            envs[name] = (env, database)
            cold = run_cli(["sync", *(["--all-sections"] if args.all_sections else [])], env, sandbox,
                           cwd=workdir)
            check(cold, name)
            print(f"{name}: cold {cold.wall_seconds:.1f} s (not counted)", flush=True)
        results: dict[str, list] = collections.defaultdict(list)
        for attempt in range(args.runs):
            for name, _ in variants if attempt % 2 == 0 else reversed(variants):
                env, database = envs[name]
                run = run_cli(["sync"], env, sandbox, cwd=workdir)
                check(run, name)
                spans = {SHORT_PHASES[p]: round(e - b, 2) for p, b, e in phase_spans(run, database)}
                results[name].append((run, spans))
                print(f"{name} #{attempt + 1}: {run.wall_seconds:5.2f} s wall, {run.cpu_seconds:5.2f} s CPU, "
                      f"peak {run.peak_tree_rss_mb:.0f} MB, "
                      f"load {run.load_before:.1f}  "
                      + " ".join(f"{k} {v:.2f}" for k, v in spans.items()), flush=True)
        print()
        for name, _ in variants:
            runs = results[name]
            walls = [r.wall_seconds for r, _ in runs]
            cpus = [r.cpu_seconds for r, _ in runs]
            line = (f"{name}: wall median {median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}), "
                    f"CPU median {median(cpus):.2f} s ({min(cpus):.2f}-{max(cpus):.2f})")
            phases = collections.defaultdict(list)
            for _, spans in runs:
                for key, value in spans.items():
                    phases[key].append(value)
            print(line + "; phases (median): "
                  + ", ".join(f"{k} {median(v):.2f}" for k, v in phases.items()))
        if args.profile:
            name = variants[0][0]
            env, _ = envs[name]
            profile(env, sandbox, workdir, args.profile)
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def check(run, name: str) -> None:
    if not run.ok:
        print(run.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name}: sync failed (exit {run.returncode})")


# Where a CPU sample falls: the first rule (in order) whose text is in the stack.
BUCKETS = [
    ("start-up: imports", ("_find_and_load",)),
    ("dbt: InMemoryEventLogStorage (sqlite per event)", ("in_memory.py",)),
    ("dagster: event handling (store, log, listeners)", ("handle_new_event", "log_dagster_event",
                                                         "store_event", "report_engine_event")),
    ("dagster: dbt result -> events (dagster-dbt)", ("dbt_cli_event.py", "dagster_events")),
    ("dbt: adapter SQL (DuckDB)", ("duckdb/connections.py", "adapters/sql/connections.py")),
    ("dbt: compile / jinja", ("jinja", "compilation.py")),
    ("dbt: other", ("/dbt/", "/dbt_common/", "/dbt/adapters")),
    ("publish", ("publish", "export.py")),
    ("extract", ("langsmith_access/sync", "langsmith_access/langsmith", "store/raw")),
    ("dagster: other", ("/dagster/", "/dagster_dbt/")),
]


def py_spy() -> str | None:
    """The py-spy executable: on PATH or in this virtualenv; None when neither has it."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def profile(env: dict, sandbox, workdir: Path, out: Path) -> None:
    spy = py_spy()
    assert spy is not None  # main() refused --profile without it
    raw = workdir / "profile.raw"
    cli = str(Path(sys.executable).with_name("langsmith-access"))
    subprocess.run([spy, "record", "--format", "raw", "--rate", "250", "--nonblocking",
                    "--output", str(raw), "--", cli, "sync", "--quiet"],
                   env=env, cwd=workdir, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    totals: collections.Counter = collections.Counter()
    frames: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        bucket = next((label for label, needles in BUCKETS if any(s in stack for s in needles)),
                      "other")
        totals[bucket] += n
        for frame in set(stack.split(";")):
            frames[frame] += n
    with open(out, "w") as f:
        f.write(f"{samples} samples at 250 Hz ({samples / 250:.1f} s of CPU, every thread)\n\n")
        for label, n in totals.most_common():
            f.write(f"{n / 250:7.2f} s  {100 * n / samples:5.1f}%  {label}\n")
        f.write("\nframes in most samples (inclusive):\n")
        for frame, n in frames.most_common(80):
            f.write(f"{n / 250:7.2f} s  {frame}\n")
    print(f"\nprofile of one warm sync: {out}")
    print(out.read_text().split("\nframes")[0])


if __name__ == "__main__":
    os.environ.pop("DAGSTER_HOME", None)
    sys.exit(main())
