-- Current assignments: every user's organization role, and every workspace membership outside
-- personal and deleted workspaces, as the latest sync listed it plus every change provisioning
-- verified after that sync.
--   grant_id = <entitlement_id>:<user_id>   (user_id = ls_user_id; macros/access_ids.sql)

-- A provisioning refresh replaces only the rows of the users it changed (macros/refresh_scope.sql):
-- a user's rows here follow from that user's rows upstream and from tables provisioning does
-- not change.
{{ config(refresh_key='user_id') }}

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

observations as (
    select * from {{ ref('stg_langsmith__provisioning_observations') }}
),

scim_groups as (
    select * from {{ ref('user_scim_groups') }}
),

-- Members whose SCIM groups this sync read (an empty list included). The per-workspace
-- route lists none, and a skipped section reads none: for the others it is unknown.
scim_groups_read as (
    select ls_user_id as user_id
    from {{ ref('stg_langsmith__org_members') }}
    where scim_groups is not null
),

-- When the latest sync read the workspace memberships, the only listing that can supersede what
-- provisioning verified (a run of some of the sync's assets may read roles or workspaces again
-- and not the memberships). Syncs and provisioning runs take turns under the writer lease, so
-- every observation was made either before that read or after it. With no membership listed
-- at all, the member listing's read: the same asset reads both at once and tags them alike
-- (not the roles' or workspaces' read, which a later partial run may have made after
-- provisioning verified a change). With no member either, the latest read of any listing.
latest_sync as (
    select coalesce(
        (select max(fetched_at) from memberships),
        (select max(synced_at) from users),
        (select max(read_at) from (
            select synced_at as read_at from roles
            union all
            select fetched_at from all_workspaces
        ))
    ) as read_at
),

-- What provisioning verified after the latest sync, the latest observation per membership
-- (role_id null: verified not a member). An observation made before the latest sync is
-- superseded by that sync's listing, which is newer truth.
later_observations as (
    select observations.*
    from observations
    cross join latest_sync
    where observations.verified_at > latest_sync.read_at
        and observations.ls_user_id is not null
    qualify row_number() over (
        partition by observations.ls_user_id, observations.workspace_id
        order by observations.verified_at desc, observations.observation_id desc
    ) = 1
),

-- Every active member (disabled ones too) holds exactly one organization role.
organization_role_grants as (
    select
        {{ organization_role_entitlement_id('users.org_role_id') }} as entitlement_id,
        'organization_role' as entitlement_type,
        users.user_id,
        users.email,
        cast(null as varchar) as workspace_id,
        users.org_role_id as role_id,
        false as is_provisionable,
        cast(null as varchar) as workspace_identity_id,
        cast(null as timestamptz) as verified_at,
        cast(null as varchar) as verified_by_request_id
    from users
),

-- Only rows the workspace member listing returned are workspace grants. Organization Admins
-- have implicit Admin rights in every workspace, but that follows from their org role (already
-- a grant above), not from a workspace assignment, so it is not repeated here.
-- Pending identities carry no ls_user_id: an invite is never a grant.
-- A membership provisioning verified after the sync takes the place of the sync's row.
listed_memberships as (
    select
        memberships.workspace_id,
        memberships.ls_user_id,
        memberships.role_id,
        memberships.workspace_identity_id,
        cast(null as timestamptz) as verified_at,
        cast(null as varchar) as verified_by_request_id
    from memberships
    where memberships.ls_user_id is not null
        and not exists (
            select 1
            from later_observations
            where later_observations.ls_user_id = memberships.ls_user_id
                and later_observations.workspace_id = memberships.workspace_id
        )

    union all

    select
        workspace_id,
        ls_user_id,
        role_id,
        workspace_identity_id,
        verified_at,
        request_id as verified_by_request_id
    from later_observations
    where role_id is not null
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
-- for them): the relationships check grants.user_id -> users fails and stops the build.
workspace_role_grants as (
    select
        {{ workspace_role_entitlement_id(
            'memberships_in_shared_workspaces.workspace_id',
            'memberships_in_shared_workspaces.role_id'
        ) }} as entitlement_id,
        'workspace_role' as entitlement_type,
        memberships_in_shared_workspaces.ls_user_id as user_id,
        users.email,
        memberships_in_shared_workspaces.workspace_id,
        memberships_in_shared_workspaces.role_id,
        true as is_provisionable,
        memberships_in_shared_workspaces.workspace_identity_id,
        memberships_in_shared_workspaces.verified_at,
        memberships_in_shared_workspaces.verified_by_request_id
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
    {{ grant_id('all_grants.entitlement_id', 'all_grants.user_id') }} as grant_id,
    all_grants.entitlement_id,
    all_grants.entitlement_type,
    all_grants.user_id,
    all_grants.email,
    all_grants.workspace_id,
    all_grants.role_id,
    roles.display_name as role_name,
    all_grants.is_provisionable,
    all_grants.workspace_identity_id,
    all_grants.verified_at,
    all_grants.verified_by_request_id,
    -- SCIM manages this grant: the member is SCIM-provisioned and one of their SCIM groups
    -- names this role (and workspace), by LangSmith's group-name rule (see user_scim_groups).
    -- SCIM may overwrite a change made to it by hand or through the API. Null for a
    -- SCIM-provisioned member whose groups this sync could not read: unknown, not "no".
    case
        when not coalesce(users.is_scim_managed, false) then false
        when exists (
            select 1
            from scim_groups
            where scim_groups.user_id = all_grants.user_id
                and (
                    (all_grants.entitlement_type = 'organization_role'
                        and scim_groups.org_role_id = all_grants.role_id)
                    or (all_grants.entitlement_type = 'workspace_role'
                        and scim_groups.workspace_role_id = all_grants.role_id
                        and list_contains(scim_groups.workspace_ids, all_grants.workspace_id))
                )
        ) then true
        when all_grants.user_id in (select user_id from scim_groups_read) then false
    end as is_scim_managed
from all_grants
left join roles
    on roles.role_id = all_grants.role_id
left join users
    on users.user_id = all_grants.user_id
