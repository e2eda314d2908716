-- Every credential the latest inventory could list: org service keys (service_key), workspace
-- service keys (workspace_service_key, one listing per workspace), personal access tokens
-- (personal_access_token: the ones the sync's key may see; LangSmith documents no listing of
-- every member's tokens) and SCIM tokens (scim_token). Never a secret: short_key is the
-- redacted form the API shows. A kind the plan, the key or the install does not have is empty,
-- with the reason in sync_runs.skipped_sections. status and the ages are as of this build.
with latest_inventory_credentials as (
    {{ latest_sync_rows(source('raw', 'credentials')) }}
),

credentials as (
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
),

roles as (
    select * from {{ ref('stg_langsmith__roles') }}
),

users as (
    select * from {{ ref('stg_langsmith__org_members') }}
)

select
    credentials.credential_id,
    credentials.kind,
    credentials.short_key,
    credentials.description,
    credentials.workspace_names,
    credentials.kind = 'service_key' and credentials.workspace_names is null as is_org_wide,
    credentials.listed_in_workspace_id,
    credentials.default_workspace_name,
    credentials.role_id,
    workspace_roles.display_name as role_name,
    credentials.org_role_id,
    org_roles.display_name as org_role_name,
    credentials.access_scope,
    credentials.created_by,
    creators.email as created_by_email,
    credentials.read_only,
    credentials.created_at,
    credentials.last_used_at,
    credentials.expires_at,
    credentials.revoked_at,
    case
        when credentials.revoked_at is not null and credentials.revoked_at <= now() then 'revoked'
        when credentials.expires_at is not null and credentials.expires_at <= now() then 'expired'
        else 'active'
    end as status,
    -- Whole days elapsed (not midnights crossed: 2 minutes across midnight is 0 days).
    date_diff('second', credentials.last_used_at, now()) // 86400 as days_since_last_use,
    credentials.sync_id,
    credentials.fetched_at as synced_at
from credentials
left join roles as workspace_roles
    on workspace_roles.role_id = credentials.role_id
left join roles as org_roles
    on org_roles.role_id = credentials.org_role_id
left join users as creators
    on creators.ls_user_id = credentials.created_by
