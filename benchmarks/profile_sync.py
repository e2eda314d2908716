"""Where a warm sync's time goes, in this process: cProfile of Dagster's thread and of dbt's.

    .venv/bin/python benchmarks/profile_sync.py                  # 3,000 members, 150 workspaces
    .venv/bin/python benchmarks/profile_sync.py --members 5000 --cprofile --top 60 --out /tmp/sync.prof

Starts the sandbox here, runs one sync (cold, not profiled: dbt parses the project), then one
warm sync through ``runner.run_job`` (the CLI's path, an ephemeral Dagster instance), with
``--cprofile`` under two profilers: one on the thread that runs the job (Dagster, the extract,
the translation of dbt's results into Dagster events, the publish) and one on dbt's worker
thread (``transform/invocation.py``). Prints the time of the imports (Dagster's and dbt's,
which ``bench_support`` already pulls in), the wall time of each step, the calls that matter
for the fixed cost (how many events Dagster stored, how many sqlite connections its in-memory
event log opened, how long each took), and with ``--cprofile`` each profile's top functions by
cumulative time (``--out``: and writes them). Imports are not part of the syncs (they happen
before the first); ``fixed_cost.py`` times the whole CLI.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench_support's imports (cli.common's) already bring in Dagster, dbt and the runner: timed here.
_started = time.perf_counter()
from bench_support import (  # noqa: E402
    DefaultsShown,
    rounds,
    size,
    start_sandbox,
    temporary_workdir,
    use_sandbox_environment,
)

BENCH_SUPPORT_IMPORT_SECONDS = time.perf_counter() - _started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=3_000)
    parser.add_argument("--workspaces", type=size, default=150)
    parser.add_argument("--pending-invites", type=size, default=75)
    parser.add_argument("--top", type=size, default=40)
    parser.add_argument("--cprofile", action="store_true",
                        help="also cProfile the warm sync (Dagster's thread; dbt's invoking thread)")
    parser.add_argument("--compare", type=rounds, metavar="N",
                        help="N warm syncs with each Dagster instance (stock ephemeral, the runner's), "
                        "alternating, instead of the profile")
    parser.add_argument("--out", type=Path, help="write the two profiles here (.main/.dbt suffixes)")
    args = parser.parse_args()
    if args.out and not args.cprofile:
        parser.error("--out writes the profiles of --cprofile: give both")

    sandbox = start_sandbox(members=args.members, workspaces=args.workspaces,
                            pending_invites=args.pending_invites, latency_ms=20.0,
                            rate_limit_per_minute=None)
    workdir = temporary_workdir("profile-sync-")
    use_sandbox_environment(sandbox, workdir / "access.duckdb")
    started = time.perf_counter()
    from langsmith_access import runner
    from langsmith_access.names import SYNC_JOB
    from langsmith_access.transform import invocation
    print(f"imports: {BENCH_SUPPORT_IMPORT_SECONDS + time.perf_counter() - started:.2f} s", flush=True)

    dbt_profile = cProfile.Profile()
    profiling = {"on": False}
    invoke = invocation.dbtRunner.invoke

    def profiled_invoke(self, *a, **k):
        if not profiling["on"]:
            return invoke(self, *a, **k)
        dbt_profile.enable()
        try:
            return invoke(self, *a, **k)
        finally:
            dbt_profile.disable()

    invocation.dbtRunner.invoke = profiled_invoke  # this script's process only
    timers = install_timers()

    try:
        outcome = runner.run_job(SYNC_JOB, runner.sync_run_config())
        assert outcome.success, outcome.failure
        print(f"cold sync: {outcome.duration_seconds:.2f} s (not profiled)", flush=True)
        if args.compare:
            compare(args, runner, timers)
            return 0
        steps: list[tuple[str, float]] = []
        main_profile = cProfile.Profile()
        profiling["on"] = args.cprofile
        instance = runner.instance()
        if args.cprofile:
            main_profile.enable()
        for timer in timers.values():
            timer[:] = [0, 0.0]
        outcome = runner.run_job(SYNC_JOB, runner.sync_run_config(), dagster_instance=instance,
                                 progress=lambda line: steps.append((line, time.perf_counter())))
        main_profile.disable()
        assert outcome.success, outcome.failure
        print(f"warm sync: {outcome.duration_seconds:.2f} s"
              + (" (cProfile: slower than without)" if args.cprofile else ""))
        print("time inside (wall, this thread and dbt's; calls):")
        for name, (calls, seconds) in timers.items():
            print(f"  {seconds:6.2f} s {calls:6d}  {name}")
        records = instance.get_records_for_run(outcome.run_id, limit=100_000).records
        kinds: dict[str, int] = {}
        for record in records:
            event = record.event_log_entry.dagster_event
            kind = event.event_type_value if event else "log message"
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"events stored for the run: {len(records)}: "
              + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
        for (_, before), (line, at) in itertools.pairwise(steps):
            print(f"  {at - before:6.2f} s until {line.strip()}")
        for label, profile in (("Dagster's thread", main_profile), ("dbt's thread", dbt_profile)):
            if not args.cprofile:
                break
            stream = io.StringIO()
            stats = pstats.Stats(profile, stream=stream)
            print(f"\n## {label}: total {stats.total_tt:.2f} s (own time of every function)")
            stats.sort_stats("cumulative").print_stats(args.top)
            print("\n".join(stream.getvalue().splitlines()[:args.top + 12]))
            if args.out:
                profile.dump_stats(f"{args.out}.{'main' if 'Dagster' in label else 'dbt'}")
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def compare(args, runner, timers) -> None:
    """Warm syncs alternating between Dagster's stock ephemeral instance and the runner's
    (``runner.ephemeral_instance``: one sqlite connection for the event log), in this process."""
    import dagster as dg

    kinds = {"stock": dg.DagsterInstance.ephemeral, "one-connection": runner.ephemeral_instance}
    figures: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
    for attempt in range(args.compare):
        for kind in (list(kinds) if attempt % 2 == 0 else list(reversed(kinds))):
            for timer in timers.values():
                timer[:] = [0, 0.0]
            steps: list[tuple[str, float]] = []
            outcome = runner.run_job(
                runner.SYNC_JOB, runner.sync_run_config(), dagster_instance=kinds[kind](),
                progress=lambda line, steps=steps: steps.append((line.strip(), time.perf_counter())),
            )
            assert outcome.success, outcome.failure
            marks = {line: at for line, at in steps}
            dbt_step = marks["✓ access_tables"] - marks["… access_tables"]
            in_log = timers["InMemoryEventLogStorage.store_event"][1]
            figures[kind].append((outcome.duration_seconds, dbt_step, in_log))
            print(f"{kind:>15} #{attempt + 1}: run {outcome.duration_seconds:5.2f} s, dbt step "
                  f"{dbt_step:5.2f} s, storing events {in_log:5.2f} s, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    for kind, rows in figures.items():
        columns = list(zip(*rows, strict=True))
        print(f"{kind:>15}: " + ", ".join(
            f"{label} median {statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"
            for label, values in zip(("run", "dbt step", "storing events"), columns, strict=True)))


# Functions whose wall time (and calls) a warm sync reports: what Dagster does per event, what
# the dbt step does per node result, what the steps around dbt cost.
TIMED = [
    ("dagster._core.storage.event_log.in_memory", "InMemoryEventLogStorage", "store_event"),
    ("dagster._core.storage.event_log.in_memory", "InMemoryEventLogStorage", "_connect"),
    ("dagster._core.execution.context.system", "StepExecutionContext",
     "fetch_external_input_asset_version_info"),
    ("langsmith_access.defs.transform.assets", None, "dagster_events"),
    ("langsmith_access.transform.invocation", "DbtInvocation", "__iter__"),
]


def install_timers() -> dict[str, list]:
    import contextlib
    import functools
    import importlib
    import inspect

    timers: dict[str, list] = {}
    for module_name, class_name, name in TIMED:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        original = getattr(owner, name)
        timer = timers.setdefault(f"{class_name + '.' if class_name else ''}{name}", [0, 0.0])
        if isinstance(original, contextlib.AbstractContextManager) or name == "_connect":
            @contextlib.contextmanager
            def timed_cm(*a, _original=original, _timer=timer, **k):
                started = time.perf_counter()
                with _original(*a, **k) as value:
                    _timer[1] += time.perf_counter() - started
                    yield value
                    started = time.perf_counter()
                _timer[0] += 1
                _timer[1] += time.perf_counter() - started
            wrapper = timed_cm
        elif inspect.isgeneratorfunction(original):
            def timed_gen(*a, _original=original, _timer=timer, **k):
                # only the generator's own time, not its consumer's
                generator = _original(*a, **k)
                _timer[0] += 1
                while True:
                    started = time.perf_counter()
                    try:
                        value = next(generator)
                    except StopIteration:
                        _timer[1] += time.perf_counter() - started
                        return
                    _timer[1] += time.perf_counter() - started
                    yield value
            wrapper = functools.wraps(original)(timed_gen)
        else:
            def timed(*a, _original=original, _timer=timer, **k):
                started = time.perf_counter()
                try:
                    return _original(*a, **k)
                finally:
                    _timer[0] += 1
                    _timer[1] += time.perf_counter() - started
            wrapper = functools.wraps(original)(timed)
        setattr(owner, name, wrapper)
    return timers


if __name__ == "__main__":
    sys.exit(main())
