-- Intervals during which each user was an active member of the org, enabled or disabled, from
-- users_snapshot (dbt snapshot, check strategy on is_disabled, hard deletes invalidated). Dated
-- by the build of the sync that saw the change. "Was this member disabled at T": see the
-- model's description.
select
    dbt_scd_id as user_interval_id,
    user_id,
    email,
    is_disabled,
    cast(dbt_valid_from as timestamptz) as valid_from,
    cast(dbt_valid_to as timestamptz) as valid_to,
    dbt_valid_to is null as is_current
from {{ ref('users_snapshot') }}
