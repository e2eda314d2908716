-- Current assignments: every user's organization role, and every listed workspace membership
-- outside personal and deleted workspaces.
--   grant_id = <entitlement_id>:<user_id>   (user_id = ls_user_id; shared with Python)
with users as (
    select * from {{ ref('users') }}
),

all_workspaces as (
    select * from {{ ref('stg_langsmith__workspaces') }}
),

memberships as (
    select * from {{ ref('stg_langsmith__workspace_memberships') }}
),

roles as (
    select * from {{ ref('roles') }}
),

-- Every active member (disabled ones too) holds exactly one organization role.
organization_role_grants as (
    select
        'organization_role:' || users.org_role_id as entitlement_id,
        'organization_role' as entitlement_type,
        users.user_id,
        users.email,
        cast(null as varchar) as workspace_id,
        users.org_role_id as role_id,
        false as is_provisionable,
        cast(null as varchar) as workspace_identity_id
    from users
),

-- Only rows the workspace member listing returned are workspace grants. Organization Admins
-- have implicit Admin rights in every workspace, but that follows from their org role (already
-- a grant above), not from a workspace assignment, so it is not repeated here.
-- Pending identities carry no ls_user_id: an invite is never a grant.
listed_memberships as (
    select *
    from memberships
    where ls_user_id is not null
),

-- Personal and deleted workspaces are not part of the org's shared access picture. A
-- membership in a workspace the workspace listing did not return at all is kept, so that the
-- relationships check on grants.workspace_id fails loudly instead of hiding it.
memberships_in_shared_workspaces as (
    select listed_memberships.*
    from listed_memberships
    left join all_workspaces
        on all_workspaces.workspace_id = listed_memberships.workspace_id
    where not coalesce(all_workspaces.is_personal, false)
        and not coalesce(all_workspaces.is_deleted, false)
),

-- Memberships of people who are not active org members are kept on purpose (email is null
-- for them): the relationships check grants.user_id -> users fails and stops the sync.
workspace_role_grants as (
    select
        'workspace_role:' || memberships_in_shared_workspaces.workspace_id
            || ':' || memberships_in_shared_workspaces.role_id as entitlement_id,
        'workspace_role' as entitlement_type,
        memberships_in_shared_workspaces.ls_user_id as user_id,
        users.email,
        memberships_in_shared_workspaces.workspace_id,
        memberships_in_shared_workspaces.role_id,
        true as is_provisionable,
        memberships_in_shared_workspaces.workspace_identity_id
    from memberships_in_shared_workspaces
    left join users
        on users.user_id = memberships_in_shared_workspaces.ls_user_id
),

all_grants as (
    select * from organization_role_grants
    union all
    select * from workspace_role_grants
)

select
    all_grants.entitlement_id || ':' || all_grants.user_id as grant_id,
    all_grants.entitlement_id,
    all_grants.entitlement_type,
    all_grants.user_id,
    all_grants.email,
    all_grants.workspace_id,
    all_grants.role_id,
    roles.display_name as role_name,
    all_grants.is_provisionable,
    all_grants.workspace_identity_id
from all_grants
left join roles
    on roles.role_id = all_grants.role_id
