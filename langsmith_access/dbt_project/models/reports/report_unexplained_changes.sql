-- Drift: grant changes no applied provisioning request explains (DESIGN.md section 10), kept
-- from sync to sync. The changes are report_grant_changes' (derived from grant_history there,
-- not here); this model only decides which of them a request explains, and appends the others.
--
-- A change is explained by a request of provisioning_requests in status applied, for the same
-- user and workspace (organization roles are never provisioned: their changes are never
-- explained), applied between the previous sync and the build that saw the change:
--   added         a grant of the role now held
--   removed       a revoke of the role taken away
--   role_changed  a grant of the role now held, or the revoke that ended a time-bound grant
--                 and gave back the role it had replaced (parent grant's prior_role_id)
-- A request that found its change made already (already_satisfied) applied nothing and
-- explains nothing: whoever made the change did it outside langsmith-access.
-- "Applied" is when provisioning verified the request (its first observation), else when it
-- settled. A request explains only what it left in place: one followed, before the change, by
-- another request on the same membership that took effect (applied, or a grant already
-- satisfied) explains nothing (a time-bound Admin grant whose expiry removed the member does
-- not explain an Admin added by hand afterwards). "The previous sync" of a change is the latest
-- sync that finished before the change was seen (main.sync_runs; syncs and provisioning runs
-- take turns under the writer lease, so for a sync's build it is the sync before it, and for a
-- change provisioning found since the latest sync, that latest sync).
--
-- A change dated by a verification of a request's own write (observed 'verified') for that
-- user and workspace is provisioning's own record (the refresh after a provisioning run dates
-- what it verified, and grant_history dates provisioning's removals by their verification):
-- explained as well, so a change provisioning made and verified is never listed, whichever
-- build recorded it. What a request found changed by hand since what grants showed (observed
-- 'found': before its write, or instead of one when already satisfied) is no such record: that
-- change is listed, dated when provisioning found it, by the refresh after the provisioning run
-- (its sync_id is the latest sync's).
--
-- Incremental: each build appends the unexplained changes it sees that are not listed yet, so
-- the table keeps every sync's drift; rebuilding (a provisioning run's refresh, a re-run) adds
-- nothing twice. sync_id is the sync whose build saw the change.
{{ config(materialized='incremental', on_schema_change='fail') }}

with changes as (
    select * from {{ ref('report_grant_changes') }}
),

requests as (
    select * from {{ source('main', 'provisioning_requests') }}
),

observations as (
    select * from {{ ref('stg_langsmith__provisioning_observations') }}
),

sync_runs as (
    select * from {{ source('main', 'sync_runs') }}
),

-- The sync whose rows are staged: the one this build belongs to (or, in the refresh after a
-- provisioning run, the latest sync, whose changes report_grant_changes still lists).
this_sync as (
    select sync_id
    from {{ ref('stg_langsmith__org_members') }}
    order by fetched_at desc
    limit 1
),

finished_syncs as (
    select sync_runs.finished_at
    from sync_runs
    where sync_runs.status = 'succeeded'
        -- the sync's own runs (rows written before the inventory existed have no job)
        and coalesce(sync_runs.job, 'langsmith_access_sync') = 'langsmith_access_sync'
),

-- Each change's previous sync: the latest that finished before the change was seen. For what
-- a sync's build saw, the sync before it (nothing finishes between its read and its build);
-- for what a request found since the latest sync (the refresh after a provisioning run), that
-- latest sync itself: a request applied before it explains nothing found after it (an Admin
-- granted, removed by hand, then re-added by hand is drift when found, not at the next sync).
changes_with_previous_sync as (
    select
        changes.*,
        (
            select max(finished_syncs.finished_at)
            from finished_syncs
            where finished_syncs.finished_at < changes.changed_at
        ) as previous_sync_finished_at
    from changes
),

-- What each request's own write made (not what it found changed by hand: observed 'found').
verifications as (
    select * from observations where observed = 'verified'
),

first_verifications as (
    select request_id, min(verified_at) as verified_at
    from verifications
    group by request_id
),

settled_requests as (
    select
        requests.request_id,
        requests.action,
        requests.user_id,
        requests.workspace_id,
        requests.role_id,
        parents.prior_role_id as restored_role_id,
        cast(coalesce(first_verifications.verified_at, requests.updated_at) as timestamptz) as applied_at,
        requests.status,
        requests.status = 'applied' or (requests.action = 'grant' and requests.status = 'already_satisfied')
            as took_effect
    from requests
    left join first_verifications
        on first_verifications.request_id = requests.request_id
    left join requests as parents
        on parents.request_id = requests.parent_request_id
    where requests.status in ('applied', 'already_satisfied')
),

-- When the next request that took effect on the same membership was applied: from then on the
-- earlier one explains nothing.
superseded as (
    select
        settled_requests.*,
        (
            select min(later.applied_at)
            from settled_requests as later
            where later.user_id = settled_requests.user_id
                and later.workspace_id = settled_requests.workspace_id
                and later.took_effect
                and later.applied_at > settled_requests.applied_at
        ) as superseded_at
    from settled_requests
),

explained as (
    select changes.change_id
    from changes_with_previous_sync as changes
    inner join superseded as settled_requests
        on settled_requests.user_id = changes.user_id
        and settled_requests.workspace_id = changes.workspace_id
        and settled_requests.applied_at > coalesce(changes.previous_sync_finished_at, '-infinity'::timestamptz)
        and settled_requests.applied_at <= changes.changed_at
        and coalesce(settled_requests.superseded_at, 'infinity'::timestamptz) > changes.changed_at
        and settled_requests.status = 'applied'
        and (
            (settled_requests.action = 'grant'
                and changes.change_type in ('added', 'role_changed')
                and settled_requests.role_id = changes.new_role_id)
            or (settled_requests.action = 'revoke'
                and changes.change_type = 'removed'
                and settled_requests.role_id = changes.old_role_id)
            -- The expiry that gave the replaced role back (one that found the role already
            -- changed left it alone: already_satisfied, above).
            or (settled_requests.action = 'revoke'
                and changes.change_type = 'role_changed'
                and settled_requests.role_id = changes.old_role_id
                and settled_requests.restored_role_id = changes.new_role_id)
        )
    where changes.entitlement_type = 'workspace_role'

    union

    select changes.change_id
    from changes
    inner join verifications
        on verifications.ls_user_id = changes.user_id
        and verifications.workspace_id = changes.workspace_id
        and verifications.verified_at = changes.changed_at
    where changes.entitlement_type = 'workspace_role'
),

unexplained as (
    select
        changes.change_type as change,
        changes.user_id,
        changes.email,
        changes.workspace_id,
        -- the role the change is about: the one held now, or the one taken away
        coalesce(changes.new_role_id, changes.old_role_id) as role_id,
        case when changes.change_type = 'role_changed' then changes.old_role_id end as previous_role_id,
        changes.changed_at as seen_at,
        this_sync.sync_id
    from changes
    cross join this_sync
    where changes.change_id not in (select change_id from explained)
)

select
    cast(unexplained.change as varchar) as change,
    cast(unexplained.user_id as varchar) as user_id,
    cast(unexplained.email as varchar) as email,
    cast(unexplained.workspace_id as varchar) as workspace_id,
    cast(unexplained.role_id as varchar) as role_id,
    cast(unexplained.previous_role_id as varchar) as previous_role_id,
    cast(unexplained.seen_at as timestamptz) as seen_at,
    cast(unexplained.sync_id as varchar) as sync_id
from unexplained
{% if is_incremental() %}
where not exists (
    select 1
    from {{ this }} as listed
    where listed.change = unexplained.change
        and listed.user_id = unexplained.user_id
        and listed.workspace_id is not distinct from unexplained.workspace_id
        and listed.role_id is not distinct from unexplained.role_id
        and listed.seen_at = unexplained.seen_at
)
{% endif %}
