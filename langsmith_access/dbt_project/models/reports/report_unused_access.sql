-- Workspace grants of members who have not logged in for `unused_days` days (dbt var, default
-- 90, LANGSMITH_ACCESS_UNUSED_DAYS) or never have, as far as the audit log tells: one row per
-- such grant, disabled members included (flagged). Only where the loaded audit log reaches back
-- that far (user_activity.activity_known_since): without an audit log (plan or key), or before
-- it covers the whole period, this table is empty rather than calling everyone unused. A
-- member who joined less than `unused_days` ago is not listed either: not logging in for a
-- period needs to have been a member for it.
-- The period is the `unused_days` up to where the loaded log ends (activity_known_until), not up
-- to now: the core sync rebuilds this report every hour, and when the inventory has not read the
-- log since (failing, or scheduled less often), a login after the log's end is unknown, so a
-- member whose last known login is only 85 days before the log's end is not called unused ten
-- days later.
{% set unused_days = var('unused_days', 90) | int %}
with grants as (
    select * from {{ ref('grants') }}
),

activity as (
    select * from {{ ref('user_activity') }}
),

users as (
    select * from {{ ref('users') }}
),

workspaces as (
    select * from {{ ref('workspaces') }}
)

select
    grants.grant_id,
    grants.user_id,
    grants.email,
    users.full_name,
    users.is_disabled,
    grants.workspace_id,
    workspaces.display_name as workspace_display_name,
    grants.role_id,
    grants.role_name,
    activity.last_login_at,
    -- Whole days elapsed (not midnights crossed: 90 days and 40 minutes is 90, not 91).
    date_diff('second', activity.last_login_at, now()) // 86400 as days_since_last_login,
    activity.activity_known_until,
    {{ unused_days }} as unused_after_days
from grants
inner join activity
    on activity.user_id = grants.user_id
inner join users
    on users.user_id = grants.user_id
left join workspaces
    on workspaces.workspace_id = grants.workspace_id
where grants.entitlement_type = 'workspace_role'
    and activity.activity_known_since <= activity.activity_known_until - to_days({{ unused_days }})
    and (activity.last_login_at is null
         or activity.last_login_at < activity.activity_known_until - to_days({{ unused_days }}))
    and (users.created_at is null
         or users.created_at <= activity.activity_known_until - to_days({{ unused_days }}))
