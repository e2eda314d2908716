"""Run the Dagster jobs in-process for the CLI, with a compact progress display.

The CLI runs exactly the definitions the schedules and sensors run (``langsmith_access.definitions``);
with ``DAGSTER_HOME`` set the runs land in that instance's history, otherwise in an ephemeral one.
Each run serves one org: its partition key and ``ORG_TAG`` are the org's slug, and its resources
are handed that org's settings (``defs/orgs.py``), so a run never depends on what the process
environment says by the time it starts.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

import dagster as dg
import sqlalchemy as db
from dagster._core.instance import DagsterInstance, InstanceType
from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
from dagster._core.run_coordinator import DefaultRunCoordinator
from dagster._core.storage.event_log import InMemoryEventLogStorage
from dagster._core.storage.event_log import in_memory as in_memory_event_log
from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageMetadata
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.root import TemporaryLocalArtifactStorage
from dagster._core.storage.runs import InMemoryRunStorage
from dagster._core.storage.sql import create_engine, get_alembic_config, stamp_alembic_rev
from dagster._core.storage.sqlite import create_in_memory_conn_string
from sqlalchemy.pool import NullPool

from langsmith_access import garbage_collector
from langsmith_access.dagster_home import dagster_home_instance
from langsmith_access.definitions import defs
from langsmith_access.defs.orgs import deployment_orgs, org_tags
from langsmith_access.defs.provisioning.definitions import provision_job
from langsmith_access.defs.resources import is_interruption, org_resources, unpublished_run
from langsmith_access.defs.resources import without_type_name as _without_type_name
from langsmith_access.doctor import configuration_fix
from langsmith_access.langsmith import errors
from langsmith_access.names import (  # noqa: F401 (callers name runner.SYNC_JOB)
    APPLY_REQUESTS_OP,
    MEMBERS_OP,
    PROCESS_TAG,
    PROVISION_JOB,
    REFRESH_OP,
    SYNC_JOB,
)
from langsmith_access.processes import this_process
from langsmith_access.settings import Org, Orgs, Settings, SettingsError, load_orgs
from langsmith_access.store.database import (
    UNWRITABLE_ERRNOS,
    UNWRITABLE_FOLDER_FIX,
    DatabaseBusyError,
    DatabaseUnusableError,
    PublishFailedError,
    full_disk_fix_of,
    unwritable_fix,
)
from langsmith_access.store.sync_runs import NoPublishedSyncError, OrganizationElsewhereError
from langsmith_access.transform import DBT_FAILURES_METADATA


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    duration_seconds: float
    org: str | None = None  # the slug of the org the run served
    failure: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    dbt_errors: list[str] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # op name -> its output, for ops that returned one
    fix: str | None = None  # the one line an operator needs, from the failure's exception type
    log_path: Path | None = None  # a failed run's events, stack traces included
    events: Sequence[dg.DagsterEvent] = field(default_factory=list, repr=False)  # a failed run's Dagster events
    interrupted: bool = False  # failed because Ctrl-C (or a signal) stopped it under way
    # A provisioning run whose publish as it ended failed (a full disk): what it did is in the working
    # file, which the next writer publishes; the run itself succeeded (or failed) as ``success`` says.
    unpublished: PublishFailedError | None = None


def instance() -> dg.DagsterInstance:
    """``DAGSTER_HOME``'s instance when it is set, else an ephemeral one (runs kept in memory for
    the life of the process, as ``DagsterInstance.ephemeral()``, with a faster event log)."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return dagster_home_instance(home)
    return ephemeral_instance()


