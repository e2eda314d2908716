"""Run one dbt command against one DuckDB file; results come back as structured node results.

dbt runs inside this process, through dbt's programmatic runner (``dbtRunner``), on a worker
thread, with a callback that receives every structured event dbt fires. Node results are read
from the result events (``LogModelResult``, ``LogSnapshotResult``, ``LogTestResult``, ...:
unique_id, status, failing rows) and the end-of-run summary (``RunResultError``: the message
of each failed node), never from dbt's human-readable text. Running dbt in a child process
cost ~4 s of start-up (a second Python importing dbt and loading its parse) and ~1 ms of JSON
per event; in this process an invocation starts in ~0.1 s.

What dbt keeps between invocations of one process, and why that is safe here:

- dbt's flags, event manager and adapter registry are process-wide: one invocation at a time
  (``_DBT_LOCK``; the writer pool already allows only one dbt build per database). A build's
  timeout runs from when it holds the lock, and it interrupts only its own queries. Each
  invocation sets them up again from its own arguments: a run's file and directories come from
  its command line and the ``profiles.yml`` written for it, never from earlier runs.
- dbt's parse of the project is saved in the run's directory and reused by the next run there;
  a database's first run starts from a parse kept for databases of the same name
  (``parse_seed``), not from a full parse.
- dbt writes no log file itself (``--log-level-file none``): its file logger formats and
  scrubs every event, debug ones included, before its level drops them (~9% of a small org's
  build). ``DbtLog`` writes the run's ``dbt.log`` from the event callback instead, at info level
  and in dbt's own line format.
- dbt-duckdb keeps its "environment" object, and its DuckDB connection for the whole
  invocation (the profile's ``keep_open``: reopening the file between nodes cost a checkpoint
  and a catalog read each time); the worker closes that connection when dbt returns, so after
  ``wait()`` no handle on the file remains (a test holds this: another process opens the file
  for writing right after a build).

``_dbt_events`` is the engine, the one place that starts dbt.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.adapters.factory import FACTORY
from dbt.cli.main import dbtRunner
from dbt_common.events.format import timestamp_to_datetime_string
from dbt_common.events.functions import msg_to_dict
from dbt_common.exceptions.base import DbtRuntimeError, env_secrets, scrub_secrets

from langsmith_access.transform import parse_seed
from langsmith_access.transform.project import DBT_PROJECT_DIR, record_project_hash, write_profile

logger = logging.getLogger(__name__)

# dbt's events that carry a node's result, by resource type.
RESULT_EVENTS = {"LogModelResult", "LogSnapshotResult", "LogTestResult", "LogSeedResult"}
# dbt could not reuse its saved parse (the message says why) and parses the whole project.
FULL_PARSE_EVENT = "UnableToPartialParse"
# A node that did not run because something upstream failed.
SKIP_EVENT = "SkippingDetails"
# dbt's Python traceback of an error it also reports in words (``MainEncounteredError``):
# logged at error level, kept in dbt.log, never in a failure message meant for a person.
STACK_TRACE_EVENT = "MainStackTrace"
# Statuses of a node that failed (a model or snapshot that errored, a test that failed or errored).
FAILED_STATUSES = {"error", "fail", "runtime error"}

# Where a failed build's step failure carries ``NodeResult.as_dict()`` of its failed nodes
# (defs/transform writes it, the runner reads it back into RunOutcome.dbt_errors).
DBT_FAILURES_METADATA = "dbt_failures"

# dbt's flags, event manager and adapter registry are process-wide: one invocation at a time.
_DBT_LOCK = threading.Lock()
# The events a DbtInvocation reads: node results, skips, the summary's messages (anything
# else is read only when it is an error); the rest are not even converted to dicts.
_EVENTS_READ = RESULT_EVENTS | {SKIP_EVENT, "RunResultError", FULL_PARSE_EVENT}
# Where the worker thread says it is done (after its last event).
_FINISHED = object()
# How often a build being stopped interrupts dbt's queries again, until dbt has finished (a
# node that had started before the stop may send its query after an interrupt).
_CANCEL_INTERVAL_SECONDS = 0.05
# The event dbt fires on a node's thread as it starts the node, inside its error handling.
_NODE_STARTS = "NodeCompiling"
# The log of a run with a directory of its own (``dbt_dir``), rotated as dbt rotates its own.
DBT_LOG_FILE = "dbt.log"
_LOG_LEVELS = {"info", "warn", "error"}
_LOG_MAX_BYTES, _LOG_BACKUPS = 10 * 1024 * 1024, 5


class DbtRunError(RuntimeError):
    """dbt did not finish successfully; ``invocation`` says which nodes failed and why."""

    def __init__(self, invocation: DbtInvocation):
        super().__init__(invocation.failure_message())
        self.invocation = invocation


@dataclass(frozen=True)
class NodeResult:
    """What dbt reported for one node of the project (model, snapshot, test)."""

    unique_id: str
    resource_type: str
    name: str
    status: str  # dbt's node status, lower case: success, error, pass, fail, warn, skipped, ...
    message: str | None = None  # why it failed (dbt's end-of-run summary), None otherwise
    failures: int | None = None  # rows a test found, None for other nodes
    # dbt's structured result event as dbt logged it (dagster-dbt turns it into Dagster events).
    event: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def describe(self) -> str:
        """One line for a person: ``FAIL test one_role_per_user_and_workspace (3 rows): ...``."""
        rows = f" ({self.failures} rows)" if self.failures else ""
        reason = f": {self.message}" if self.message else ""
        return f"{self.status.upper()} {self.resource_type} {self.name}{rows}{reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"unique_id": self.unique_id, "resource_type": self.resource_type,
                "name": self.name, "status": self.status, "message": self.message,
                "failures": self.failures}


class DbtInvocation:
    """One dbt command. Iterate it to get each ``NodeResult`` as its node finishes; after
    that (or ``wait()``), ``results``, ``errors``, ``success`` describe the whole run.

    Use it as a context manager: leaving early (an exception, an interrupted run) stops dbt.
    """

    def __init__(
        self, args: Sequence[str], command: Sequence[str], *, timeout_seconds: float | None,
        dbt_dir: Path | None = None,
    ):
        self.args = list(args)  # dbt's arguments, e.g. ["build", "--select", "grants_snapshot+"]
        self.command = list(command)  # dbt's whole command line (args, then project and dirs)
        # The run's profiles/target directory: where its parse is seeded from, and kept from.
        self.dbt_dir = dbt_dir
        self.results: list[NodeResult] = []
        self.errors: list[str] = []  # error-level messages not tied to a node (e.g. a parse error)
        # Why dbt parsed the whole project, when it did (empty: it reused a saved parse).
        self.full_parse_reasons: list[str] = []
        self.returncode: int | None = None  # 0 when dbt reported success, 1 otherwise
        self._timeout_seconds = timeout_seconds
        self._events: Generator[dict[str, Any], None, None] | None = None
        self._done = False

    def __enter__(self) -> DbtInvocation:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._events is not None:
            self._events.close()  # cancels dbt's queries if it still runs, and waits for it

    def __iter__(self) -> Iterator[NodeResult]:
        if self._events is not None:
            raise RuntimeError("a dbt invocation can be iterated once")
        self._events = _dbt_events(self.command, self._timeout_seconds, self)
        messages: dict[str, str] = {}
        for event in self._events:
            info, data = event.get("info", {}), event.get("data", {})
            node = data.get("node_info") or {}
            name = info.get("name")
            if name in RESULT_EVENTS and node.get("unique_id"):
                result = _node_result(event)
                self.results.append(result)
                yield result
            elif name == SKIP_EVENT and node.get("unique_id"):
                self.results.append(_node_result(event, status="skipped"))
            elif name == "RunResultError" and node.get("unique_id"):
                # The summary's message for a failed node (follows its result event).
                message = (data.get("msg") or info.get("msg") or "").strip()
                if message:
                    messages[node["unique_id"]] = message
            elif name == FULL_PARSE_EVENT:
                self.full_parse_reasons.append((info.get("msg") or "").strip())
            elif info.get("level") == "error" and not node.get("unique_id") and name != STACK_TRACE_EVENT:
                self.errors.append((info.get("msg") or "").strip())
        self.results = [
            replace(result, message=messages[result.unique_id])
            if result.unique_id in messages else result
            for result in self.results
        ]
        self._done = True

    def wait(self) -> DbtInvocation:
        """Run to the end (if nobody iterates) and return self."""
        if not self._done:
            for _ in self:
                pass
        return self

    @property
    def success(self) -> bool:
        return self._done and self.returncode == 0 and not self.failed_nodes

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [result for result in self.results if result.failed]

    def failure_message(self) -> str:
        """What went wrong, for a person: the failed nodes with their messages, and any error
        dbt raised outside a node."""
        failed = self.failed_nodes
        skipped = sum(result.status == "skipped" for result in self.results)
        lines = [f"dbt {' '.join(self.args)} failed (exit {self.returncode}): {len(failed)} node(s) failed"
                 + (f", {skipped} skipped" if skipped else "")]
        lines += [f"  {result.describe()}" for result in failed[:20]]
        lines += [f"  {message}" for message in self.errors[:10] if message]
        return "\n".join(lines)

    def raise_on_failure(self) -> DbtInvocation:
        self.wait()
        if not self.success:
            raise DbtRunError(self)
        return self


def _node_result(event: Mapping[str, Any], status: str | None = None) -> NodeResult:
    data = event["data"]
    node = data["node_info"]
    return NodeResult(
        unique_id=node["unique_id"],
        resource_type=node.get("resource_type") or node["unique_id"].split(".")[0],
        name=node.get("node_name") or node["unique_id"].split(".")[2],
        status=(status or _node_status(node, data)).lower(),
        failures=data.get("num_failures"),
        event=event,
    )


def _node_status(node: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The node's status as dbt logged it; a unit test's node info says "None" there, and its
    result event's own status says pass or fail."""
    status = node.get("node_status")
    if not status or str(status).lower() == "none":
        status = data.get("status", "")
    return str(status)


