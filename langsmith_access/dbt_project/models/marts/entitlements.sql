-- What can be granted: each organization role, and each (shared workspace x workspace role).
-- Ids: organization_role:<role_id> and workspace_role:<workspace_id>:<role_id>, composed by
-- the macros of macros/access_ids.sql (the one place that defines them).
with roles as (
    select * from {{ ref('roles') }}
),

shared_workspaces as (
    select * from {{ ref('workspaces') }}
),

-- A user holds exactly one org role. Org roles are read-only here: this project never
-- provisions them, hence not provisionable.
organization_role_entitlements as (
    select
        {{ organization_role_entitlement_id('roles.role_id') }} as entitlement_id,
        'organization_role' as entitlement_type,
        roles.role_id,
        cast(null as varchar) as workspace_id,
        roles.display_name as role_name,
        roles.display_name as display_name,
        false as is_provisionable,
        cast(null as varchar) as workspace_display_name,
        roles.is_custom as is_custom_role
    from roles
    where roles.access_scope = 'organization'
),

-- Any workspace role can be given in any shared workspace (at most one per user there).
workspace_role_entitlements as (
    select
        {{ workspace_role_entitlement_id('shared_workspaces.workspace_id', 'roles.role_id') }}
            as entitlement_id,
        'workspace_role' as entitlement_type,
        roles.role_id,
        shared_workspaces.workspace_id,
        roles.display_name as role_name,
        shared_workspaces.display_name || ' / ' || roles.display_name as display_name,
        true as is_provisionable,
        shared_workspaces.display_name as workspace_display_name,
        roles.is_custom as is_custom_role
    from shared_workspaces
    cross join roles
    where roles.access_scope = 'workspace'
)

select * from organization_role_entitlements
union all
select * from workspace_role_entitlements
