-- Credentials of the latest inventory: service keys, workspace service keys, personal access
-- tokens, SCIM tokens. Only the short key the API shows; never a secret.
with latest_inventory_credentials as (
    {{ latest_sync_rows(source('raw', 'credentials')) }}
)

select
    trim(credential_id) as credential_id,
    kind,
    short_key,
    nullif(trim(description), '') as description,
    workspace_names,
    nullif(trim(listed_in_workspace_id), '') as listed_in_workspace_id,
    nullif(trim(default_workspace_name), '') as default_workspace_name,
    nullif(trim(role_id), '') as role_id,
    nullif(trim(org_role_id), '') as org_role_id,
    nullif(trim(access_scope), '') as access_scope,
    nullif(trim(created_by), '') as created_by,
    coalesce(read_only, false) as read_only,
    cast(created_at as timestamptz) as created_at,
    cast(last_used_at as timestamptz) as last_used_at,
    cast(expires_at as timestamptz) as expires_at,
    cast(revoked_at as timestamptz) as revoked_at,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_inventory_credentials
