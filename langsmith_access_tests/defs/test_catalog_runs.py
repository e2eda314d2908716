"""A sync launched from the asset catalog ("Materialize", a backfill) runs Dagster's implicit asset
job, not ``langsmith_access_sync``: it publishes what it read, as the named job does."""

import re

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from langsmith_access import names
from langsmith_access.definitions import defs
from langsmith_access.defs.transform.assets import access_tables
from langsmith_access_tests.helpers import query

IMPLICIT_ASSET_JOB = "__ASSET_JOB"
MEMBERS_ROUTE = "/api/v1/platform/orgs/current/members"


def test_a_sync_materialized_from_the_asset_catalog_publishes_what_it_read(env, instance, monkeypatch):
    sandbox, _, database = env
    # As the webserver launches it: the job rebuilt from the code location, on a persistent instance.
    job = ReconstructableRepository.for_module("langsmith_access.definitions", "defs").get_reconstructable_job(
        IMPLICIT_ASSET_JOB)
    sync_assets = list(defs().resolve_job_def(names.SYNC_JOB).asset_layer.selected_asset_keys)

    def materialize() -> tuple[bool, str]:
        with dg.execute_job(job, instance=instance, asset_selection=sync_assets,
                            tags={"dagster/partition": "default"}) as result:
            return result.success, result.run_id

    # One that fails first: its row (published by the next good run) names the sync too.
    sandbox.faults.failing_routes = (MEMBERS_ROUTE,)
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")
    succeeded, failed_run_id = materialize()
    assert not succeeded
    sandbox.faults.failing_routes = ()
    succeeded, run_id = materialize()
    assert succeeded
    # Every step wrote into the one scratch copy the publish committed: the analysts' tables are
    # this run's read (each step in a process of its own wrote to a copy thrown away with it).
    for table in ("raw.org_members", "raw.workspaces", "main.users", "main.workspaces"):
        assert query(database.path, f"SELECT DISTINCT sync_id FROM {table}") == [(run_id,)], table
    # Recorded as the sync it was: the next sync's shrink guard and drift report take their
    # previous sync from the rows of langsmith_access_sync.
    assert query(database.path, "SELECT status, job FROM main.sync_runs WHERE sync_id = ?", [run_id]) == [
        ("succeeded", names.SYNC_JOB)]
    # The failed one too: the sync's next run finds its previous sync by the job, and its
    # sync.failed says "langsmith_access_sync run ... failed", not Dagster's internal name.
    assert query(database.path, "SELECT status, job FROM main.sync_runs WHERE sync_id = ?", [failed_run_id]) == [
        ("failed", names.SYNC_JOB)]


def test_a_sync_launched_with_the_dbt_checks_left_out_runs_no_dbt_test(env, instance):
    # The catalog lets an operator deselect checks; dagster-dbt then asks dbt to leave the tests
    # of the selected models out (indirect selection "empty"). Run anyway, they would take the
    # time and could fail the run while their results are dropped, unseen.
    _, _, database = env
    job = defs().resolve_job_def(names.SYNC_JOB)
    python_checks = set(job.asset_layer.asset_graph.asset_check_keys) - set(access_tables.check_keys)
    without_dbt_checks = job.get_subset(asset_selection=set(job.asset_layer.selected_asset_keys),
                                        asset_check_selection=python_checks)
    dbt_log = database.dbt_target_path / "dbt.log"
    logged_before = dbt_log.stat().st_size if dbt_log.exists() else 0

    result = without_dbt_checks.execute_in_process(partition_key="default", instance=instance)

    assert result.success
    assert not [evaluation for evaluation in result.get_asset_check_evaluations()
                if evaluation.asset_check_key in access_tables.check_keys]
    started = re.findall(r" START (?:sql \w+ )?(model|snapshot|test|seed|unit_test)\b",
                         dbt_log.read_text()[logged_before:])
    assert started and set(started) == {"model", "snapshot"}, started