def run_dbt(
    args: Sequence[str],
    *,
    database_file: Path | str,
    dbt_dir: Path,
    timeout_seconds: float | None = None,
) -> DbtInvocation:
    """``dbt <args>`` on ``database_file``, with ``dbt_dir`` as its profiles, target and log
    directory. The caller must not hold a connection to that file (dbt opens it), and is the
    only writer of ``dbt_dir`` while dbt runs (for a database: the writer lease holder).

    A stable ``dbt_dir`` per database file lets dbt reuse its parse of the project from one
    run to the next (the profile written there is the same every time).
    """
    dbt_dir = Path(dbt_dir)
    write_profile(dbt_dir, database_file)
    return DbtInvocation(args, dbt_command(args, dbt_dir), timeout_seconds=timeout_seconds,
                         dbt_dir=dbt_dir)


def build(
    database_file: Path | str,
    dbt_dir: Path,
    *,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    indirect_selection: str | None = None,
    timeout_seconds: float | None = None,
    variables: Mapping[str, Any] | None = None,
    write_json: bool = False,
    project_hash_written: bool = False,
) -> DbtInvocation:
    """``dbt build`` of the project (or of ``select``): models, snapshots and data tests, in
    dependency order; a failing test stops everything downstream of it. ``variables``: dbt vars
    (``--vars``), only when any differ from the project's defaults (see ``project.dbt_vars``).

    dbt unit tests are never part of it: they test the SQL with fixed inputs, in development
    and CI, and say nothing about the data of a sync. manifest.json and run_results.json are
    written only with ``write_json`` (results come as events; writing them costs most of a
    second per build): the docs site reads the manifest the build compiled (``docs_site``).
    ``project_hash_written``: the caller wrote ``raw.dbt_project`` on its own connection
    (``project.write_project_hash``); otherwise the build records it first.
    """
    if str(database_file) != ":memory:" and not project_hash_written:
        record_project_hash(Path(database_file))
    args = ["build", *build_selection(select, exclude, indirect_selection)]
    if not write_json:
        args.append("--no-write-json")
    if variables:
        args += ["--vars", json.dumps(dict(variables), sort_keys=True)]
    return run_dbt(args, database_file=database_file, dbt_dir=dbt_dir, timeout_seconds=timeout_seconds)


