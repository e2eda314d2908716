"""Run one dbt command against one DuckDB file; results come back as structured node results.

dbt runs in a child process of the current Python (``python -c 'from dbt.cli.main import cli'``,
so any venv works, activated or not, with no ``dbt`` script looked up on a path) with
``--log-format json``: every line it prints is one of dbt's structured events. Node results are
read from the result events (``LogModelResult``, ``LogSnapshotResult``, ``LogTestResult``, ...:
unique_id, status, failing rows) and the end-of-run summary (``RunResultError``: the message
of each failed node), never from dbt's human-readable text.

``_dbt_events`` is the engine, the one place that starts dbt. Running dbt in this process
(dbt's ``dbtRunner`` with a callback) would replace only that function.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langsmith_access.transform.project import DBT_PROJECT_DIR, write_profile

# dbt's events that carry a node's result, by resource type.
RESULT_EVENTS = {"LogModelResult", "LogSnapshotResult", "LogTestResult", "LogSeedResult"}
# A node that did not run because something upstream failed.
SKIP_EVENT = "SkippingDetails"
# Statuses of a node that failed (a model or snapshot that errored, a test that failed or errored).
FAILED_STATUSES = {"error", "fail", "runtime error"}

# Where a failed build's step failure carries ``NodeResult.as_dict()`` of its failed nodes
# (defs/transform writes it, the runner reads it back into RunOutcome.dbt_errors).
DBT_FAILURES_METADATA = "dbt_failures"

# dbt itself, in a child of this very interpreter.
_DBT_MAIN = "import sys; from dbt.cli.main import cli; sys.exit(cli())"


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
        self, args: Sequence[str], command: Sequence[str], *, cwd: Path,
        timeout_seconds: float | None,
    ):
        self.args = list(args)  # dbt's arguments, e.g. ["build", "--select", "grants_snapshot+"]
        self.command = list(command)
        self.results: list[NodeResult] = []
        self.errors: list[str] = []  # error-level messages not tied to a node (e.g. a parse error)
        self.returncode: int | None = None
        self._cwd = cwd
        self._timeout_seconds = timeout_seconds
        self._events: Generator[dict[str, Any], None, None] | None = None
        self._done = False

    def __enter__(self) -> DbtInvocation:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._events is not None:
            self._events.close()  # stops dbt if it still runs

    def __iter__(self) -> Iterator[NodeResult]:
        if self._events is not None:
            raise RuntimeError("a dbt invocation can be iterated once")
        self._events = _dbt_events(self.command, self._cwd, self._timeout_seconds, self)
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
            elif info.get("level") == "error" and not node.get("unique_id"):
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
    return DbtInvocation(
        args, dbt_command(args, dbt_dir), cwd=dbt_dir, timeout_seconds=timeout_seconds
    )


def build(
    database_file: Path | str,
    dbt_dir: Path,
    *,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    indirect_selection: str | None = None,
    timeout_seconds: float | None = None,
) -> DbtInvocation:
    """``dbt build`` of the project (or of ``select``): models, snapshots and data tests, in
    dependency order; a failing test stops everything downstream of it.

    dbt unit tests are never part of it: they test the SQL with fixed inputs, in development
    and CI, and say nothing about the data of a sync. manifest.json and run_results.json are
    not written (results come as events; writing them costs most of a second per build).
    """
    args = ["build", *build_selection(select, exclude, indirect_selection), "--no-write-json"]
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


def dbt_command(args: Sequence[str], dbt_dir: Path, *, log_format: str = "json") -> list[str]:
    """The command line of ``dbt <args>`` on this project, with ``dbt_dir`` as its profiles,
    target and log directory."""
    return [sys.executable, "-c", _DBT_MAIN, *args,
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(dbt_dir),
            "--target-path", str(dbt_dir), "--log-path", str(dbt_dir),
            "--log-format", log_format]


def dbt_environment() -> dict[str, str]:
    """The environment of a dbt process: ours, without the LangSmith settings (dbt needs none,
    and the API key has no business in a process that logs), without usage statistics."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LANGSMITH_")}
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "PYTHONUNBUFFERED": "1"})
    # dbt reads these before its command line; ours must win.
    for name in ("DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "DBT_TARGET_PATH", "DBT_LOG_PATH",
                 "DBT_LOG_FORMAT"):
        env.pop(name, None)
    return env


def _dbt_events(
    command: list[str], cwd: Path, timeout_seconds: float | None, invocation: DbtInvocation
) -> Generator[dict[str, Any], None, None]:
    """The engine: start dbt, yield its structured events as they come, record its exit code
    on ``invocation``. Closing the generator early stops dbt (SIGINT, then kill)."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, cwd=cwd, env=dbt_environment(), stdout=subprocess.PIPE, stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
        timer = None
        if timeout_seconds is not None:
            timer = threading.Timer(timeout_seconds, process.kill)
            timer.daemon = True
            timer.start()
        try:
            assert process.stdout is not None
            with process.stdout:
                for line in process.stdout:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if isinstance(event, dict) and "info" in event:
                            yield event
            invocation.returncode = process.wait()
        finally:
            if timer is not None:
                timer.cancel()
            _stop(process)
        if invocation.returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace").strip()[-2000:]
            if timer is not None and invocation.returncode == -signal.SIGKILL:
                invocation.errors.append(f"dbt was stopped after {timeout_seconds:g} s")
            elif tail and not invocation.errors:
                invocation.errors.append(tail)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # dbt cancels its queries and exits
    try:
        process.wait(timeout=25)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
