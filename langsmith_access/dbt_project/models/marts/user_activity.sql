-- When each active member last logged in and last did anything the audit log records: one row
-- per user. Both are null for a user the loaded audit log never saw, and for everyone where the
-- plan or the key has no audit log (activity_known_since is then null too: nothing is known).
-- activity_known_since: how far back the loaded audit log reaches; activity_known_until: up to
-- when it was read (the inventory's last load). The core sync rebuilds this table every hour
-- from the log as loaded, so when the inventory has not run since, nothing after
-- activity_known_until is known: a login then is missing here, not absent.
with users as (
    select * from {{ ref('users') }}
),

events as (
    select * from {{ ref('audit_events') }}
),

coverage as (
    select min(window_start) as known_since, max(window_end) as known_until
    from {{ source('raw', 'audit_windows') }}
),

activity as (
    select
        actor_user_id as user_id,
        max("at") filter (where operation = 'login' and succeeded is not false) as last_login_at,
        max("at") as last_audited_action_at,
        count(*) filter (where operation = 'login' and succeeded is not false) as logins
    from events
    where actor_user_id is not null
    group by actor_user_id
)

select
    users.user_id,
    users.email,
    users.is_disabled,
    activity.last_login_at,
    activity.last_audited_action_at,
    coalesce(activity.logins, 0) as logins_loaded,
    coverage.known_since as activity_known_since,
    coverage.known_until as activity_known_until
from users
cross join coverage
left join activity
    on activity.user_id = users.user_id
