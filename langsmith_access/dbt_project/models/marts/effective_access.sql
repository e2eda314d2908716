-- Who can act in which shared workspace, with which role, and through which path: one row per
-- (user, workspace, role, path). LangSmith's rule: a member's workspace permissions are the
-- union of
--   direct              their own workspace role, as the workspace's member listing shows it
--                       (exactly the workspace_role rows of grants);
--   organization_admin  the implicit Admin role of an Organization Admin, in every shared
--                       workspace, listed there or not;
--   group               the role of each of their user groups in that workspace.
-- The group path has no rows: LangSmith documents no route that lists user groups or their
-- members (langsmith-api.md, "Not settled"), and this project does not guess one. It is added
-- the day a documented listing exists; until then, access through user groups is not here.
-- SCIM groups are not user groups: what they grant shows up in the listings (direct).
-- Access policies (ABAC) allow or deny by resource tag on top of these roles: see
-- access_policies (a deny there can narrow what a row here allows, for tagged resources).

-- A provisioning refresh replaces only the rows of the users it changed (macros/refresh_scope.sql):
-- a user's rows here follow from that user's rows upstream and from tables provisioning does
-- not change.
{{ config(refresh_key='user_id') }}

with grants as (
    select * from {{ ref('grants') }}
),

users as (
    select * from {{ ref('users') }}
),

roles as (
    select * from {{ ref('roles') }}
),

workspaces as (
    select * from {{ ref('workspaces') }}
),

workspace_admin_role as (
    select min(role_id) as role_id from roles where name = 'WORKSPACE_ADMIN'
),

direct as (
    select
        grants.user_id,
        grants.workspace_id,
        grants.role_id,
        'direct' as source,
        'listed member of the workspace' as source_detail
    from grants
    where grants.entitlement_type = 'workspace_role'
),

organization_admin as (
    select
        users.user_id,
        workspaces.workspace_id,
        workspace_admin_role.role_id,
        'organization_admin' as source,
        'implicit Admin of an Organization Admin (organization role '
            || users.org_role_name || ')' as source_detail
    from users
    inner join roles as org_roles
        on org_roles.role_id = users.org_role_id
        and org_roles.name = 'ORGANIZATION_ADMIN'
    cross join workspaces
    cross join workspace_admin_role
    where workspace_admin_role.role_id is not null
),

paths as (
    select * from direct
    union all
    select * from organization_admin
)

select
    paths.user_id || ':' || paths.workspace_id || ':' || paths.role_id || ':' || paths.source
        as effective_access_id,
    paths.user_id,
    users.email,
    users.is_disabled,
    paths.workspace_id,
    workspaces.display_name as workspace_display_name,
    paths.role_id,
    roles.display_name as role_name,
    paths.source,
    paths.source_detail
from paths
inner join users
    on users.user_id = paths.user_id
left join workspaces
    on workspaces.workspace_id = paths.workspace_id
left join roles
    on roles.role_id = paths.role_id
