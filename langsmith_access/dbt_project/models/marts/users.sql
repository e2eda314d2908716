-- Users are the active (accepted) organization members. Disabled members are still members
-- and are kept, flagged; pending invites are not users (see pending_invites).
with members as (
    select * from {{ ref('stg_langsmith__org_members') }}
),

roles as (
    select * from {{ ref('stg_langsmith__roles') }}
),

-- How each member was provisioned, from their login methods: where they have several, scim
-- over saml:jit over bootstrap; a value LangSmith adds later ranks after those, before none.
provisioning as (
    select
        ls_user_id,
        arg_min(
            method.provisioning_method,
            -- the rank, then the value itself: the same answer every build
            case method.provisioning_method
                when 'scim' then '1'
                when 'saml:jit' then '2'
                when 'bootstrap' then '3'
                else '4'
            end || method.provisioning_method
        ) as provisioning_method
    from members, unnest(members.login_methods) as methods(method)
    where method.provisioning_method is not null
    group by ls_user_id
)

select
    members.ls_user_id as user_id,
    members.org_identity_id,
    members.email,
    coalesce(members.full_name, members.display_name) as full_name,
    members.display_name,
    members.is_disabled,
    members.org_role_id,
    coalesce(roles.display_name, members.org_role_name) as org_role_name,
    members.created_at,
    members.legacy_user_id,
    members.sync_id,
    members.fetched_at as synced_at,
    provisioning.provisioning_method,
    coalesce(provisioning.provisioning_method = 'scim', false) as is_scim_managed
from members
left join roles
    on roles.role_id = members.org_role_id
left join provisioning
    on provisioning.ls_user_id = members.ls_user_id
