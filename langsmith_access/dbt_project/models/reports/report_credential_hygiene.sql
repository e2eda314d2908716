-- Keys and tokens that need a look: one row per active (neither revoked nor expired)
-- credential with at least one problem, each a flag, all of them in `problems`. Active as of
-- this build: credentials.status is as of the inventory's build, and the core sync rebuilds this
-- report every hour, so a key the listing showed active that has expired (or was revoked, with
-- a time set ahead) since is left out here too.
--   never_used         never used (last_used_at null);
--   unused             not used for `unused_days` days (dbt var, default 90,
--                      LANGSMITH_ACCESS_UNUSED_DAYS) before the inventory listed it
--                      (credentials.synced_at): the core sync rebuilds this report every hour,
--                      and a use after the last listing is unknown, so a key the listing last
--                      saw used 85 days before it is not called unused ten days later;
--   no_expiry          never expires (SCIM tokens have no expiry in LangSmith: not flagged);
--   beyond_max_expiry  lives longer than the org's maximum for its kind
--                      (max_service_key_expiry_days, max_pat_expiry_days,
--                      max_api_key_expiry_days for workspace keys; no maximum set: never),
--                      a key without expiry included;
--   creator_inactive   a service key (org or workspace) whose creator is no longer an enabled
--                      member: removed from the org (known from user_history) or disabled. The
--                      key acts for a service account and outlives them; a personal access
--                      token dies with its user, and a creator created_by does not name
--                      (credentials.created_by_user_id null) is not flagged.
{% set unused_days = var('unused_days', 90) | int %}
with credentials as (
    select * from {{ ref('credentials') }}
),

users as (
    select * from {{ ref('users') }}
),

settings as (
    select * from {{ ref('org_settings') }}
),

maximum_days as (
    select
        credentials.credential_id,
        try_cast(settings.value as integer) as max_expiry_days
    from credentials
    left join settings
        on settings.setting = case credentials.kind
            when 'service_key' then 'max_service_key_expiry_days'
            when 'personal_access_token' then 'max_pat_expiry_days'
            when 'workspace_service_key' then 'max_api_key_expiry_days'
        end
),

flagged as (
    select
        credentials.*,
        maximum_days.max_expiry_days,
        credentials.last_used_at is null as never_used,
        credentials.last_used_at < credentials.synced_at - to_days({{ unused_days }}) as unused,
        credentials.kind <> 'scim_token' and credentials.expires_at is null as no_expiry,
        credentials.kind <> 'scim_token'
            and maximum_days.max_expiry_days is not null
            and (credentials.expires_at is null
                 or credentials.expires_at
                     > credentials.created_at + to_days(maximum_days.max_expiry_days))
            as beyond_max_expiry,
        credentials.kind in ('service_key', 'workspace_service_key')
            and credentials.created_by_user_id is not null
            and coalesce(creators.is_disabled, true) as creator_inactive
    from credentials
    inner join maximum_days
        on maximum_days.credential_id = credentials.credential_id
    left join users as creators
        on creators.user_id = credentials.created_by_user_id
    where credentials.status = 'active'
        and (credentials.expires_at is null or credentials.expires_at > now())
        and (credentials.revoked_at is null or credentials.revoked_at > now())
)

select
    credential_id,
    kind,
    short_key,
    description,
    workspace_names,
    role_name,
    org_role_name,
    created_by_email,
    created_by_user_id,
    created_at,
    last_used_at,
    expires_at,
    max_expiry_days,
    coalesce(never_used, false) as never_used,
    coalesce(unused, false) as unused,
    coalesce(no_expiry, false) as no_expiry,
    coalesce(beyond_max_expiry, false) as beyond_max_expiry,
    coalesce(creator_inactive, false) as creator_inactive,
    list_filter(
        [
            case when never_used then 'never_used' end,
            case when unused then 'unused' end,
            case when no_expiry then 'no_expiry' end,
            case when beyond_max_expiry then 'beyond_max_expiry' end,
            case when creator_inactive then 'creator_inactive' end
        ],
        lambda problem: problem is not null
    ) as problems,
    {{ unused_days }} as unused_after_days
from flagged
where never_used or unused or no_expiry or beyond_max_expiry or creator_inactive
