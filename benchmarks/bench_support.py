"""What the benchmarks share: a sandbox in this process, the real CLI in a child process (timed,
with its CPU time, API calls and peak memory), the API's lower bound, and a naive baseline.

The CLI child gets only the four ``LANGSMITH_*`` variables the docs name (and the user's
``LANGSMITH_ACCESS_CACHE_DIR``), and no ``DAGSTER_HOME`` (so each run uses an ephemeral Dagster
instance, as a plain ``langsmith-access sync`` does).
"""

from __future__ import annotations

import argparse
import atexit
import copy
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from langsmith_access.cli.common import whole_number
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.faults import FaultConfig

CLI = str(Path(sys.executable).with_name("langsmith-access"))
PAGE = 500
ENRICHED = "/api/v1/platform/orgs/current/members"  # platform routes are called under /api/v1
ACTIVE = "/api/v1/orgs/current/members/active"
PENDING = "/api/v1/orgs/current/members/pending"
WORKSPACES = "/api/v1/workspaces"
ROLES = "/api/v1/orgs/current/roles"
WORKSPACE_ACTIVE = "/api/v1/workspaces/current/members/active"
# argparse types, so that a bad value is refused before any work: a negative size failed in the
# sandbox's generator with a traceback, and ``--runs 0`` or ``--requests 0`` only after the syncs
# (the median or the share of nothing).
rounds = whole_number(1)  # --repeat, --runs, --samples: a median of none is no figure
size = whole_number(0)  # members, workspaces, invites, requests
per_minute = whole_number(1)  # a rate limit of 0 would answer every request 429


