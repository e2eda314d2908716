-- Who holds admin rights, and where. One row per (user, scope):
--   scope 'organization': an Organization Admin (org role ORGANIZATION_ADMIN), who also has
--                         implicit admin rights in every workspace;
--   scope 'workspace':    a listed workspace Admin (workspace role WORKSPACE_ADMIN) of one
--                         shared workspace.
-- Each row is one grant (see grants). Disabled members are kept and flagged: they cannot sign
-- in, but their rights come back if they are enabled again. deny_policy_names lists the deny
-- access policies the admin role carries (empty when none): what they deny, an admin cannot do.
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

deny_policies as (
    {{ deny_policies_per_role(ref('access_policies')) }}
),

admin_grants as (
    select
        grants.*,
        roles.display_name as role_display_name
    from grants
    inner join roles
        on roles.role_id = grants.role_id
    where (grants.entitlement_type = 'organization_role' and roles.name = 'ORGANIZATION_ADMIN')
        or (grants.entitlement_type = 'workspace_role' and roles.name = 'WORKSPACE_ADMIN')
)

select
    admin_grants.grant_id,
    admin_grants.user_id,
    users.email,
    users.full_name,
    users.is_disabled,
    case admin_grants.entitlement_type
        when 'organization_role' then 'organization'
        else 'workspace'
    end as scope,
    admin_grants.workspace_id,
    workspaces.display_name as workspace_display_name,
    admin_grants.role_id,
    admin_grants.role_display_name as role_name,
    users.org_role_name,
    coalesce(deny_policies.deny_policy_names, []::varchar[]) as deny_policy_names
from admin_grants
inner join users
    on users.user_id = admin_grants.user_id
left join workspaces
    on workspaces.workspace_id = admin_grants.workspace_id
left join deny_policies
    on deny_policies.role_id = admin_grants.role_id
