-- Intervals during which each grant held, from the grants_snapshot (dbt snapshot, check
-- strategy on grant_id, hard deletes invalidated). A grant that disappears gets its valid_to;
-- a grant that comes back later opens a new interval. valid_to is null while the grant holds.
-- "Who had access at T": valid_from <= T and (valid_to is null or valid_to > T).
-- Times are TIMESTAMPTZ: when the dbt build of the sync that saw the change ran.
with snapshotted_grants as (
    select * from {{ ref('grants_snapshot') }}
)

select
    dbt_scd_id as grant_interval_id,
    grant_id,
    entitlement_id,
    entitlement_type,
    user_id,
    email,
    workspace_id,
    role_id,
    role_name,
    is_provisionable,
    cast(dbt_valid_from as timestamptz) as valid_from,
    cast(dbt_valid_to as timestamptz) as valid_to,
    dbt_valid_to is null as is_current
from snapshotted_grants
