"""The runner's ephemeral Dagster instance records a run exactly as Dagster's stock one does.

Its event log keeps one sqlite connection instead of opening one per call
(``runner.OneConnectionEventLogStorage``); what runs record must not change: the same events,
readable the same ways (the run's records, the latest materialization, the asset check's
evaluation), the listeners the CLI's progress lines come from, and runs from another thread.
"""

from __future__ import annotations

import threading
import uuid

import dagster as dg

from langsmith_access import runner


@dg.asset
def upstream() -> int:
    return 1


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="downstream", blocking=True)])
def downstream(upstream: int):
    yield dg.Output(upstream + 1, metadata={"rows": upstream + 1})
    yield dg.AssetCheckResult(check_name="positive", passed=upstream + 1 > 0)


@dg.asset
def failing(downstream: int) -> int:
    raise ValueError("planted failure")


DEFS = dg.Definitions(
    assets=[upstream, downstream, failing],
    jobs=[dg.define_asset_job("passes", selection=["upstream", "downstream"]),
          dg.define_asset_job("fails", selection=["upstream", "downstream", "failing"])],
)


def run(instance: dg.DagsterInstance, job: str):
    heard: list[str] = []
    run_id = str(uuid.uuid4())
    instance.add_event_listener(run_id, lambda event: heard.append(event.dagster_event.event_type_value)
                                if event.dagster_event else None)
    result = DEFS.resolve_job_def(job).execute_in_process(
        instance=instance, run_id=run_id, raise_on_error=False)
    return result, heard


def recorded(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str | None]]:
    return [
        (record.event_log_entry.dagster_event.event_type_value,
         record.event_log_entry.dagster_event.step_key)
        for record in instance.get_records_for_run(run_id, limit=1000).records
        if record.event_log_entry.dagster_event is not None
    ]


def test_runs_are_recorded_as_by_the_stock_ephemeral_instance():
    ours, stock = runner.ephemeral_instance(), dg.DagsterInstance.ephemeral()
    assert isinstance(ours.event_log_storage, runner.OneConnectionEventLogStorage)
    assert ours.is_ephemeral
    # Its tables and the asset key table's columns are read once; the answers are the stock ones.
    for column in ("last_materialization_timestamp", "wipe_timestamp", "no_such_column"):
        assert (ours.event_log_storage.has_asset_key_col(column)
                == stock.event_log_storage.has_asset_key_col(column))
    assert ours.event_log_storage.has_asset_key_index_cols()

    for job in ("passes", "fails"):
        (ours_result, ours_heard), (stock_result, stock_heard) = run(ours, job), run(stock, job)
        assert ours_result.success == stock_result.success == (job == "passes")
        assert recorded(ours, ours_result.run_id) == recorded(stock, stock_result.run_id)
        assert ours_heard == stock_heard and "ASSET_MATERIALIZATION" in ours_heard
        assert ours.get_run_by_id(ours_result.run_id).status == stock.get_run_by_id(stock_result.run_id).status

    # Read back as the UI and the tests read runs: the latest materialization and its metadata,
    # the check's evaluation, across the two runs.
    latest = ours.get_latest_materialization_event(dg.AssetKey("downstream"))
    assert latest is not None and latest.asset_materialization.metadata["rows"].value == 2
    evaluations = ours.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("downstream"), "positive"), limit=10)
    assert len(evaluations) == 2 and all(e.status.value == "SUCCEEDED" for e in evaluations)
    failures = [kind for kind, step in recorded(ours, ours_result.run_id) if step == "failing"]
    assert "STEP_FAILURE" in failures


def test_a_run_on_another_thread_uses_the_same_event_log():
    ours = runner.ephemeral_instance()
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=run(ours, "passes")[0]))
    worker.start()
    worker.join()
    result = outcome["result"]
    assert result.success
    assert ("ASSET_MATERIALIZATION", "downstream") in recorded(ours, result.run_id)
    # ... and this thread reads what that one wrote.
    assert ours.get_latest_materialization_event(dg.AssetKey("upstream")) is not None


def test_the_event_log_opens_no_connection_per_call():
    ours = runner.ephemeral_instance()
    opened: list[object] = []
    from sqlalchemy import event

    event.listen(ours.event_log_storage._engine, "connect", lambda *args: opened.append(args))
    result, _ = run(ours, "passes")
    assert result.success
    assert opened == []  # every read and write went through the connection held from the start


def test_run_job_disposes_the_instance_it_made_on_its_own_thread(tmp_path, monkeypatch):
    # Left to the garbage collector, the instance's sqlite connections were closed on whichever
    # thread collected them, and sqlite refused with a traceback per connection (six at the end
    # of `python -m langsmith_access.cli demo`). run_job closes what it made, before returning.
    from langsmith_access.sandbox import SandboxServer, generate_org
    from langsmith_access.settings import load_orgs

    made: list[dg.DagsterInstance] = []

    def instance() -> dg.DagsterInstance:
        made.append(runner.ephemeral_instance())
        return made[-1]

    monkeypatch.setattr(runner, "instance", instance)
    with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
        org = load_orgs(sandbox.environment(tmp_path / "access.duckdb")).get()
        outcome = runner.run_job("check_langsmith_connection", {}, org=org)
    assert outcome.success, outcome.failure
    [used] = made
    assert used._run_storage._held_conn.closed and used._event_storage._held_conn.closed

    # An instance the caller hands in stays the caller's, open.
    mine = runner.ephemeral_instance()
    with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
        org = load_orgs(sandbox.environment(tmp_path / "access.duckdb")).get()
        assert runner.run_job("check_langsmith_connection", {}, org=org, dagster_instance=mine).success
    assert not mine._run_storage._held_conn.closed
    assert len(mine.get_runs()) == 1
    mine.dispose()
