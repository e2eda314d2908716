-- Intervals during which each user was an active member of the org, enabled or disabled, from
-- users_snapshot (dbt snapshot, check strategy on is_disabled and email, hard deletes
-- invalidated). Dated by the build of the sync that saw the change. "Was this member disabled
-- at T": see the model's description.
-- The snapshot also opens a row when only the email changed (so credentials knows every email
-- a former member had); such rows continue the interval before them, at the same instant and
-- with the same is_disabled, and are joined back into it here: its email is the one first seen.
with snapshotted_users as (
    select
        *,
        -- A row that starts a new interval: the user's first, or one after a gap (they left and
        -- came back) or after a change of is_disabled.
        lag(dbt_valid_to) over by_user is distinct from dbt_valid_from
        or lag(is_disabled) over by_user is distinct from is_disabled as starts_interval
    from {{ ref('users_snapshot') }}
    window by_user as (partition by user_id order by dbt_valid_from)
),

numbered as (
    select
        *,
        sum(case when starts_interval then 1 else 0 end) over (
            partition by user_id order by dbt_valid_from rows unbounded preceding
        ) as interval_number
    from snapshotted_users
)

select
    arg_min(dbt_scd_id, dbt_valid_from) as user_interval_id,
    user_id,
    arg_min_null(email, dbt_valid_from) as email,
    any_value(is_disabled) as is_disabled,
    cast(min(dbt_valid_from) as timestamptz) as valid_from,
    cast(arg_max_null(dbt_valid_to, dbt_valid_from) as timestamptz) as valid_to,
    arg_max_null(dbt_valid_to, dbt_valid_from) is null as is_current
from numbered
group by user_id, interval_number
