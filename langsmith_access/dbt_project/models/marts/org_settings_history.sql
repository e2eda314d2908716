-- Intervals during which each org setting held a value, from org_settings_snapshot (dbt
-- snapshot, check strategy on the value). valid_to is null while the value holds. "What was the
-- setting at T": valid_from <= T and (valid_to is null or valid_to > T). Dated by the build of
-- the sync that first saw the value.
select
    dbt_scd_id as setting_interval_id,
    setting,
    value,
    cast(dbt_valid_from as timestamptz) as valid_from,
    cast(dbt_valid_to as timestamptz) as valid_to,
    dbt_valid_to is null as is_current
from {{ ref('org_settings_snapshot') }}
