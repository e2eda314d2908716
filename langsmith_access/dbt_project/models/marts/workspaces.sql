-- The organization's shared workspaces: personal and deleted workspaces are left out.
with all_workspaces as (
    select * from {{ ref('stg_langsmith__workspaces') }}
)

select
    workspace_id,
    display_name,
    tenant_handle,
    created_at,
    organization_id,
    sync_id,
    fetched_at as synced_at
from all_workspaces
where not is_personal
    and not is_deleted
