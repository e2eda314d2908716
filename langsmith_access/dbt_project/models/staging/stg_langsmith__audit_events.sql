-- Every audit-log event loaded so far (the raw table is appended to, one window at a time, and
-- keeps each event once by id). Operations are kept as sent: LangSmith's set grows.
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
    sync_id as loaded_by_sync_id,
    cast(fetched_at as timestamptz) as loaded_at
from {{ source('raw', 'audit_events') }}
