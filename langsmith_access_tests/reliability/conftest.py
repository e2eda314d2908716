"""Reliability fixtures: one faulty and one fault-free sync of the same org, shared by the package.

The session fixture ``fault_run`` syncs a generated org (1,100 members: three pages of 500, so
page drift can strike; 50 shared workspaces read one by one) twice, first through every fault
the sandbox injects, then fault-free. Page drift adds members to the org while it is read, so
the fault-free sync runs second, on the org as the faulty sync left it. Its database is the
template every other test copies (``start_env``), with a copy of that org served by a fresh
sandbox: tests start from identical, independent states without paying for another sync.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from langsmith_access.sandbox import FaultConfig, OrgState, SandboxServer, generate_org
from langsmith_access.sandbox import faults as sandbox_faults
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import point_at, query, run_sync

SEED, MEMBERS, WORKSPACES = 41, 1100, 50
API_KEY = "lsv2_sk_reliability_tests_5f0c2a7e9b1d4c3a"
WRITES = ("POST", "PATCH", "DELETE")

# The faulty sync: ~10% random 5xx, 3% hangs, 3% dropped connections, bursts of 429 from a
# per-key rate limit, and members joining while the member listing is paged.
ERROR_RATE, HANG_RATE, DROP_RATE = 0.10, 0.03, 0.03
# The client's read timeout: what ends a hang. Each fault must cost exactly one retry, so every
# other answer must come within it, however busy the machine (at 1 s, one answer held 1.5 s
# cost a retry of its own).
READ_TIMEOUT_SECONDS = 3
HANG_SECONDS = 20  # far beyond the client's read timeout: only the timeout can end a hang
RATE_LIMIT_REQUESTS, RATE_LIMIT_WINDOW_SECONDS = 20, 2  # bursts: >20 requests in 2 s get 429s
PAGE_DRIFT_MEMBERS = 2


class CountingFaults(FaultConfig):
    """A ``FaultConfig`` that counts the random faults it injects, by kind."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.injected: Counter = Counter()

    def draw_random_fault(self):
        fault = super().draw_random_fault()
        if fault is not None:
            with self._lock:
                self.injected[fault.value] += 1
        return fault


def clone_org(org: OrgState) -> OrgState:
    """An independent copy of an org (its lock cannot be copied, so it gets a new one)."""
    lock = org.lock
    with lock:
        org.lock = None
        try:
            clone = copy.deepcopy(org)
        finally:
            org.lock = lock
    clone.lock = threading.RLock()
    return clone


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def database_state(database: AccessDatabase) -> dict:
    """What must not change when a run fails: the analysts' file byte for byte, every row of
    the working file but a failed run's own ``sync_runs`` row (kept there for the next publish),
    and no scratch left."""
    return {
        "analysts": digest(database.path),
        "working": rows_but_failed_runs(database.working_path),
        "scratch": sorted(p.name for p in database.path.parent.glob("*.sync-*")),
    }


def rows_but_failed_runs(path: Path) -> dict[str, str] | None:
    """A digest of each table's rows, ``sync_runs`` without the rows of failed runs."""
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_type = 'BASE TABLE'").fetchall()
        content = {}
        for schema, name in tables:
            where = " WHERE status <> 'failed'" if (schema, name) == ("main", "sync_runs") else ""
            rows = conn.execute(f'SELECT * FROM "{schema}"."{name}"{where} ORDER BY ALL').fetchall()
            content[f"{schema}.{name}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return content


@dataclass
class FaultRun:
    org: OrgState  # the org as both syncs read it (a private copy: clone it before serving)
    faulty: AccessDatabase
    clean: AccessDatabase
    faulty_run_id: str
    injected: Counter  # random faults by kind: error, hang, drop
    statuses: Counter  # status of every request the faulty sandbox logged (None: no answer)
    drift_members: int
    requests_logged: int


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory) -> FaultRun:
    org = generate_org(seed=SEED, members=MEMBERS, workspaces=WORKSPACES)
    root = tmp_path_factory.mktemp("reliability")
    faulty_path, clean_path = root / "faulty" / "access.duckdb", root / "clean" / "access.duckdb"
    faults = CountingFaults(
        seed=12,  # every kind of fault strikes within the ~70 requests of this sync
        error_rate=ERROR_RATE,
        hang_rate=HANG_RATE,
        hang_seconds=HANG_SECONDS,
        drop_rate=DROP_RATE,
        rate_limit_per_minute=RATE_LIMIT_REQUESTS,
        retry_after_seconds=1,
        page_drift_members=PAGE_DRIFT_MEMBERS,
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        # The sandbox's rate-limit window, shortened from 60 s so bursts clear in seconds.
        monkeypatch.setattr(sandbox_faults, "RATE_LIMIT_WINDOW_SECONDS", RATE_LIMIT_WINDOW_SECONDS)
        with SandboxServer(org, api_key=API_KEY, enriched_route=False, faults=faults) as sandbox:
            point_at(monkeypatch, sandbox, faulty_path)
            monkeypatch.setenv("LANGSMITH_ACCESS_TIMEOUT_SECONDS", str(READ_TIMEOUT_SECONDS))
            monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "8")
            faulty = run_sync()
        # Stopping the sandbox ends the hung requests; every request is in the log now.
        log = sandbox.request_log.snapshot()
        assert faulty.success, faulty.failure
        with SandboxServer(org, api_key=API_KEY, enriched_route=False) as sandbox:
            point_at(monkeypatch, sandbox, clean_path)
            clean = run_sync()
            assert clean.success, clean.failure
    return FaultRun(
        org=clone_org(org),
        faulty=AccessDatabase(faulty_path),
        clean=AccessDatabase(clean_path),
        faulty_run_id=faulty.run_id,
        injected=faults.injected,
        statuses=Counter(entry.status for entry in log),
        drift_members=PAGE_DRIFT_MEMBERS - faults.page_drift_members,
        requests_logged=len(log),
    )


@pytest.fixture(scope="session")
def template(fault_run) -> AccessDatabase:
    """A database after one clean sync of ``fault_run.org``."""
    return fault_run.clean


@pytest.fixture
def start_env(fault_run, template, tmp_path, monkeypatch):
    """``start_env(**sandbox_options) -> (sandbox, org, database)``: a copy of the template
    database and a sandbox serving a copy of the same org, the environment pointing at both."""
    started: list[SandboxServer] = []

    def start(**options):
        database = AccessDatabase(tmp_path / "data" / "access.duckdb")
        database.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template.path, database.path)
        shutil.copyfile(template.working_path, database.working_path)
        org = clone_org(fault_run.org)
        sandbox = SandboxServer(org, api_key=API_KEY, **options).start()
        started.append(sandbox)
        point_at(monkeypatch, sandbox, database.path)
        return sandbox, org, database

    yield start
    for sandbox in started:
        sandbox.stop()


def writes(sandbox: SandboxServer):
    return [entry for entry in sandbox.request_log.snapshot() if entry.method in WRITES]


def table_rows(database: Path, table: str) -> list[tuple]:
    return query(database, f"SELECT * FROM {table} ORDER BY ALL")
