-- Role definitions of the latest sync, organization and workspace roles, built-in and custom.
-- Roles are keyed by id: every custom role has the name CUSTOM.
with latest_sync_roles as (
    {{ latest_sync_rows(source('raw', 'roles')) }}
)

select
    trim(role_id) as role_id,
    trim(name) as name,
    trim(display_name) as display_name,
    description,
    lower(trim(access_scope)) as access_scope,
    nullif(trim(organization_id), '') as organization_id,
    coalesce(permissions, []::varchar[]) as permissions,
    is_restricted,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_sync_roles
