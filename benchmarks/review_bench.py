"""Access-review benchmark: `review queue-revokes` of N marked rows, dry run and real.

    .venv/bin/python benchmarks/review_bench.py                          # 20,000 members; 100, 1000, 5000 rows
    .venv/bin/python benchmarks/review_bench.py --marks 100,1000 --members 5000 --workspaces 250
    .venv/bin/python benchmarks/review_bench.py --synced /tmp/review-sync --profile 25

Starts the sandbox in this process with the sync benchmark's org, syncs it once with the real
CLI (or reuses ``--synced DIR``'s database, syncing into DIR the first time), exports the review
sheet (CSV) and, for each N of ``--marks``, marks N random rows ``revoke`` (seeded: the same rows
every run) and times ``queue_revokes`` in this process on a fresh copy of the synced database:
first the dry run (read-only, the analysts' copy), then the real import. For the real one it
reports how long the writer lease was held (during which every sync and provisioning run of the
org waits), and of that how long the rows took and how long the publish did (a copy of the
database and its Parquet export: a fixed cost, whatever N). It then checks that every marked row
was queued (a fresh sheet's rows are all current grants). ``--profile K`` prints the K functions
with the most cumulative time of the real import at the largest N (cProfile).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import pstats
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (
    DefaultsShown,
    cli_env,
    counts,
    machine_line,
    markdown_table,
    median,
    rounds,
    run_cli,
    size,
    start_sandbox,
    temporary_workdir,
)

from langsmith_access.provisioning.review import export_review_sheet, queue_revokes, read_csv_sheet
from langsmith_access.store.database import AccessDatabase

# Seconds the lease was held and the publish took, per real import (TimedDatabase).
HELD: list[float] = []
PUBLISHED: list[float] = []


class TimedDatabase(AccessDatabase):
    """The analysts' database, timing how long its writer lease is held and its publish takes."""

    @contextlib.contextmanager
    def writer_lease(self, purpose: str, *, timeout_seconds: float = 600.0):
        with super().writer_lease(purpose, timeout_seconds=timeout_seconds):
            started = time.perf_counter()
            try:
                yield
            finally:
                HELD.append(time.perf_counter() - started)

    def publish(self, *, docs_site: Path | None = None) -> None:
        started = time.perf_counter()
        super().publish(docs_site=docs_site)
        PUBLISHED.append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    parser.add_argument("--pending-invites", type=size, default=500)
    parser.add_argument("--marks", type=counts, default=[100, 1000, 5000],
                        help="comma-separated numbers of rows to mark revoke")
    parser.add_argument("--repeat", type=rounds, default=1, help="imports of each N (the median is shown)")
    parser.add_argument("--synced", type=Path, default=None, metavar="DIR",
                        help="reuse the synced database in DIR (synced there the first time)")
    parser.add_argument("--profile", type=size, default=0, metavar="K",
                        help="print the K costliest functions (cumulative) of the largest real import")
    args = parser.parse_args()

    print(f"Machine: {machine_line()}", flush=True)
    workdir = temporary_workdir("langsmith-access-review-bench-")
    try:
        synced = sync_once(args, workdir)
        sheet_path = workdir / "review.csv"
        _, grants = export_review_sheet(AccessDatabase(synced), sheet_path)
        print(f"Exported {grants:,} workspace grants to the sheet", flush=True)
        if max(args.marks) > grants:
            raise SystemExit(f"--marks {max(args.marks)}: the sheet has {grants} rows")
        rows = []
        for marks in args.marks:
            rows.append(measure(args, workdir, synced, sheet_path, marks, profile=args.profile
                                if marks == max(args.marks) else 0))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n### Queueing an access review's revokes ({args.members:,} members, {grants:,} rows on the sheet)\n")
    print(markdown_table(
        ["marked rows", "read sheet s", "dry run s", "dry run ms / row", "real s", "real ms / row",
         "lease held s", "of which publish s", "all queued"],
        [[r["marks"], r["read"], r["dry"], r["dry"] * 1000 / r["marks"], r["real"], r["real"] * 1000 / r["marks"],
          r["held"], r["publish"], "yes" if r["all_queued"] else "NO"] for r in rows],
    ))
    return 0 if all(r["all_queued"] for r in rows) else 1


def sync_once(args: argparse.Namespace, workdir: Path) -> Path:
    """The synced analysts' copy (``access.duckdb``, with its working file beside it)."""
    target = (args.synced or workdir / "synced").expanduser().absolute()
    path = target / "access.duckdb"
    if path.exists() and AccessDatabase(path).working_path.exists():
        print(f"Reusing the synced database in {target}", flush=True)
        return path
    target.mkdir(parents=True, exist_ok=True)
    sandbox = start_sandbox(members=args.members, workspaces=args.workspaces,
                            pending_invites=args.pending_invites, latency_ms=0.0, rate_limit_per_minute=None)
    try:
        run = run_cli(["sync", "--quiet"], cli_env(sandbox, path), sandbox)
    finally:
        sandbox.stop()
    if not run.ok:
        raise SystemExit(f"sync failed:\n{run.stderr[-3000:]}")
    print(f"Synced {args.members:,} members in {run.wall_seconds:.1f} s", flush=True)
    return path


def marked_sheet(sheet_path: Path, marks: int) -> str:
    """The exported sheet with ``marks`` random rows (seeded) marked revoke."""
    with open(sheet_path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    for index in random.Random(marks).sample(range(len(rows)), marks):
        rows[index]["decision"] = "revoke"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def fresh_copy(synced: Path, run_dir: Path) -> TimedDatabase:
    """A copy of the synced database (analysts' copy and working file): each import starts from it."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    source = AccessDatabase(synced)
    database = TimedDatabase(run_dir / synced.name)
    shutil.copyfile(source.path, database.path)
    shutil.copyfile(source.working_path, database.working_path)
    return database


def measure(args: argparse.Namespace, workdir: Path, synced: Path, sheet_path: Path, marks: int,
            profile: int) -> dict:
    marked = workdir / f"marked-{marks}.csv"
    marked.write_text(marked_sheet(sheet_path, marks), encoding="utf-8")
    reads, dries, reals, held, published = [], [], [], [], []
    all_queued = True
    for round_ in range(args.repeat):
        started = time.perf_counter()
        sheet = read_csv_sheet(marked)
        reads.append(time.perf_counter() - started)
        database = fresh_copy(synced, workdir / "run")
        started = time.perf_counter()
        dry = queue_revokes(database, sheet, reviewer="bench@example.com", dry_run=True)
        dries.append(time.perf_counter() - started)
        profiler = cProfile.Profile() if profile and round_ == 0 else None
        HELD.clear()
        PUBLISHED.clear()
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        real = queue_revokes(database, sheet, reviewer="bench@example.com")
        if profiler:
            profiler.disable()
        reals.append(time.perf_counter() - started)
        held.append(HELD[0])
        published.append(PUBLISHED[0])
        all_queued &= (len(dry.with_status("would_queue")) == marks and len(real.with_status("queued")) == marks)
        print(f"  {marks:>6} rows: dry run {dries[-1]:.2f} s, real {reals[-1]:.2f} s "
              f"(lease {held[-1]:.2f} s, publish {published[-1]:.2f} s)", flush=True)
        if profiler:
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(profile)
            print(stream.getvalue(), flush=True)
    return {"marks": marks, "read": median(reads), "dry": median(dries), "real": median(reals),
            "held": median(held), "publish": median(published), "all_queued": all_queued}


if __name__ == "__main__":
    sys.exit(main())