class OneConnectionEventLogStorage(InMemoryEventLogStorage):
    """Dagster's in-memory event log (the ephemeral instance's: the same tables, queries and
    watchers), on the one sqlite connection it already holds for its life.

    The stock storage opens a new sqlite connection for every read and write (``NullPool``) and
    runs two PRAGMAs on it: about five connections per stored event, and a sync stores ~400
    events (a materialization or check result per dbt node). Each of those sqlite calls gives up
    the GIL, so while dbt's threads compute, every one waits for its turn: measured in a warm
    sync of 3,000 members, 1,094 connections took 4.7 s of the run's thread. Here every call
    takes the storage's own lock and a transaction on the held connection, so calls are
    serialised exactly as before; the tables, queries and watchers are the parent's.
    """

    def __init__(self) -> None:
        # The parent's set-up, but the held connection may serve any thread (one at a time,
        # under the storage's lock), as the connections the parent opens per call did.
        self._inst_data = None
        self._engine = create_engine(
            create_in_memory_conn_string(f"events-{uuid.uuid4()}"),
            poolclass=NullPool, connect_args={"check_same_thread": False},
        )
        self._handlers = defaultdict(set)
        self._storage_id = 0
        self._db_lock = threading.Lock()
        self._held_conn = self._engine.connect()
        with self._held_conn.begin():
            # What the parent sets on each new connection, set once (an in-memory database
            # has no WAL: its journal mode stays "memory" either way).
            self._held_conn.execute(db.text("PRAGMA foreign_keys=ON;")).close()
            SqlEventLogStorageMetadata.create_all(self._held_conn)
            stamp_alembic_rev(get_alembic_config(in_memory_event_log.__file__,
                                                 "sqlite/alembic/alembic.ini"), self._held_conn)
            # Its tables are all made here and never change: asked for each stored event with
            # tags (the parent opens a connection to look), the answer is read once.
            inspector = db.inspect(self._held_conn)
            self._tables = frozenset(inspector.get_table_names())
            # And the asset key table's columns, which the parent reflects for every asset event.
            self._asset_key_columns = frozenset(
                column["name"] for column in inspector.get_columns(AssetKeyTable.name))

    def has_table(self, table_name: str) -> bool:
        return table_name in self._tables

    def _has_asset_key_col_on_connection(self, conn, column_name: str) -> bool:
        return column_name in self._asset_key_columns

    @contextmanager
    def _connect(self):
        with self._db_lock:
            with self._held_conn.begin():
                yield self._held_conn


def ephemeral_instance() -> dg.DagsterInstance:
    """``DagsterInstance.ephemeral()`` with ``OneConnectionEventLogStorage`` as its event log."""
    return DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=OneConnectionEventLogStorage(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )


def sync_run_config(
    *,
    accept_shrink: bool = False,
    max_shrink_share: float | None = None,
    membership_route: str | None = None,
    settings: Settings | None = None,
) -> dict:
    """The sync's run config; the shrink share defaults to ``settings``' (else the
    environment's) ``max_shrink_share``."""
    if max_shrink_share is None:
        max_shrink_share = (settings or Settings.from_env()).max_shrink_share
    config: dict = {"accept_shrink": accept_shrink, "max_shrink_share": max_shrink_share}
    if membership_route:
        config["membership_route"] = membership_route
    return {"ops": {MEMBERS_OP: {"config": config}}}


def run_job(
    job_name: str,
    run_config: dict,
    *,
    org: Org | None = None,
    progress: Callable[[str], None] | None = None,
    dagster_instance: dg.DagsterInstance | None = None,
    log_dir: Path | None = None,
    verbose: bool = False,
) -> RunOutcome:
    """Execute one job of the definitions in this process, for one org, and report what
    happened.

    ``org``: the org to serve, with its settings (key included); None: the only org of the
    environment (``settings.load_orgs``: an error naming the orgs when there are several). The
    run's partition key and ``ORG_TAG`` are its slug, and its resources use exactly its settings.
    A failed run's events, stack traces included, are written to ``<log_dir>/<job>-<run id>.log``
    (``RunOutcome.log_path``); Dagster prints them to the terminal only when ``verbose``.
    """
    started = time.monotonic()
    if org is None:
        org = load_orgs().get()
    with warnings.catch_warnings():
        # Dagster flags its own beta/preview parameters on every load; they mean nothing
        # to the person running a job. Only those: a deprecation still shows, and the
        # project fixes its own uses of deprecated APIs instead of hiding them.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        with _termination_signal_kept():
            outcome = _run_job(job_name, run_config, org, progress, dagster_instance, started, verbose)
    if not outcome.success and log_dir is not None and not _refused_as_held_elsewhere(outcome):
        outcome.log_path = _write_failure_log(log_dir, job_name, outcome)
    return outcome


