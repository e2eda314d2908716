-- Organization Admins' implicit Admin rights in workspaces where they hold no listed role: one
-- row per (Organization Admin, shared workspace) that no workspace listing shows. These rights
-- follow from the organization role alone, so a workspace's member list does not reveal them.
-- Disabled members are kept and flagged. deny_policy_names lists the deny access policies the
-- Admin role carries (empty when none): what they deny, the implicit Admin cannot do either.
--
-- Memory: `not materialized` keeps DuckDB from holding all of effective_access (~300,000 rows at
-- 20,000 members, read twice here) in memory, and an anti join (a hash table of the listed
-- pairs) replaces `not exists`, which DuckDB ran by holding every implicit row with all its
-- columns: ~230 MB -> ~50 MB above DuckDB's baseline at 20,000 members, and faster.

-- A provisioning refresh replaces only the rows of the users it changed (macros/refresh_scope.sql):
-- a user's rows here follow from that user's rows upstream and from tables provisioning does
-- not change.
{{ config(refresh_key='user_id') }}

with effective_access as not materialized (
    select * from {{ ref('effective_access') }}
),

users as not materialized (
    select * from {{ ref('users') }}
),

listed as not materialized (
    select distinct user_id, workspace_id
    from effective_access
    where source = 'direct'
),

deny_policies as (
    {{ deny_policies_per_role(ref('access_policies')) }}
)

select
    implicit.user_id || ':' || implicit.workspace_id as implicit_admin_id,
    implicit.user_id,
    implicit.email,
    users.full_name,
    implicit.is_disabled,
    users.org_role_id,
    users.org_role_name,
    implicit.workspace_id,
    implicit.workspace_display_name,
    implicit.role_id,
    implicit.role_name,
    coalesce(deny_policies.deny_policy_names, []::varchar[]) as deny_policy_names
from effective_access as implicit
inner join users
    on users.user_id = implicit.user_id
left join deny_policies
    on deny_policies.role_id = implicit.role_id
anti join listed
    on listed.user_id = implicit.user_id
    and listed.workspace_id = implicit.workspace_id
where implicit.source = 'organization_admin'
