-- Pending organization invites of the latest sync. An invite is not a user: it never becomes a
-- grant, and provisioning refuses it until the person accepts.
with latest_sync_invites as (
    {{ latest_sync_rows(source('raw', 'pending_invites')) }}
)

select
    trim(invite_id) as invite_id,
    nullif(trim(email), '') as email,
    nullif(trim(org_role_id), '') as org_role_id,
    nullif(trim(org_role_name), '') as org_role_name,
    list_transform(workspace_ids, lambda workspace_id: trim(workspace_id)) as workspace_ids,
    nullif(trim(workspace_role_id), '') as workspace_role_id,
    cast(created_at as timestamptz) as created_at,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_sync_invites
