-- Every workspace of the latest sync, personal and deleted ones included: the marts filter
-- them, and the grant checks need to know which workspaces are personal or deleted.
with latest_sync_workspaces as (
    {{ latest_sync_rows(source('raw', 'workspaces')) }}
)

select
    trim(workspace_id) as workspace_id,
    trim(display_name) as display_name,
    nullif(trim(tenant_handle), '') as tenant_handle,
    coalesce(is_personal, false) as is_personal,
    coalesce(is_deleted, false) as is_deleted,
    nullif(trim(organization_id), '') as organization_id,
    cast(created_at as timestamptz) as created_at,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_sync_workspaces
