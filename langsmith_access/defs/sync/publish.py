"""The last sync step: record the run, queue the notifications of the drift it saw, commit the
scratch database, publish the analysts' copy."""


import json
from collections.abc import Collection
from datetime import UTC, datetime

import dagster as dg

from langsmith_access.defs.extract.keys import job_of_run
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, LangSmithAPI, SyncDatabase, run_started_at
from langsmith_access.defs.transform.assets import access_tables
from langsmith_access.governance.drift import notify_unexplained_changes, unexplained_changes
from langsmith_access.governance.notifications import Notifier
from langsmith_access.names import INVENTORY_JOB, SYNC_JOB
from langsmith_access.store.sync_runs import has_published_sync, picture_metrics, record_sync_run
from langsmith_access.transform.selection import INVENTORY_TAG, left_behind, upstream

ANALYSTS_DATABASE = dg.AssetKey("analysts_database")


# Every dbt table but the inventory's own (tagged in dbt_project.yml): a core sync may leave
# those as the last inventory built them (transform/selection.py), and Dagster skips a step
# whose upstream asset was not materialized in its run. They reach the publish through what
# reads them (user_activity, report_credential_hygiene), built by both jobs.
PUBLISHED_AFTER = [spec.key for spec in access_tables.specs if INVENTORY_TAG not in spec.tags]
# What each dbt table reads: raw extracts (the sources) and other dbt tables.
TABLE_INPUTS = {spec.key: [dep.asset_key for dep in spec.deps] for spec in access_tables.specs}
# The tables a run must rebuild when it rebuilds what they read: the published ones but views,
# which read their inputs as they are.
FOLLOW_THEIR_INPUTS = [spec.key for spec in access_tables.specs if INVENTORY_TAG not in spec.tags
                       and str(spec.metadata.get("dagster-dbt/materialization_type")) != "view"]
# The inventory's tables, which a run may leave as the last inventory built them.
INVENTORY_TABLES = {spec.key for spec in access_tables.specs if INVENTORY_TAG in spec.tags}


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
    # The run's assets: the job's, or the subset launched from the UI.
    rebuilt = context.job_def.asset_layer.selected_asset_keys
    refuse_a_partial_picture(rebuilt, context.job_name)
    job = job_of_run(context.job_name, rebuilt)
    started = run_started_at(context.instance, context.run.run_id)
    with sync_database.connect() as conn:
        if set(rebuilt) == {ANALYSTS_DATABASE} and not has_published_sync(conn):
            raise dg.Failure(
                f"Nothing published: this run rebuilt no table, and org {sync_database.org.slug!r} (this "
                "run's partition) has no sync yet to publish again. Launch the whole "
                f"{SYNC_JOB} job for this partition first."
            )
        counts = record_sync_run(
            conn,
            sync_id=context.run.run_id,
            started_at=started,
            finished_at=datetime.now(UTC),
            api_stats=langsmith.client.stats.snapshot(),
            job=job,
            organization_id=sync_database.org.settings.organization_id,
        )
        metrics = picture_metrics(conn, counts)
        # Drift this sync saw: one change.unexplained each, in the file it publishes (so
        # notified exactly when published), once per change however often this runs.
        org = sync_database.org
        drift = unexplained_changes(conn, context.run.run_id)
        notified = notify_unexplained_changes(conn, Notifier.of_org(org), drift)
        if notified:
            context.log.info(f"{len(notified)} unexplained change(s): change.unexplained queued for the webhook.")
    if job == SYNC_JOB:  # the inventory rebuilds no grants: it sees no drift
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


def refuse_a_partial_picture(rebuilt: Collection[dg.AssetKey], job_name: str) -> None:
    """Raise, before anything is written, when this run (``rebuilt``: its assets) rebuilt what a
    published table reads and not the table: the analysts' tables would disagree with each other
    (``users`` naming an Admin whom ``effective_access`` does not show as one), and provisioning
    refreshes, which rewrite only the changed users' rows, would keep that. Nothing is committed
    then: the working file and the analysts' copy stay as the last complete run left them."""
    behind = left_behind(TABLE_INPUTS, rebuilt, FOLLOW_THEIR_INPUTS, kept=INVENTORY_TABLES)
    if not behind:
        return
    read = set().union(*(upstream(TABLE_INPUTS, table) for table in behind))
    causes = sorted(key.to_user_string() for key in read & set(rebuilt))
    # The selection to launch instead: this run's assets that none of its others feeds (a
    # multi-asset's keys all among them), with everything downstream.
    roots = sorted(key.to_user_string() for key in rebuilt
                   if key != ANALYSTS_DATABASE and upstream(TABLE_INPUTS, key).isdisjoint(rebuilt))
    keys = " or ".join(f'key:"{root}"' for root in roots)
    fix = f"{keys}+" if len(roots) == 1 else f"({keys})+"
    tables = sorted(key.to_user_string() for key in behind)
    # The asset graph's "Materialize" launches Dagster's implicit job, which no one launches whole.
    whole = job_name if job_name in (SYNC_JOB, INVENTORY_JOB) else f"{SYNC_JOB} (or {INVENTORY_JOB})"

    def listed(names: list[str]) -> str:
        return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

    raise dg.Failure(
        description=(
            f"Nothing published: this run rebuilt {listed(causes)} "
            f"but not {len(tables)} table(s) that read them ({listed(tables)}), so the analysts' tables "
            "would disagree with each other. The working database and the analysts' copy are as the "
            "last complete run left them. Materialize the selection with everything downstream of it "
            f"(the Dagster UI's asset selection `{fix}`), or launch the whole {whole} job."
        ),
        metadata={"left_behind": dg.MetadataValue.json(tables), "fix": dg.MetadataValue.text(fix)},
    )


@dg.definitions
def publish_definitions() -> dg.Definitions:
    # A @definitions function, so the module's imports (access_tables) are not loaded twice.
    return dg.Definitions(assets=[analysts_database])
