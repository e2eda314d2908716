-- Shared workspaces in which no listed member holds the workspace Admin role
-- (WORKSPACE_ADMIN). Organization Admins still manage them through their org role, which is
-- not a listed membership; a disabled Admin still counts as a listed Admin.
with workspaces as (
    select * from {{ ref('workspaces') }}
),

grants as (
    select * from {{ ref('grants') }}
),

roles as (
    select * from {{ ref('roles') }}
),

workspace_grants as (
    select
        grants.workspace_id,
        grants.user_id,
        roles.name as role_system_name
    from grants
    inner join roles
        on roles.role_id = grants.role_id
    where grants.entitlement_type = 'workspace_role'
),

members_per_workspace as (
    select
        workspaces.workspace_id,
        count(workspace_grants.user_id) as member_count,
        count(workspace_grants.user_id) filter (
            where workspace_grants.role_system_name = 'WORKSPACE_ADMIN'
        ) as admin_count
    from workspaces
    left join workspace_grants
        on workspace_grants.workspace_id = workspaces.workspace_id
    group by workspaces.workspace_id
)

select
    workspaces.workspace_id,
    workspaces.display_name,
    workspaces.tenant_handle,
    workspaces.created_at,
    members_per_workspace.member_count
from workspaces
inner join members_per_workspace
    on members_per_workspace.workspace_id = workspaces.workspace_id
where members_per_workspace.admin_count = 0
