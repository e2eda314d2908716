"""The sync job and its schedule."""


import dagster as dg

from langsmith_access import names
from langsmith_access.defs.extract.assets import (
    raw_members,
    raw_org_settings,
    raw_roles,
    raw_workspaces,
)
from langsmith_access.defs.sync.publish import analysts_database
from langsmith_access.defs.transform.assets import access_tables
from langsmith_access.settings import Settings

SYNC_JOB_NAME = names.SYNC_JOB

# In-process: one process per run keeps start-up cheap, and lets the run hold the writer
# lease and its scratch database from the first step to the last.
langsmith_access_sync = dg.define_asset_job(
    SYNC_JOB_NAME,
    selection=dg.AssetSelection.assets(
        raw_roles, raw_workspaces, raw_members, raw_org_settings, access_tables, analysts_database
    ),
    executor_def=dg.in_process_executor,
    description="Extract the org from LangSmith, build the access tables, publish them atomically.",
)


@dg.definitions
def sync_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[analysts_database],
        jobs=[langsmith_access_sync],
        schedules=[
            dg.ScheduleDefinition(
                name=names.SYNC_SCHEDULE,
                job=langsmith_access_sync,
                cron_schedule=Settings.from_env().sync_cron,
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description="Keeps the access tables fresh (LANGSMITH_ACCESS_SYNC_CRON, hourly by default).",
            )
        ],
    )
