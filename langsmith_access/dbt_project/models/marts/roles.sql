-- Role definitions, organization and workspace scoped, built-in and custom. Every custom role
-- is named CUSTOM and carries the organization's id; built-in roles have no organization_id.
with all_roles as (
    select * from {{ ref('stg_langsmith__roles') }}
)

select
    role_id,
    name,
    display_name,
    description,
    access_scope,
    (name = 'CUSTOM' or organization_id is not null) as is_custom,
    organization_id,
    -- As role_permissions lists them: trimmed, blanks dropped, each once (the API may repeat one).
    len(list_distinct(list_filter(
        list_transform(permissions, lambda permission: trim(permission)),
        lambda permission: permission <> ''
    ))) as permission_count,
    is_restricted,
    sync_id,
    fetched_at as synced_at
from all_roles
