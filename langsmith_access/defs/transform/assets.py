"""dbt assets (group ``transform``): the analysts' tables, their tests as asset checks."""

import dagster as dg
from dagster_dbt import dbt_assets
from dagster_dbt.asset_utils import (
    get_manifest_and_translator_from_dbt_assets,
    get_subset_selection_for_context,
)

from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, SyncDatabase
from langsmith_access.defs.transform.project import (
    build_failure,
    dagster_events,
    dbt_project,
    prepare_manifest,
    translator,
)
from langsmith_access.transform import build, dbt_vars
from langsmith_access.transform.selection import core_sync_exclusions


@dbt_assets(
    manifest=prepare_manifest(),
    project=dbt_project,
    dagster_dbt_translator=translator,
    pool=DUCKDB_WRITER_POOL,
)
def access_tables(context: dg.AssetExecutionContext, sync_database: SyncDatabase):
    # `dbt build` runs models, snapshot and tests in dependency order on the run's scratch
    # database; a failing test stops everything downstream of it, and the run publishes
    # nothing. Each node's result becomes its materialization or check result as it finishes.
    manifest, _, _ = get_manifest_and_translator_from_dbt_assets([context.assets_def])
    # Empty for the whole project; a subset launched from the UI gets dagster-dbt's selection.
    selection_args, indirect_selection = get_subset_selection_for_context(
        context=context, manifest=manifest, select=None, exclude=None, selector=None,
        dagster_dbt_translator=translator, current_dbt_indirect_selection_env=None,
    )
    select = selection_args[1:] if selection_args[:1] == ["--select"] else []
    # The whole project (the core sync): the inventory's models stay as the last inventory
    # built them, unless the file lacks them as the project defines them (transform/selection.py).
    exclude = [] if select else core_sync_exclusions(manifest, sync_database.scratch_path)
    # The docs site follows the models, not the data: made only when the project changed, from
    # the manifest this build compiles (written only then).
    docs_due = sync_database.docs_site_due()
    with build(
        sync_database.scratch_path, sync_database.dbt_target_path,
        select=select, exclude=exclude, indirect_selection=indirect_selection,
        variables=dbt_vars(unused_days=sync_database.org.settings.unused_days),
        write_json=docs_due,
    ) as invocation:
        for result in invocation:
            yield from dagster_events(result, manifest, context)
    if not invocation.success:
        raise build_failure(invocation)
    if docs_due:
        sync_database.stage_docs_site()


# dbt sources no asset materializes: provisioning, the sync's and the inventory's own records
# (the queue, run history, where reads stand). Declared so the catalog shows what each is,
# described once, in sources.yml.
RECORDS_GROUP = "records"
RECORD_SOURCES = {
    ("raw", "provisioning_observations"), ("raw", "section_reads"), ("raw", "audit_windows"),
    ("main", "provisioning_requests"), ("main", "sync_runs"),
}


def record_specs() -> list[dg.AssetSpec]:
    manifest, _, _ = get_manifest_and_translator_from_dbt_assets([access_tables])
    return [
        dg.AssetSpec(translator.get_asset_key(props), description=props.get("description") or None,
                     group_name=RECORDS_GROUP, kinds={"duckdb"})
        for props in manifest["sources"].values() if (props["source_name"], props["name"]) in RECORD_SOURCES
    ]


@dg.definitions
def transform_definitions() -> dg.Definitions:
    return dg.Definitions(assets=[access_tables, *record_specs()])
