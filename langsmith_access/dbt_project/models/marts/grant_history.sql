-- Intervals during which each grant held, from the grants_snapshot (dbt snapshot, check
-- strategy on grant_id, hard deletes invalidated). A grant that disappears gets its valid_to;
-- a grant that comes back later opens a new interval. valid_to is null while the grant holds.
-- "Who had access at T": valid_from <= T and (valid_to is null or valid_to > T).
-- Times are TIMESTAMPTZ. A change a provisioning run applied is dated when provisioning
-- verified it; any other change when the dbt build of the sync that saw it ran.
with snapshotted_grants as (
    select * from {{ ref('grants_snapshot') }}
),

observations as (
    select * from {{ ref('stg_langsmith__provisioning_observations') }}
),

-- The snapshot opens a grant provisioning applied at its verification time already
-- (grants.verified_at), but closes every grant at the time of the build that no longer saw
-- it. A workspace grant provisioning removed or replaced ended when provisioning first
-- verified the member without it (no membership, or another role) while the interval was
-- open; that observation dates the end.
verified_ends as (
    select
        snapshotted_grants.dbt_scd_id,
        min(observations.verified_at) as ended_at
    from snapshotted_grants
    inner join observations
        on observations.ls_user_id = snapshotted_grants.user_id
        and observations.workspace_id = snapshotted_grants.workspace_id
        and observations.verified_at > snapshotted_grants.dbt_valid_from
        and observations.verified_at <= snapshotted_grants.dbt_valid_to
        and observations.role_id is distinct from snapshotted_grants.role_id
    where snapshotted_grants.entitlement_type = 'workspace_role'
        and snapshotted_grants.dbt_valid_to is not null
    group by snapshotted_grants.dbt_scd_id
)

select
    snapshotted_grants.dbt_scd_id as grant_interval_id,
    snapshotted_grants.grant_id,
    snapshotted_grants.entitlement_id,
    snapshotted_grants.entitlement_type,
    snapshotted_grants.user_id,
    snapshotted_grants.email,
    snapshotted_grants.workspace_id,
    snapshotted_grants.role_id,
    snapshotted_grants.role_name,
    snapshotted_grants.is_provisionable,
    cast(snapshotted_grants.dbt_valid_from as timestamptz) as valid_from,
    cast(coalesce(verified_ends.ended_at, snapshotted_grants.dbt_valid_to) as timestamptz)
        as valid_to,
    snapshotted_grants.dbt_valid_to is null as is_current
from snapshotted_grants
left join verified_ends
    on verified_ends.dbt_scd_id = snapshotted_grants.dbt_scd_id
