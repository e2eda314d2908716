-- The audit log: one row per event, loaded incrementally by the inventory (overlapping time
-- windows, each event once by id; the first load reaches back LANGSMITH_ACCESS_UNUSED_DAYS).
-- Mostly writes are logged, and logins. operation is kept as LangSmith sends it (login,
-- add_member_to_workspace, create_service_key, ...: an open set). Empty where the plan or the
-- key has no audit log (see sync_runs.skipped_sections).
-- (Straight from the raw table, which keeps each event once by id.)
with events as (
    select
        trim(event_id) as event_id,
        cast("at" as timestamptz) as "at",
        operation,
        succeeded,
        nullif(trim(actor_user_id), '') as actor_user_id,
        nullif(trim(credential_id), '') as credential_id,
        nullif(trim(workspace_id), '') as workspace_id,
        coalesce(target_ids, []::varchar[]) as target_ids,
        source_ip,
        http_method,
        path,
        status_code,
        detail,
        cast(fetched_at as timestamptz) as loaded_at
    from {{ source('raw', 'audit_events') }}
),

members as (
    select * from {{ ref('stg_langsmith__org_members') }}
)

select
    events.event_id,
    events."at",
    events.operation,
    events.succeeded,
    events.actor_user_id,
    members.email as actor_email,
    events.credential_id,
    events.workspace_id,
    events.target_ids,
    events.source_ip,
    events.http_method,
    events.path,
    events.status_code,
    events.detail,
    events.loaded_at
from events
left join members
    on members.ls_user_id = events.actor_user_id