def _refused_as_held_elsewhere(outcome: RunOutcome) -> bool:
    """Whether the run was refused because another org folder holds its org's data (a slug
    renamed in the orgs file). Its message is the whole story, and a failure log would make a
    ``logs/`` folder in the new one, in the way of the fix's move of the old folder's files."""
    for event in outcome.events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            if error.cls_name == OrganizationElsewhereError.__name__:
                return True
            error = error.cause
    return False


@contextmanager
def _termination_signal_kept():
    """Give SIGTERM back the handler it had before the run. Dagster's in-process execution maps
    SIGTERM to SIGINT's handler (for Kubernetes) and leaves it so: after one run, ``kill`` of a
    process started in the background (SIGINT ignored) did nothing, and a terminal's became a
    KeyboardInterrupt. During the run SIGTERM still stops it as interrupted.

    SIGHUP too stops a run as interrupted (``_hangup_as_interrupt``) unless it was ignored
    (``nohup``): a closed terminal or a dropped ssh session sends it, and its default ended the
    process at once, leaving the run STARTED in a persistent instance: the sensors took the org's
    provisioning as in flight until run monitoring failed it, an hour later."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; Dagster leaves them alone here too
        return
    before = signal.getsignal(signal.SIGTERM)
    hangup_before = signal.getsignal(signal.SIGHUP)
    if hangup_before is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _hangup_as_interrupt)
    try:
        yield
    finally:
        if before is not None:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signal.SIGTERM, before)
        if hangup_before is signal.SIG_DFL:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _hangup_as_interrupt(signum: int, frame) -> None:
    """SIGHUP during a run: what Ctrl-C does (the handler Dagster set for SIGINT, which fails the
    run as interrupted and records it so), or a KeyboardInterrupt where there is none."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def job_definition(job_name: str) -> dg.JobDefinition:
    """The job ``job_name`` of the definitions. The provisioning job is an op job that needs
    none of the asset graph: it is built on its own, as its module builds it for the code
    location, rather than with every definition (dagster-dbt's import and dbt's manifest turned
    into ~116 asset and check specs: ~1 s of a provisioning command's start, ~0.3 s of each
    further run in one process)."""
    if job_name == PROVISION_JOB:
        garbage_collector.tune_for_runs()  # as loading the definitions does
        return provision_job(deployment_orgs())
    return defs().resolve_job_def(job_name)


def _run_job(job_name, run_config, org: Org, progress, dagster_instance, started, verbose) -> RunOutcome:
    job = job_definition(job_name)
    partitions = job.partitions_def.get_partition_keys() if job.partitions_def is not None else []
    if org.slug not in partitions:
        raise SettingsError(
            f"Org {org.slug!r} is not one of the orgs the definitions serve ({', '.join(partitions)}): "
            "add it to the orgs file (LANGSMITH_ACCESS_ORGS_FILE), or name one of those."
        )
    run_id = str(uuid.uuid4())
    # An instance made here is disposed here, on this thread, once the run's outputs are read:
    # left to the garbage collector, its sqlite connections would be closed on whichever thread
    # collects them, and sqlite refuses that with a traceback per connection at exit.
    with _quiet_dagster_loggers(), ExitStack() as owned:
        the_instance = dagster_instance or owned.enter_context(instance())
        if progress is not None:
            the_instance.add_event_listener(run_id, lambda event: _report(event, progress))
        # The CLI prints its own progress and a short failure; Dagster's console logger would
        # print every event, and a failure's stack traces, which go to the log file instead.
        console = {"console": {"config": {"log_level": "ERROR" if verbose else "CRITICAL"}}}
        result = job.execute_in_process(
            run_config={"loggers": console, **run_config},
            instance=the_instance, run_id=run_id, raise_on_error=False,
            partition_key=org.slug, tags={**org_tags(org.slug), PROCESS_TAG: this_process()},
            # This org's settings, handed to the resources as they are (the key stays a
            # Secret in memory): nothing is read from, or written to, the environment.
            resources=org_resources(Orgs((org,))),
        )
        outcome = RunOutcome(
            success=result.success, run_id=run_id, duration_seconds=time.monotonic() - started,
            org=org.slug, unpublished=unpublished_run(run_id),
        )
        for node in (APPLY_REQUESTS_OP, REFRESH_OP):
            try:
                outcome.outputs[node] = result.output_for_node(node)
            except Exception:  # the job has no such op, or it did not run
                pass
    if not result.success:
        failure, outcome.failed_checks, outcome.dbt_errors, fix = _failure_summary(
            result, org.duckdb_path)
        # Written for the single-org variables: say where this org's key and endpoint come from.
        outcome.failure = org.in_its_own_terms(failure)
        outcome.failed_checks = [org.in_its_own_terms(check) for check in outcome.failed_checks]
        outcome.fix = org.in_its_own_terms(fix) if fix else None
        outcome.events = result.all_events
        outcome.interrupted = _interrupted(result.all_events)
    return outcome


