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

-- The API names a key's workspaces by display name only. A name gives an id where exactly one
-- workspace of the latest sync that is not deleted (personal ones count: a token may reach one)
-- bears it; a name several bear, or none, gives no id.
workspace_by_name as (
    select display_name as name, any_value(workspace_id) as workspace_id
    from {{ ref('stg_langsmith__workspaces') }}
    where not is_deleted
    group by display_name
    having count(*) = 1
),

named_workspaces as (
    select
        credential_id,
        unnest(workspace_names) as name,
        generate_subscripts(workspace_names, 1) as position
    from credentials
),

-- Each key's workspace ids, in workspace_names' order; none unless every name gave one (a
-- partial list would hide the key from whoever asks by id what reaches a workspace).
credential_workspaces as (
    select
        named_workspaces.credential_id,
        case
            when count(*) = count(workspace_by_name.workspace_id)
                then list(workspace_by_name.workspace_id order by named_workspaces.position)
        end as workspace_ids
    from named_workspaces
    left join workspace_by_name
        on workspace_by_name.name = trim(named_workspaces.name)
    group by named_workspaces.credential_id
),

users as (
    select * from {{ ref('stg_langsmith__org_members') }}
),

-- Each name a credential's created_by may give its creator, compared without case: LangSmith
-- leaves its format open (langsmith-api.md; Terraform reads it as text, cartography matches user
-- ids, identity ids, emails and login user names). A current member's names first (rank 1), then
-- a former member's user id and every email they had (rank 2: users_snapshot keeps those who
-- left, with a row for each email change).
creator_names as (
    select lower(ls_user_id) as name, ls_user_id as user_id, email, 1 as rank from users
    union all
    select lower(org_identity_id), ls_user_id, email, 1 from users where org_identity_id is not null
    union all
    select lower(legacy_user_id), ls_user_id, email, 1 from users where legacy_user_id is not null
    union all
    select lower(email), ls_user_id, email, 1 from users where email is not null
    union all
    select lower(login.method.username), users.ls_user_id, users.email, 1
    from users, unnest(users.login_methods) as login(method)
    where login.method.username is not null
    union all
    select lower(named.name), former.user_id, former.last_email, 2
    from (
        select
            user_id,
            list(distinct email) filter (where email is not null) as emails,
            arg_max(email, dbt_valid_from) as last_email
        from {{ ref('users_snapshot') }}
        group by user_id
    ) as former, unnest(list_prepend(former.user_id, former.emails)) as named(name)
),

-- The names created_by matches, of its best rank only.
creator_matches as (
    select distinct
        credentials.created_by,
        creator_names.user_id,
        creator_names.email
    from (select distinct created_by from credentials where created_by is not null) as credentials
    inner join creator_names
        on creator_names.name = lower(credentials.created_by)
    qualify creator_names.rank = min(creator_names.rank) over (partition by credentials.created_by)
),

-- created_by's person: the one person its names point to; none when they point to several (a
-- user name two members share) or to nobody (a format not listed above).
creators as (
    select
        created_by,
        any_value(user_id) as user_id,
        any_value(email) as email
    from creator_matches
    group by created_by
    having count(distinct user_id) = 1
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
    -- null for an org-wide key; an empty list kept as listed
    case
        when len(credentials.workspace_names) = 0 then []::varchar[]
        else credential_workspaces.workspace_ids
    end as workspace_ids,
    default_workspace.workspace_id as default_workspace_id,
    credentials.role_id,
    workspace_roles.display_name as role_name,
    credentials.org_role_id,
    org_roles.display_name as org_role_name,
    credentials.access_scope,
    credentials.created_by,
    creators.user_id as created_by_user_id,
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
left join creators
    on creators.created_by = credentials.created_by
left join credential_workspaces
    on credential_workspaces.credential_id = credentials.credential_id
left join workspace_by_name as default_workspace
    on default_workspace.name = credentials.default_workspace_name
