"""Run the Dagster jobs in-process for the CLI, with a compact progress display.

The CLI runs exactly the definitions the schedule and sensor run (``langsmith_access.definitions``);
with ``DAGSTER_HOME`` set the runs land in that instance's history, otherwise in an ephemeral one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, TextIO

import dagster as dg

from langsmith_access.definitions import defs
from langsmith_access.names import MEMBERS_OP, SYNC_JOB
from langsmith_access.settings import Settings, SettingsError
from langsmith_access.store import dbt_runner
from langsmith_access.store.database import AccessDatabase


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    duration_seconds: float
    failure: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    dbt_errors: list[str] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # op name -> its output, for ops that returned one


def instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def sync_run_config(
    *,
    accept_shrink: bool = False,
    max_shrink_share: float | None = None,
    membership_route: str | None = None,
) -> dict:
    config: dict = {
        "accept_shrink": accept_shrink,
        "max_shrink_share": Settings.from_env().max_shrink_share
        if max_shrink_share is None
        else max_shrink_share,
    }
    if membership_route:
        config["membership_route"] = membership_route
    return {"ops": {MEMBERS_OP: {"config": config}}}


def run_job(
    job_name: str,
    run_config: dict,
    *,
    progress: Callable[[str], None] | None = None,
    dagster_instance: dg.DagsterInstance | None = None,
) -> RunOutcome:
    """Execute one job of the definitions in this process and report what happened."""
    started = time.monotonic()
    # A database's first sync: dbt's parse of the project runs in a second process beside
    # Dagster's start-up and the API reads, and the dbt step takes it (store/dbt_runner.py).
    dbt_target = None
    if job_name == SYNC_JOB:
        try:
            database = AccessDatabase(Settings.from_env().duckdb_path)
        except SettingsError:
            pass  # the run reports what is wrong with the settings
        else:
            if dbt_runner.start_parse_ahead(database.scratch_path, database.dbt_target_path):
                dbt_target = database.dbt_target_path
    try:
        return _run_job(job_name, run_config, progress, dagster_instance, started)
    finally:
        if dbt_target is not None:
            dbt_runner.discard_parse_ahead(dbt_target)


def _run_job(job_name, run_config, progress, dagster_instance, started) -> RunOutcome:
    job = defs().resolve_job_def(job_name)
    run_id = str(uuid.uuid4())
    # dagster-dbt echoes every dbt log line to stdout; keep them out of the CLI's output and
    # show only the failing ones if the run fails.
    dbt_output = io.StringIO()
    with _quiet_dagster_loggers(), contextlib.redirect_stdout(dbt_output):
        the_instance = dagster_instance or instance()
        if progress is not None:
            the_instance.add_event_listener(run_id, lambda event: _report(event, progress))
        result = job.execute_in_process(
            # The CLI prints its own progress; Dagster's console logger would print every event.
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}, **run_config}, instance=the_instance, run_id=run_id, raise_on_error=False
        )
    outcome = RunOutcome(
        success=result.success, run_id=run_id, duration_seconds=time.monotonic() - started
    )
    for node in ("apply_requests",):
        try:
            outcome.outputs[node] = result.output_for_node(node)
        except Exception:  # the job has no such op, or it did not run
            pass
    if not result.success:
        outcome.failure, outcome.failed_checks = _failure_summary(result)
        outcome.dbt_errors = [
            line.strip()
            for line in dbt_output.getvalue().splitlines()
            if any(word in line for word in ("FAIL ", "ERROR ", "Error", "Failure in"))
        ][:20]
    return outcome


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
        if not data.passed:
            progress(f"  ✗ check {data.asset_key.to_user_string()}:{data.check_name} failed")


def _failure_summary(result) -> tuple[str, list[str]]:
    """The first error message of a failed run, and the names of the checks that failed."""
    failed_checks = []
    messages = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
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
                messages.append(f"{event.step_key or 'run'}: {error.message.strip()}")
    message = messages[0] if messages else "the run failed (see the Dagster event log)"
    return message, failed_checks


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