def duration(text: str) -> float:
    """argparse type of a duration, 0 or more (--latency-ms, --idle-seconds): a negative one was
    taken as none and printed beside the figures as if it had been simulated, and 'nan' failed in
    the sandbox's threads."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a duration: give 0 or more")
    return value


def sizes(text: str) -> list[int]:
    """argparse type of a comma-separated list of sizes (``--growth 1000,5000``; '' for none)."""
    return [size(part.strip()) for part in text.split(",") if part.strip()]


def counts(text: str) -> list[int]:
    """argparse type of a comma-separated list of counts, each 1 or more, and at least one
    (``--orgs 10,50``, ``--marks 100,1000``): an orgs file of 0 orgs failed with a traceback, and
    0 marked rows in a division, both after the benchmark's work."""
    values = [rounds(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no count: give one or more, comma-separated")
    return values


class DefaultsShown(argparse.HelpFormatter):
    """Every benchmark's --help: each option with its default (argparse's own formatter shows one
    only beside a help text, and prints False and None too)."""

    def _format_action(self, action: argparse.Action) -> str:
        default = action.default
        if action.option_strings and not (default is None or default is False or default == []
                                          or default is argparse.SUPPRESS):
            action = copy.copy(action)
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        return super()._format_action(action)


def temporary_workdir(prefix: str) -> Path:
    """A new temporary directory for one benchmark's databases, which its ``finally`` removes.
    A SIGTERM (``timeout``, ``kill``) now ends the benchmark through those ``finally`` blocks,
    as Ctrl-C does: Python's default ends the process where it stands, which left a 20,000-member
    run's databases (gigabytes) in the temporary directory. A SIGKILL (``kill -9``, the OOM
    killer) runs no ``finally``: its name carries the process id, so the next run of any
    benchmark with that prefix removes it (``remove_left_by_dead_runs``).

    A SIGTERM between the directory's creation and the caller's ``try`` (the moment a test that
    waits for the directory to appear sends it; seen in CI) would skip those ``finally`` blocks:
    every directory made here is listed before it exists and removed at exit too."""
    remove_left_by_dead_runs(prefix)
    signal.signal(signal.SIGTERM, _exit_through_finally)
    if not _WORKDIRS:
        atexit.register(_remove_workdirs)
    path = Path(tempfile.gettempdir()) / f"{prefix}pid{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _WORKDIRS.append(path)  # before it exists: a SIGTERM from here on finds it listed
    path.mkdir(mode=0o700)  # as tempfile.mkdtemp: this user's only
    return path


# The directories temporary_workdir made in this process, removed at its exit.
_WORKDIRS: list[Path] = []


def keep_workdir(path: Path) -> Path:
    """Keep a directory ``temporary_workdir`` made (``--keep``): it is renamed out of the
    ``{prefix}pid*`` pattern, so neither this process's exit nor the next benchmark of the prefix
    (which removes a dead process's directories) removes it, and left off the exit's list. The
    new path; its files are unchanged."""
    own = f"pid{os.getpid()}-"
    kept = path.with_name(path.name.replace(own, f"kept-{own}", 1))
    path.rename(kept)
    _WORKDIRS.remove(path)
    return kept


def _remove_workdirs() -> None:
    for path in _WORKDIRS:
        shutil.rmtree(path, ignore_errors=True)


def remove_left_by_dead_runs(prefix: str) -> list[Path]:
    """Remove the temporary directories of ``prefix`` whose benchmark process is gone; the ones
    removed. One of a live process (another benchmark running now) is left alone."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}pid*-*"):
        pid = path.name[len(prefix) + len("pid"):].partition("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _exit_through_finally(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------- the sandbox


def start_sandbox(
    *,
    members: int,
    workspaces: int,
    pending_invites: int,
    latency_ms: float,
    rate_limit_per_minute: int | None,
    seed: int = 42,
    enriched_route: bool = True,
) -> SandboxServer:
    org = generate_org(
        seed=seed, members=members, workspaces=workspaces, pending_invites=pending_invites
    )
    # With a minute's limit, LangSmith's 10-second one too (1000, half of its 2000 a minute).
    per_10_seconds = None if rate_limit_per_minute is None else max(1, rate_limit_per_minute // 2)
    faults = FaultConfig(latency_ms=latency_ms, rate_limit_per_minute=rate_limit_per_minute,
                         rate_limit_per_10_seconds=per_10_seconds)
    return SandboxServer(org, faults=faults, enriched_route=enriched_route).start()


def settings_left_out(name: str) -> bool:
    """The user's LangSmith and Dagster settings, which a benchmark must not use. Not the cache
    directory: the manifest ``make manifest`` built is there, and a CLI sent elsewhere would
    build it again inside the first sync it times."""
    return name.startswith(("LANGSMITH", "DAGSTER_HOME")) and name != "LANGSMITH_ACCESS_CACHE_DIR"


def cli_env(sandbox: SandboxServer, database: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not settings_left_out(k)}
    env.update(sandbox.environment(database), **extra)
    return env


def use_sandbox_environment(sandbox: SandboxServer, database: Path) -> None:
    """``cli_env`` for this process, for the benchmarks that run a job in it: an orgs file, a
    policy or a webhook set in the user's shell would otherwise be used instead of the sandbox's
    (an orgs file's org is synced with its real key)."""
    for name in [k for k in os.environ if settings_left_out(k)]:
        del os.environ[name]
    os.environ.update(sandbox.environment(database))


def lower_bound_calls(sandbox: SandboxServer, route: str) -> int:
    """The fewest requests that can read the whole org: roles, workspaces and the org info (its
    settings and plan flags: one call each), then every member, invite and membership in
    500-row pages."""
    org = sandbox.org
    active = len(org.active_members())
    pending = len(org.pending_invites)
    if route == "enriched_members":
        return 3 + math.ceil((active + pending) / PAGE)
    shared = [w for w in org.workspaces.values() if w.is_shared]
    return (
        3
        + max(1, math.ceil(active / PAGE))
        + max(1, math.ceil(pending / PAGE))
        + sum(max(1, math.ceil(len(w.memberships) / PAGE)) for w in shared)
    )


# --------------------------------------------------------------------------- the CLI, timed


@dataclass
class CliRun:
    args: list[str]
    returncode: int
    wall_seconds: float
    cpu_seconds: float  # user + system, the CLI (dbt runs in it) and every process it waited for
    peak_tree_rss_mb: float  # largest sum of RSS over the CLI and its descendants, sampled
    max_process_rss_mb: float  # largest single process (getrusage ru_maxrss)
    # The kernel's high-water mark of each process (VmHWM): exact, not sampled.
    peak_cli_rss_mb: float  # the CLI process (Dagster, the extraction, dbt, the publish)
    peak_child_rss_mb: float  # the largest of its descendants (not dbt: multiprocessing's resource tracker)
    api_calls: int  # requests the sandbox received during the run
    load_before: float
    load_after: float
    stdout: str
    stderr: str
    writes: int = 0  # POST/PATCH/DELETE the sandbox received
    rate_limited: int = 0  # requests the sandbox answered 429
    started_at: float = 0.0  # time.time() when the child was started
    # (seconds since start, line) for every line the CLI printed on stderr (its progress)
    stderr_lines: list[tuple[float, str]] = field(default_factory=list)
    # (seconds since start, CLI RSS MB, its descendants' RSS MB), every 20 ms
    rss_timeline: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_cli(
    args: list[str], env: dict[str, str], sandbox: SandboxServer, cwd: Path | None = None
) -> CliRun:
    sandbox.reset_log()
    load_before = os.getloadavg()[0]
    started_at = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        [CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )
    sampler = _TreeRssSampler(process.pid, started)
    sampler.start()
    try:
        stdout, stderr_lines = _communicate_and_wait4(process, started)
    except BaseException:
        # Stopped while the CLI runs (SIGTERM from `kill`, which reaches this process only; an
        # error): the CLI must not go on syncing into the directory the caller's finally removes.
        stop_process(process)
        raise
    finally:
        sampler.stop()
    wall = time.perf_counter() - started
    usage = process.rusage
    logged = sandbox.request_log.snapshot()
    return CliRun(
        args=args,
        returncode=process.returncode,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_tree_rss_mb=sampler.peak_kb / 1024,
        max_process_rss_mb=usage.ru_maxrss / 1024,
        peak_cli_rss_mb=sampler.root_hwm_kb / 1024,
        peak_child_rss_mb=sampler.child_hwm_kb / 1024,
        api_calls=len(logged),
        writes=sum(1 for e in logged if e.method in ("POST", "PATCH", "DELETE")),
        rate_limited=sum(1 for e in logged if e.status == 429),
        load_before=load_before,
        load_after=os.getloadavg()[0],
        stdout=stdout,
        stderr="".join(line for _, line in stderr_lines),
        started_at=started_at,
        stderr_lines=stderr_lines,
        rss_timeline=sampler.timeline,
    )


def _communicate_and_wait4(
    process: subprocess.Popen, started: float
) -> tuple[str, list[tuple[float, str]]]:
    """Read both pipes to the end (stderr line by line, each with the time it arrived), then
    reap the child with ``wait4`` for its resource usage (which covers the grandchildren it
    waited for, such as dbt)."""
    out: list[str] = []
    err: list[tuple[float, str]] = []

    def read_stderr() -> None:
        for line in process.stderr:
            err.append((time.perf_counter() - started, line))

    readers = [
        threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True),
        threading.Thread(target=read_stderr, daemon=True),
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped: nothing left to stop
    process.rusage = usage  # type: ignore[attr-defined]
    for reader in readers:
        reader.join()
    return "".join(out), err


def stop_process(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """End a child this benchmark started and has not reaped, by its pid: SIGTERM, then SIGKILL
    if it is still there after ``grace_seconds``."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants every 20 ms, and reads each one's
    high-water mark (VmHWM, which the kernel keeps exactly: a peak between samples is not lost,
    as long as the process is sampled once after it).

    A child caught between its fork and its exec is left out: until it runs its own program its
    memory is its parent's (the same pages; with vfork, the same address space), and /proc gives
    it the parent's RSS and high-water mark. Counted, a sample there added the whole CLI a second
    time (a 366 MB CLI starting multiprocessing's 13 MB resource tracker read as 241 MB of
    children, and the tree's peak as 477 MB), on some runs and not others."""

    def __init__(self, pid: int, started: float):
        super().__init__(daemon=True)
        self.pid = pid
        self.started = started  # time.perf_counter() when the process was started
        self.peak_kb = 0
        self.root_hwm_kb = 0
        self.child_hwm_kb = 0
        self.timeline: list[tuple[float, float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            root_kb = children_kb = 0
            for pid, parent in _tree(self.pid):
                if pid != self.pid and _not_yet_executed(pid, parent):
                    continue
                rss, hwm = _rss_and_hwm_kb(pid)
                if pid == self.pid:
                    root_kb = rss
                    self.root_hwm_kb = max(self.root_hwm_kb, hwm)
                else:
                    children_kb += rss
                    self.child_hwm_kb = max(self.child_hwm_kb, hwm)
            self.peak_kb = max(self.peak_kb, root_kb + children_kb)
            self.timeline.append(
                (time.perf_counter() - self.started, root_kb / 1024, children_kb / 1024)
            )

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _tree(root: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of ``root`` and of each of its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [(root, 0)]
    while queue:
        pid, parent = queue.pop()
        found.append((pid, parent))
        queue.extend((child, pid) for child in children.get(pid, []))
    return found


def _not_yet_executed(pid: int, parent: int) -> bool:
    """Whether ``pid`` still runs its parent's program, forked and not yet exec'd: its command
    line (read from its memory) is its parent's. Read before its RSS: one that execs in between
    is then counted with its own program's memory. False once either is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as child, open(f"/proc/{parent}/cmdline", "rb") as parents:
            return child.read() == parents.read()
    except OSError:
        return False


def _rss_and_hwm_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; zeros once it is gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key = line.split(None, 1)[0] if line.strip() else ""
                if key in values:
                    values[key] = int(line.split()[1])
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


# ------------------------------------------------------------------------ the naive baseline


@dataclass
class NaiveRead:
    """How a typical connector reads the same org: one request at a time, one workspace after
    another, with plain ``requests``; no transform, no database (so its time is a floor)."""

    wall_seconds: float = 0.0
    calls: int = 0
    rate_limited: int = 0
    members: int = 0
    pending_invites: int = 0
    memberships: int = 0
    workspaces_read: int = 0


def naive_read(url: str, organization_id: str, api_key: str) -> NaiveRead:
    result = NaiveRead()
    session = requests.Session()
    session.headers.update({"X-API-Key": api_key, "X-Organization-Id": organization_id})

    def get(path: str, params: dict | None = None, tenant: str | None = None):
        headers = {"X-Tenant-Id": tenant} if tenant else {}
        while True:
            result.calls += 1
            response = session.get(url + path, params=params, headers=headers, timeout=60)
            if response.status_code == 429:  # wait as told, like any polite client
                result.rate_limited += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            response.raise_for_status()
            return response.json()

    def paged(path: str, tenant: str | None = None) -> list:
        rows, offset = [], 0
        while True:
            page = get(path, {"limit": PAGE, "offset": offset}, tenant)
            rows.extend(page)
            if len(page) < PAGE:
                return rows
            offset += PAGE

    started = time.perf_counter()
    get(ROLES)
    workspaces = get(WORKSPACES, {"include_deleted": "true"})
    result.members = len(paged(ACTIVE))
    result.pending_invites = len(paged(PENDING))
    for workspace in workspaces:
        if workspace["is_personal"] or workspace["is_deleted"]:
            continue
        result.memberships += len(paged(WORKSPACE_ACTIVE, workspace["id"]))
        result.workspaces_read += 1
    result.wall_seconds = time.perf_counter() - started
    session.close()
    return result


def run_naive_read(sandbox: SandboxServer) -> NaiveRead:
    """``naive_read`` in a child process, so it does not share this process (and its GIL) with
    the sandbox server."""
    done = subprocess.run(
        [sys.executable, __file__, "naive-read", sandbox.url, sandbox.organization_id],
        input=sandbox.api_key,
        capture_output=True,
        text=True,
        check=True,
    )
    return NaiveRead(**json.loads(done.stdout))


# ---------------------------------------------------------------------------------- output


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def markdown_table(columns: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    cpus = os.cpu_count()
    try:
        with open("/proc/meminfo") as handle:
            total_kb = int(handle.readline().split()[1])
        memory = f"{total_kb / 1024 / 1024:.0f} GiB"
    except OSError:
        memory = "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpus} CPUs ({model}), {memory} RAM, Python {sys.version.split()[0]}"


if __name__ == "__main__" and sys.argv[1:2] == ["naive-read"]:
    _, _, endpoint, org_id = sys.argv
    print(json.dumps(asdict(naive_read(endpoint, org_id, sys.stdin.read().strip()))))