def build_selection(
    select: Sequence[str] = (), exclude: Sequence[str] = (), indirect_selection: str | None = None
) -> list[str]:
    """The node-selection arguments of every build: ``select``/``exclude`` as given, and never
    a unit test."""
    args = ["--exclude-resource-type", "unit_test"]
    if select:
        args += ["--select", " ".join(select)]
    if exclude:
        args += ["--exclude", " ".join(exclude)]
    if indirect_selection:
        args += ["--indirect-selection", indirect_selection]
    return args


def dbt_command(args: Sequence[str], dbt_dir: Path) -> list[str]:
    """dbt's arguments for ``dbt <args>`` on this project, with ``dbt_dir`` as its profiles,
    target and log directory. Everything a run depends on is on this line, so nothing is read
    from the process environment that the line does not override: dbt reads ``DBT_*``
    variables only for options not given here."""
    return [*args,
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(dbt_dir),
            "--target-path", str(dbt_dir), "--log-path", str(dbt_dir),
            # Events reach us through the callback; dbt prints nothing to the terminal.
            "--log-level", "none", "--no-use-colors", "--no-send-anonymous-usage-stats",
            # dbt.log comes from the event callback (DbtLog), not from dbt's file logger.
            "--log-level-file", "none"]


def _dbt_events(
    command: list[str], timeout_seconds: float | None, invocation: DbtInvocation
) -> Generator[dict[str, Any], None, None]:
    """The engine: run dbt on a worker thread, yield its structured events as they come, record
    its outcome on ``invocation``.

    Closing the generator early (the caller failed, Ctrl-C) or the timeout stops dbt: the
    queries it is running are interrupted, as dbt does on Ctrl-C, and every node it starts from
    then on fails at once, so the nodes left fail or are skipped, and dbt comes to the end of
    its run before this returns. A run stopped so never succeeds, and no thread or handle on the
    file outlives it."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    log = DbtLog(invocation.dbt_dir / DBT_LOG_FILE) if invocation.dbt_dir is not None else None

    stopped = threading.Event()  # the timeout passed, or the reader left: start no more nodes

    def on_event(message) -> None:
        info = message.info
        if info.name in _EVENTS_READ or info.level == "error":
            events.put(msg_to_dict(message))
        if log is not None and info.level in _LOG_LEVELS:
            log.write(message)
        if info.name == _NODE_STARTS and stopped.is_set():
            # Raised on the node's thread, inside dbt's handling of that node: the node fails
            # with this message (its children are skipped) before it sends any query.
            raise DbtRuntimeError("not run: the build was stopped (its timeout passed, or its caller left)")

    outcome: dict[str, Any] = {}
    finished = threading.Event()
    # Set while this invocation holds _DBT_LOCK: the adapters' queries are then its own. Waiting
    # for another invocation, there is nothing of ours to interrupt, and its queries are not ours.
    running = threading.Event()
    timed_out = threading.Event()
    timer = None
    if timeout_seconds is not None:
        def time_out() -> None:
            timed_out.set()
            stopped.set()
            _interrupt_until(finished, running)

        timer = threading.Timer(timeout_seconds, time_out)
        timer.daemon = True

    def work() -> None:
        try:
            with _DBT_LOCK:
                running.set()
                try:
                    if timer is not None:
                        timer.start()  # the deadline counts dbt's own time, not the wait for the lock
                    _use_saved_parse(invocation)
                    try:
                        result = dbtRunner(callbacks=[on_event]).invoke(list(command))
                    finally:
                        close_dbt_connection()
                        if log is not None:
                            log.close()
                    if result.success:
                        _keep_parse(invocation)
                finally:
                    running.clear()
            outcome["success"] = result.success
            outcome["exception"] = result.exception
        except BaseException as error:  # never lose the sentinel: the reader would wait forever
            outcome["success"] = False
            outcome["exception"] = error
        finally:
            finished.set()
            events.put(_FINISHED)

    worker = threading.Thread(target=work, name="dbt", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not _FINISHED:
            if isinstance(event, dict) and "info" in event:
                yield event
    finally:
        if timer is not None:
            timer.cancel()  # before the worker starts it, too: a cancelled timer never fires
        if worker.is_alive():
            stopped.set()
            _interrupt_until(finished, running)  # the reader stopped early: stop dbt, then wait for it
            worker.join()
        if timer is not None and timer.ident is not None:
            timer.join()  # a timer that fired stops once dbt has finished
    # Reached only when dbt ran to its end with the reader still reading.
    invocation.returncode = 0 if outcome.get("success") else 1
    exception = outcome.get("exception")
    if timed_out.is_set() and invocation.returncode != 0:
        invocation.errors.append(f"dbt was stopped at its timeout, after {timeout_seconds:g} s")
    elif exception is not None and not invocation.errors:
        invocation.errors.append(f"{type(exception).__name__}: {exception}".strip())


class DbtLog:
    """A run's ``dbt.log``: dbt's info, warn and error events as dbt's own file logger writes
    them (``<time> [info ] [<thread>]: <message>``), secrets of ``DBT_ENV_SECRET_*`` variables
    masked as dbt masks them. Written from dbt's event callback, which dbt's node threads call
    at once: the handler's lock keeps lines whole."""

    def __init__(self, path: Path):
        self._handler = RotatingFileHandler(path, maxBytes=_LOG_MAX_BYTES, backupCount=_LOG_BACKUPS,
                                            encoding="utf8", delay=True)
        self._secrets = env_secrets()

    def write(self, message) -> None:
        info = message.info
        when = timestamp_to_datetime_string(info.ts)
        line = f"{when} [{info.level:<5}] [{info.thread[:10]:<10}]: {scrub_secrets(info.msg, self._secrets)}"
        if info.name == "MainReportVersion":  # dbt's separator between invocations
            line = f"\n\n{'=' * 30} {when} | {info.invocation_id} {'=' * 30}\n{line}"
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


