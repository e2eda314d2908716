-- Pending organization invites older than `stale_invite_days` days (dbt var, default 30),
-- measured when the sync read them: age_days is the number of whole days between the invite's
-- created_at and the sync's read (synced_at). Run with
-- `--vars '{stale_invite_days: 14}'` for another threshold.
{% set stale_invite_days = var('stale_invite_days', 30) | int %}

with invites as (
    select * from {{ ref('pending_invites') }}
),

roles as (
    select * from {{ ref('roles') }}
),

aged_invites as (
    select
        invites.*,
        cast(floor((epoch(invites.synced_at) - epoch(invites.created_at)) / 86400) as integer)
            as age_days
    from invites
)

select
    aged_invites.invite_id,
    aged_invites.email,
    aged_invites.org_role_id,
    aged_invites.org_role_name,
    aged_invites.workspace_ids,
    aged_invites.workspace_role_id,
    workspace_roles.display_name as workspace_role_name,
    aged_invites.created_at,
    aged_invites.synced_at,
    aged_invites.age_days,
    {{ stale_invite_days }} as stale_after_days
from aged_invites
left join roles as workspace_roles
    on workspace_roles.role_id = aged_invites.workspace_role_id
where aged_invites.created_at < aged_invites.synced_at - to_days({{ stale_invite_days }})
