-- Custom roles and who holds them where: one row per grant of a custom role, and one row with
-- empty holder columns for each custom role nobody holds (a candidate for clean-up), with the
-- deny access policies each role carries (empty when none).
with roles as (
    select * from {{ ref('roles') }}
),

role_permissions as (
    select * from {{ ref('role_permissions') }}
),

grants as (
    select * from {{ ref('grants') }}
),

users as (
    select * from {{ ref('users') }}
),

workspaces as (
    select * from {{ ref('workspaces') }}
),

custom_roles as (
    select *
    from roles
    where is_custom
),

deny_policies as (
    {{ deny_policies_per_role(ref('access_policies')) }}
),

permissions_per_role as (
    select
        role_id,
        string_agg(permission, ', ' order by permission) as permissions
    from role_permissions
    group by role_id
),

custom_role_grants as (
    select
        grants.grant_id,
        grants.role_id,
        grants.user_id,
        users.email,
        users.is_disabled,
        grants.workspace_id,
        workspaces.display_name as workspace_display_name
    from grants
    inner join custom_roles
        on custom_roles.role_id = grants.role_id
    left join users
        on users.user_id = grants.user_id
    left join workspaces
        on workspaces.workspace_id = grants.workspace_id
)

select
    custom_roles.role_id,
    custom_roles.display_name as role_name,
    custom_roles.description as role_description,
    custom_roles.access_scope,
    permissions_per_role.permissions,
    count(custom_role_grants.grant_id) over (partition by custom_roles.role_id) as holder_count,
    custom_role_grants.grant_id,
    custom_role_grants.user_id,
    custom_role_grants.email,
    custom_role_grants.is_disabled,
    custom_role_grants.workspace_id,
    custom_role_grants.workspace_display_name,
    coalesce(deny_policies.deny_policy_names, []::varchar[]) as deny_policy_names
from custom_roles
left join permissions_per_role
    on permissions_per_role.role_id = custom_roles.role_id
left join deny_policies
    on deny_policies.role_id = custom_roles.role_id
left join custom_role_grants
    on custom_role_grants.role_id = custom_roles.role_id
