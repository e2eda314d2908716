"""The sync job and its schedule, partitioned by org (``defs/orgs.py``)."""


from datetime import UTC, datetime

import dagster as dg

from langsmith_access import names
from langsmith_access.defs.extract.assets import (
    raw_members,
    raw_org_settings,
    raw_roles,
    raw_workspaces,
)
from langsmith_access.defs.orgs import deployment_orgs, org_run_config, schedule_tick
from langsmith_access.defs.sync.publish import analysts_database
from langsmith_access.defs.transform.assets import access_tables
from langsmith_access.governance.notifications import notify_sync_not_started
from langsmith_access.settings import Settings

SYNC_JOB_NAME = names.SYNC_JOB



def sync_job(config: dg.PartitionedConfig):
    # In-process: one process per run keeps start-up cheap, and lets the run hold the writer
    # lease and its scratch database from the first step to the last.
    return dg.define_asset_job(
        SYNC_JOB_NAME,
        selection=dg.AssetSelection.assets(
            raw_roles, raw_workspaces, raw_members, raw_org_settings, access_tables, analysts_database
        ),
        executor_def=dg.in_process_executor,
        config=config,
        tags=names.RUN_TIME_LIMIT_TAGS,
        description="Extract one org (the partition) from LangSmith, build its access tables, "
        "publish them atomically.",
    )


def scheduled_time(context: dg.ScheduleEvaluationContext) -> datetime:
    """The time the tick was scheduled for; now for a tick evaluated without one (Dagster's
    property raises then: ``build_schedule_context()`` with no time)."""
    try:
        return context.scheduled_execution_time
    except Exception:
        return datetime.now(UTC)


@dg.definitions
def sync_definitions() -> dg.Definitions:
    orgs = deployment_orgs()
    job = sync_job(org_run_config(orgs=orgs))

    @dg.schedule(
        name=names.SYNC_SCHEDULE,
        job=job,
        cron_schedule=Settings.from_env().sync_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Keeps every org's access tables fresh: one run per org on each tick "
        "(LANGSMITH_ACCESS_SYNC_CRON, hourly by default).",
    )
    def langsmith_access_sync_schedule(context: dg.ScheduleEvaluationContext):
        # The orgs of the definitions' load: a changed orgs file takes a code server reload.
        scheduled_at = scheduled_time(context)
        # An org left without a usable key raises sync.failed on each tick, as a failing run
        # would: its tables would otherwise go stale without a word.
        return schedule_tick(context, orgs, job_name=SYNC_JOB_NAME, on_no_key=lambda org, reason:
                             notify_sync_not_started(org, reason, scheduled_at=scheduled_at))

    # analysts_database itself comes from publish.py, like every other asset from its module.
    return dg.Definitions(jobs=[job], schedules=[langsmith_access_sync_schedule])
