-- Organization Admins' implicit Admin rights in workspaces where they hold no listed role: one
-- row per (Organization Admin, shared workspace) that no workspace listing shows. These rights
-- follow from the organization role alone, so a workspace's member list does not reveal them.
-- Disabled members are kept and flagged.
with effective_access as (
    select * from {{ ref('effective_access') }}
),

users as (
    select * from {{ ref('users') }}
),

listed as (
    select distinct user_id, workspace_id
    from effective_access
    where source = 'direct'
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
    implicit.role_name
from effective_access as implicit
inner join users
    on users.user_id = implicit.user_id
where implicit.source = 'organization_admin'
    and not exists (
        select 1
        from listed
        where listed.user_id = implicit.user_id
            and listed.workspace_id = implicit.workspace_id
    )