def _interrupted(events: Sequence[dg.DagsterEvent]) -> bool:
    """Whether Ctrl-C (or a signal) stopped the run: Dagster takes the interrupt and fails the
    run, and ``execute_in_process`` returns as for any failure."""
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            if is_interruption(error):
                return True
            error = error.cause
    return False


def _report(event, progress: Callable[[str], None]) -> None:
    try:
        _describe(event, progress)
    except Exception:  # a progress line must never break a run
        pass


def _describe(event, progress: Callable[[str], None]) -> None:
    dagster_event = getattr(event, "dagster_event", None)
    if dagster_event is None:
        return
    kind = dagster_event.event_type_value
    step = dagster_event.step_key or ""
    if kind == "STEP_START":
        progress(f"  … {step}")
    elif kind == "STEP_SUCCESS":
        progress(f"  ✓ {step}")
    elif kind == "STEP_FAILURE":
        progress(f"  ✗ {step}")
    elif kind == "ASSET_CHECK_EVALUATION":
        data = dagster_event.event_specific_data
        if not data.passed and data.severity == dg.AssetCheckSeverity.WARN:
            # A warning (the drift check): the run goes on and publishes.
            progress(f"  ! check {data.asset_key.to_user_string()}:{data.check_name} warns")
        elif not data.passed:
            progress(f"  ✗ check {data.asset_key.to_user_string()}:{data.check_name} failed")


def _failure_summary(result, database: Path | None = None) -> tuple[str, list[str], list[str], str | None]:
    """The first error message of a failed run, the checks that failed, the dbt nodes that
    failed with their messages (from the dbt step's failure metadata), and the fix the first
    error's exception type names."""
    failed_checks = []
    messages = []
    fixes: list[str] = []
    dbt_errors: list[str] = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            # A check that only warns (the drift check) withholds nothing: it is no failed check,
            # as the run's recorded failure (``defs/resources.py``) counts only ERROR ones.
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                description = evaluation.description or ""
                failed_checks.append(
                    f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                    + (f": {description}" if description else "")
                )
        # A run that fails outside a step (a resource that cannot start: a refused API key,
        # a database held too long) reports RESOURCE_INIT_FAILURE and PIPELINE_FAILURE, the
        # event type value of a run failure.
        elif event.event_type_value in ("STEP_FAILURE", "RESOURCE_INIT_FAILURE", "PIPELINE_FAILURE"):
            error = getattr(event.event_specific_data, "error", None)
            while error is not None and error.cause is not None and "dagster" in (error.cls_name or "").lower():
                error = error.cause
            if error is not None:
                messages.append(f"{event.step_key or 'run'}: {_without_type_name(error)}")
                fix = _fix_for(error, database)
                if fix:
                    fixes.append(fix)
            dbt_errors += _dbt_failures(event)
    message = messages[0] if messages else "the run failed (see the Dagster event log)"
    if not fixes:  # a dbt node that found no room says so in its own message only
        fixes += filter(None, [full_disk_fix_of("\n".join(dbt_errors), database)])
    return message, failed_checks, dbt_errors[:20], (fixes[0] if fixes else None)


