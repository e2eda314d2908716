-- Disabled members who still hold workspace grants: one row per such grant, with the member's
-- organization role. A disabled member cannot sign in, but every grant comes back if the
-- member is enabled again; an access review usually revokes them.
with grants as (
    select * from {{ ref('grants') }}
),

users as (
    select * from {{ ref('users') }}
),

workspaces as (
    select * from {{ ref('workspaces') }}
),

disabled_members_workspace_grants as (
    select
        grants.grant_id,
        grants.user_id,
        users.email,
        users.full_name,
        users.org_role_id,
        users.org_role_name,
        grants.workspace_id,
        grants.role_id,
        grants.role_name
    from grants
    inner join users
        on users.user_id = grants.user_id
    where users.is_disabled
        and grants.entitlement_type = 'workspace_role'
)

select
    disabled_members_workspace_grants.grant_id,
    disabled_members_workspace_grants.user_id,
    disabled_members_workspace_grants.email,
    disabled_members_workspace_grants.full_name,
    disabled_members_workspace_grants.org_role_id,
    disabled_members_workspace_grants.org_role_name,
    disabled_members_workspace_grants.workspace_id,
    workspaces.display_name as workspace_display_name,
    disabled_members_workspace_grants.role_id,
    disabled_members_workspace_grants.role_name,
    count(*) over (partition by disabled_members_workspace_grants.user_id)
        as member_workspace_grant_count
from disabled_members_workspace_grants
left join workspaces
    on workspaces.workspace_id = disabled_members_workspace_grants.workspace_id
