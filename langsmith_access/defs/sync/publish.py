"""The last sync step: record the run, queue the notifications of the drift it saw, commit the
scratch database, publish the analysts' copy."""


import json
from datetime import UTC, datetime

import dagster as dg

from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, LangSmithAPI, SyncDatabase, run_started_at
from langsmith_access.defs.transform.assets import access_tables
from langsmith_access.governance.drift import notify_unexplained_changes, unexplained_changes
from langsmith_access.governance.notifications import Notifier
from langsmith_access.names import SYNC_JOB
from langsmith_access.store.sync_runs import picture_metrics, record_sync_run
from langsmith_access.transform.selection import INVENTORY_TAG

ANALYSTS_DATABASE = dg.AssetKey("analysts_database")


# Every dbt table but the inventory's own (tagged in dbt_project.yml): a core sync may leave
# those as the last inventory built them (transform/selection.py), and Dagster skips a step
# whose upstream asset was not materialized in its run. They reach the publish through what
# reads them (user_activity, report_credential_hygiene), built by both jobs.
PUBLISHED_AFTER = [spec.key for spec in access_tables.specs if INVENTORY_TAG not in spec.tags]


@dg.asset(
    key=ANALYSTS_DATABASE,
    group_name="publish",
    deps=PUBLISHED_AFTER,
    pool=DUCKDB_WRITER_POOL,
    kinds={"duckdb"},
    description=(
        "The analysts' DuckDB file (LANGSMITH_ACCESS_DUCKDB), replaced atomically by rename "
        "once every extract, model and check of the run has succeeded; the Parquet copy of "
        "its tables beside it is swapped in with it."
    ),
)
def analysts_database(
    context: dg.AssetExecutionContext, langsmith: LangSmithAPI, sync_database: SyncDatabase
) -> dg.MaterializeResult:
    started = run_started_at(context.instance, context.run.run_id)
    with sync_database.connect() as conn:
        counts = record_sync_run(
            conn,
            sync_id=context.run.run_id,
            started_at=started,
            finished_at=datetime.now(UTC),
            api_stats=langsmith.client.stats.snapshot(),
            job=context.job_name,
        )
        metrics = picture_metrics(conn, counts)
        # Drift this sync saw: one change.unexplained each, in the file it publishes (so
        # notified exactly when published), once per change however often this runs.
        org = sync_database.org
        drift = unexplained_changes(conn, context.run.run_id)
        notified = notify_unexplained_changes(
            conn, Notifier.from_settings(org.settings, org.slug), context.run.run_id)
        if notified:
            context.log.info(f"{len(notified)} unexplained change(s): change.unexplained queued for the webhook.")
    if context.job_name == SYNC_JOB:  # the inventory rebuilds no grants: it sees no drift
        metrics["unexplained_changes"] = len(drift)
    sync_database.commit_and_publish()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(sync_database.database.path)),
            "parquet_path": dg.MetadataValue.path(str(sync_database.database.parquet_path)),
            **{k: v for k, v in counts.items() if isinstance(v, (int, float, str)) and k not in metrics},
            # Numbers of the whole picture, one point per run: the UI plots them across runs.
            **{name: dg.MetadataValue.int(value) for name, value in metrics.items()},
            "skipped_section_reasons": dg.MetadataValue.json(json.loads(counts["skipped_sections"])),
        }
    )


@dg.definitions
def publish_definitions() -> dg.Definitions:
    # A @definitions function, so the module's imports (access_tables) are not loaded twice.
    return dg.Definitions(assets=[analysts_database])
