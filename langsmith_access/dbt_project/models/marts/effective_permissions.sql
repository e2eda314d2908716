-- What each user may do in each shared workspace: one row per (user, workspace, permission),
-- the union of the permissions of every role effective_access gives them there, with the paths
-- (sources) that give it. Resource-level access policies (access_policies) can still narrow or
-- widen a permission for tagged resources; user-group roles are not included (see
-- effective_access).
with effective_access as (
    select * from {{ ref('effective_access') }}
),

role_permissions as (
    select * from {{ ref('role_permissions') }}
)

select
    effective_access.user_id || ':' || effective_access.workspace_id || ':'
        || role_permissions.permission as effective_permission_id,
    effective_access.user_id,
    effective_access.workspace_id,
    role_permissions.permission,
    list(distinct effective_access.source order by effective_access.source) as sources
from effective_access
inner join role_permissions
    on role_permissions.role_id = effective_access.role_id
group by effective_access.user_id, effective_access.workspace_id, role_permissions.permission