def _use_saved_parse(invocation: DbtInvocation) -> None:
    """A first run in its directory starts from the parse kept for its profile (parse_seed)."""
    if invocation.dbt_dir is None:
        return
    try:
        parse_seed.start_from_saved_parse(invocation.dbt_dir)
    except Exception:  # dbt then parses in full, as without a seed
        logger.warning("could not start dbt from a saved parse", exc_info=True)


def _keep_parse(invocation: DbtInvocation) -> None:
    """Keep a successful run's parse for databases that have none yet; not a run with its own
    ``--vars`` (dbt would parse again for the usual vars)."""
    if invocation.dbt_dir is None or "--vars" in invocation.args:
        return
    try:
        parse_seed.keep_parse(invocation.dbt_dir)
    except Exception:  # the next new database parses in full, as without a seed
        logger.warning("could not keep dbt's parse for new databases", exc_info=True)


def close_dbt_connection() -> None:
    """Close the DuckDB connection dbt-duckdb keeps open for an invocation (``keep_open`` in
    the profile), so the file is free for other processes once dbt returns."""
    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()


def _interrupt_until(finished: threading.Event, running: threading.Event) -> None:
    """Interrupt dbt's queries until it has finished: interrupting once stops only the query
    running at that moment (if any), and dbt would start the next node's. Only while
    ``running`` (this invocation holds the lock): the adapters are the process's, and another
    invocation's queries are not ours to stop."""
    while True:
        if running.is_set():
            _cancel_queries()
        if finished.wait(_CANCEL_INTERVAL_SECONDS):
            return


def _cancel_queries() -> None:
    """Interrupt the queries dbt is running, as dbt does on Ctrl-C (each adapter's
    ``cancel_open_connections``); those nodes fail."""
    for adapter in list(FACTORY.adapters.values()):
        try:
            # Every SQL adapter has it; the registry's protocol type does not declare it.
            getattr(adapter, "cancel_open_connections")()  # noqa: B009
        except Exception:  # an adapter that cannot cancel: dbt still ends after its query
            pass
