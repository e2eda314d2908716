-- Grant changes since the previous sync: grants added, removed, or whose role changed, as
-- recorded by the latest sync (the build that produced this table). Derived from grant_history
-- alone (sync_runs is written by Python after dbt has run):
--
--   * Every interval boundary in grant_history (a valid_from, or a non-null valid_to) is the
--     snapshot time of the dbt build that saw the change, and one build stamps all of its
--     changes with the same instant; or, for a change a provisioning run applied, the time
--     provisioning verified it (after the latest sync's read, before the next sync's).
--   * This sync read the API (the fetched_at of its staged members and memberships, below)
--     after every earlier build had finished (syncs take turns under the writer lease) and
--     before its own build. So the boundaries after its last read belong to this build,
--     earlier ones to earlier builds.
--     (The latest read is used, not the first: should one raw table ever hold an older sync's
--     rows, the other tables still date this sync. Rebuilding the model without a new sync
--     gives the same rows, as the read times belong to the data, not to the dbt invocation.)
--   * The previous sync's state is the state at the latest boundary before this sync
--     (previous_sync_at). Builds that changed nothing leave no boundary, and the grants at
--     their time equal the grants at that boundary; a sync that changed nothing reports no row.
--   * The first sync has no earlier boundary: it is measured from its own build, so it lists
--     no row of its own.
--   * A provisioning run between syncs rebuilds grants and grant_history (dbt build of
--     grants+), which date its changes when provisioning verified them, after this sync's
--     read: they are listed too, with their own changed_at, until the next sync, which then
--     measures from them.
--
-- Classification, per boundary of this build, for the same user and the same scope (one
-- workspace, or the user's organization role):
--   an interval closes and another opens  -> 'role_changed' (old_* and new_* both set)
--   an interval opens only                -> 'added'        (old_* null)
--   an interval closes only               -> 'removed'      (new_* null)
-- A user holds at most one role per workspace and one organization role, so at most one
-- interval closes and one opens per (user, scope) and build.
with history as (
    select * from {{ ref('grant_history') }}
),

users as (
    select * from {{ ref('users') }}
),

roles as (
    select * from {{ ref('roles') }}
),

all_workspaces as (
    -- deleted workspaces included, for the names of grants removed with their workspace
    select * from {{ ref('stg_langsmith__workspaces') }}
),

-- The listings grants come from: a sync reads them last, and a run of some of the sync's assets
-- that reads the roles or the workspaces again, and not these, is no new read of the grants
-- (grants.sql keeps provisioning's later changes over them, and so does this report).
this_sync_reads as (
    select fetched_at from {{ ref('stg_langsmith__org_members') }}
    union all
    select fetched_at from {{ ref('stg_langsmith__workspace_memberships') }}
),

boundaries as (
    select valid_from as boundary_at from history
    union
    select valid_to as boundary_at from history where valid_to is not null
),

this_sync as (
    select
        -- Without any staged row, the latest boundary is taken as this build's.
        coalesce(
            (select max(fetched_at) from this_sync_reads),
            (select max(boundary_at) from boundaries)
        ) as read_at
),

previous_sync as (
    select
        coalesce(
            max(boundaries.boundary_at) filter (where boundaries.boundary_at < this_sync.read_at),
            -- The first sync: changes are measured from its own build (the earliest boundary
            -- after its read), so only provisioning's later changes are listed.
            min(boundaries.boundary_at) filter (where boundaries.boundary_at >= this_sync.read_at)
        ) as previous_sync_at
    from boundaries
    cross join this_sync
),

closed_intervals as (
    select history.*
    from history
    cross join previous_sync
    where history.valid_to > previous_sync.previous_sync_at
),

opened_intervals as (
    select history.*
    from history
    cross join previous_sync
    where history.valid_from > previous_sync.previous_sync_at
),

changes as (
    select
        coalesce(opened.valid_from, closed.valid_to) as changed_at,
        case
            when closed.grant_interval_id is null then 'added'
            when opened.grant_interval_id is null then 'removed'
            else 'role_changed'
        end as change_type,
        coalesce(opened.entitlement_type, closed.entitlement_type) as entitlement_type,
        coalesce(opened.user_id, closed.user_id) as user_id,
        coalesce(opened.email, closed.email) as email_then,
        coalesce(opened.workspace_id, closed.workspace_id) as workspace_id,
        closed.grant_interval_id as old_grant_interval_id,
        closed.grant_id as old_grant_id,
        closed.role_id as old_role_id,
        closed.role_name as old_role_name_then,
        opened.grant_interval_id as new_grant_interval_id,
        opened.grant_id as new_grant_id,
        opened.role_id as new_role_id,
        opened.role_name as new_role_name_then
    from closed_intervals as closed
    full outer join opened_intervals as opened
        on opened.entitlement_type = closed.entitlement_type
        and opened.user_id = closed.user_id
        and coalesce(opened.workspace_id, '') = coalesce(closed.workspace_id, '')
        and opened.valid_from = closed.valid_to
)

select
    md5(coalesce(changes.old_grant_interval_id, '') || '>' || coalesce(changes.new_grant_interval_id, ''))
        as change_id,
    changes.changed_at,
    previous_sync.previous_sync_at,
    changes.change_type,
    changes.entitlement_type,
    changes.user_id,
    coalesce(users.email, changes.email_then) as email,
    changes.workspace_id,
    all_workspaces.display_name as workspace_display_name,
    changes.old_grant_id,
    changes.old_role_id,
    coalesce(old_roles.display_name, changes.old_role_name_then) as old_role_name,
    changes.new_grant_id,
    changes.new_role_id,
    coalesce(new_roles.display_name, changes.new_role_name_then) as new_role_name
from changes
cross join previous_sync
left join users
    on users.user_id = changes.user_id
left join all_workspaces
    on all_workspaces.workspace_id = changes.workspace_id
left join roles as old_roles
    on old_roles.role_id = changes.old_role_id
left join roles as new_roles
    on new_roles.role_id = changes.new_role_id