class _Advised(Protocol):
    """An exception type that names the one line an operator needs: its ``fix`` class attribute."""

    fix: str


T = TypeVar("T")


def _subclasses(cls: type[T]) -> list[type[T]]:
    return [cls] + [sub for child in cls.__subclasses__() for sub in _subclasses(child)]


# Exception types whose ``fix`` an operator should see, by the class name Dagster records (which
# names the raised class: a subclass, such as LeftoverWalError, is looked up as itself).
_ADVISED_TYPES: tuple[type[_Advised], ...] = (
    *_subclasses(SettingsError), DatabaseBusyError, *_subclasses(DatabaseUnusableError), NoPublishedSyncError,
    *_subclasses(errors.LangSmithError),
)
_ADVISED_ERRORS = {cls.__name__: cls for cls in _ADVISED_TYPES}


# A run stopped by Ctrl-C (or a signal) while its steps ran: Dagster fails it as interrupted.
INTERRUPTED_FIX = (
    "the run was interrupted (Ctrl-C or a signal): a sync published nothing, and requests a "
    "provisioning run did not settle are settled by the next one; run it again when ready"
)
# How Python words an OSError of a folder this user cannot write (UNWRITABLE_ERRNOS).
_UNWRITABLE = re.compile(rf"\[Errno (?:{'|'.join(str(n) for n in UNWRITABLE_ERRNOS)})\][^']*(?:'(?P<path>[^']*)')?")


def _fix_for(error, database: Path | None = None) -> str | None:
    """The ``fix`` of the first exception in the chain whose type declares one; for a settings
    error, the doctor's fix for the variable or orgs file entry its message names."""
    while error is not None:
        advised = _ADVISED_ERRORS.get(error.cls_name or "")
        if advised is SettingsError:
            return configuration_fix(_without_type_name(error))
        if advised is not None:
            return advised.fix
        if is_interruption(error):
            return INTERRUPTED_FIX
        unwritable = _UNWRITABLE.match(_without_type_name(error))
        if unwritable:
            path = unwritable.group("path")
            return unwritable_fix(path, database) if database is not None else UNWRITABLE_FOLDER_FIX
        full = full_disk_fix_of(_without_type_name(error), database)
        if full:
            return full
        error = error.cause
    return None


def _write_failure_log(log_dir: Path, job_name: str, outcome: RunOutcome) -> Path | None:
    """Every event of the failed run, errors with their stack traces and causes, as text."""
    path = Path(log_dir) / f"{job_name}-{outcome.run_id}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as log:
            for event in outcome.events:
                log.write(f"{event.event_type_value} {event.step_key or ''} {event.message or ''}\n")
                error = getattr(event.event_specific_data, "error", None)
                if error is not None:
                    log.write(error.to_string() + "\n")
    except OSError:
        return None  # the summary still says what failed; the log is a convenience
    return path


def _dbt_failures(event) -> list[str]:
    """``FAIL test <name> (n rows): <message>`` for each dbt node a failed step reported."""
    failure = getattr(event.event_specific_data, "user_failure_data", None)
    entry = (failure.metadata or {}).get(DBT_FAILURES_METADATA) if failure is not None else None
    lines = []
    for node in (entry.value if entry is not None else None) or []:
        what = f" {node['resource_type']} {node['name']}" if node.get("name") else ""
        rows = f" ({node['failures']} rows)" if node.get("failures") else ""
        reason = f": {node['message']}" if node.get("message") else ""
        lines.append(f"{str(node.get('status', '')).upper()}{what}{rows}{reason}")
    return lines


class _quiet_dagster_loggers:
    """Dagster logs every event to the console at INFO; the CLI prints its own progress."""

    def __enter__(self):
        self._saved = {}
        for name in ("dagster", "dagster.builtin"):
            logger = logging.getLogger(name)
            self._saved[name] = logger.level
            logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc_info):
        for name, level in self._saved.items():
            logging.getLogger(name).setLevel(level)


def print_progress(stream: TextIO = sys.stderr) -> Callable[[str], None]:
    def emit(line: str) -> None:
        print(line, file=stream, flush=True)

    return emit
