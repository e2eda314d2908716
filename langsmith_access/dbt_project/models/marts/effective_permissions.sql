-- What each user may do in each shared workspace: one row per (user, workspace, permission),
-- the union of the permissions of every role effective_access gives them there, with the paths
-- (sources) that give it, and whether the member is disabled (LangSmith keeps a disabled
-- member's roles; they cannot sign in while disabled). Resource-level access policies (access_policies) can still narrow or
-- widen a permission for tagged resources; user-group roles are not included (see
-- effective_access).
--
-- Built as a union rather than a GROUP BY: with 200 Organization Admins and 1,000 workspaces
-- the implicit path alone is millions of rows, and grouping them costs several times more than
-- writing them. Each key is produced once: a member holds at most one listed role per
-- workspace (grants' one_role_per_user_and_workspace test, upstream), an Organization Admin's
-- implicit role is the same Admin role everywhere, and the one overlap (an admin's permission
-- that both paths give) is marked, not repeated.
--
-- A view, not a table: ~2.85 million rows at 20,000 members (14 per membership), all of them
-- following from effective_access and role_permissions, the two tables it reads. Writing them
-- into the file was the longest step at the end of every sync's build (~1 s of its critical
-- path, ~11 MB of the file) and of every provisioning refresh, while a query that reads the view
-- computes them in ~0.1 s. The Parquet copy and `export` write it like a table.
--
-- Memory (when the view is read whole, as the Parquet copy does): DuckDB keeps a CTE that is
-- read more than once in memory in full (materialized); `not materialized` recomputes it
-- instead, which for these cheap joins costs less than holding them. And the admins' overlap is
-- an `exists` (a hash table of the ~6,000 rows of direct_of_admins), not a left join, which
-- DuckDB ran with its hash table on the ~2.2 million implicit rows.
{{ config(materialized='view') }}

with effective_access as not materialized (
    select * from {{ ref('effective_access') }}
),

role_permissions as not materialized (
    select * from {{ ref('role_permissions') }}
),

direct as not materialized (
    select effective_access.user_id, effective_access.workspace_id, role_permissions.permission,
        effective_access.is_disabled
    from effective_access
    inner join role_permissions
        on role_permissions.role_id = effective_access.role_id
    where effective_access.source = 'direct'
),

implicit as (
    select effective_access.user_id, effective_access.workspace_id, role_permissions.permission,
        effective_access.is_disabled
    from effective_access
    inner join role_permissions
        on role_permissions.role_id = effective_access.role_id
    where effective_access.source = 'organization_admin'
),

organization_admins as (
    select distinct user_id from effective_access where source = 'organization_admin'
),

-- The permissions of the implicit role(s), from the role's own rows (a few dozen), not from the
-- millions of implicit rows.
implicit_permissions as (
    select distinct permission from role_permissions
    where role_id in (select role_id from effective_access where source = 'organization_admin')
),

direct_of_admins as (
    select * from direct
    where user_id in (select user_id from organization_admins)
)

-- The implicit Admin's permissions, and whether the admin's own listed role gives them too.
select
    implicit.user_id,
    implicit.workspace_id,
    implicit.permission,
    case
        when exists (
            select 1
            from direct_of_admins
            where direct_of_admins.user_id = implicit.user_id
                and direct_of_admins.workspace_id = implicit.workspace_id
                and direct_of_admins.permission = implicit.permission
        ) then ['direct', 'organization_admin']
        else ['organization_admin']
    end as sources,
    implicit.is_disabled
from implicit

union all

-- Everyone else's listed roles.
select user_id, workspace_id, permission, ['direct'] as sources, is_disabled
from direct
where user_id not in (select user_id from organization_admins)

union all

-- An admin's listed role can give what Admin does not (a custom role's permission).
select user_id, workspace_id, permission, ['direct'] as sources, is_disabled
from direct_of_admins
where permission not in (select permission from implicit_permissions)
