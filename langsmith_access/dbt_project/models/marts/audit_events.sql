-- The audit log: one row per event, loaded incrementally by the inventory (overlapping time
-- windows, each event once by id; the first load reaches back LANGSMITH_ACCESS_UNUSED_DAYS).
-- Mostly writes are logged, and logins. operation is kept as LangSmith sends it (login,
-- add_member_to_workspace, create_service_key, ...: an open set). Empty where the plan or the
-- key has no audit log (see sync_runs.skipped_sections).
with events as (
    select * from {{ ref('stg_langsmith__audit_events') }}
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
