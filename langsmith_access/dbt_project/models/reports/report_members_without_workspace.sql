-- Active (not disabled) members listed in no shared workspace. Organization Admins have
-- implicit admin rights in every workspace without being listed, so they are flagged
-- (is_org_admin) rather than left out: filter them when they are not of interest.
with users as (
    select * from {{ ref('users') }}
),

grants as (
    select * from {{ ref('grants') }}
),

roles as (
    select * from {{ ref('roles') }}
),

members_with_a_workspace as (
    select distinct user_id
    from grants
    where entitlement_type = 'workspace_role'
)

select
    users.user_id,
    users.email,
    users.full_name,
    users.org_role_id,
    users.org_role_name,
    coalesce(roles.name = 'ORGANIZATION_ADMIN', false) as is_org_admin,
    users.created_at
from users
left join roles
    on roles.role_id = users.org_role_id
where not users.is_disabled
    and not exists (
        select 1
        from members_with_a_workspace
        where members_with_a_workspace.user_id = users.user_id
    )
