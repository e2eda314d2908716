"""dbt assets (group ``transform``): the analysts' tables, their tests as asset checks."""


import dagster as dg
from dagster_dbt import dbt_assets

from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, SyncDatabase
from langsmith_access.defs.transform.project import (
    DBT_EXECUTABLE,
    DbtCoreCliResource,
    dbt_project,
    prepare_manifest,
    translator,
)


@dbt_assets(
    manifest=prepare_manifest(),
    project=dbt_project,
    dagster_dbt_translator=translator,
    pool=DUCKDB_WRITER_POOL,
)
def access_tables(
    context: dg.AssetExecutionContext, dbt: DbtCoreCliResource, sync_database: SyncDatabase
):
    # `dbt build` runs models, snapshot and tests in dependency order; a failing test stops
    # everything downstream of it, and the run publishes nothing. The target directory is the
    # database's own (not one per run): dbt reuses its saved parse of the project. Results
    # reach Dagster as events; manifest.json and run_results.json (written twice per build,
    # most of a second) are not needed.
    with sync_database.dbt_target():
        yield from dbt.cli(
            ["build", "--no-write-json"], context=context, target_path=sync_database.dbt_target_path
        ).stream()


@dg.definitions
def transform_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[access_tables],
        resources={
            "dbt": DbtCoreCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)
        },
    )
