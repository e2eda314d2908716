-- Access policies (ABAC) of the latest inventory; effect kept as sent.
with latest_inventory_policies as (
    {{ latest_sync_rows(source('raw', 'access_policies')) }}
)

select
    trim(policy_id) as policy_id,
    nullif(trim(name), '') as name,
    nullif(trim(description), '') as description,
    lower(trim(effect)) as effect,
    coalesce(role_ids, []::varchar[]) as role_ids,
    coalesce(condition_groups, '[]') as condition_groups,
    cast(created_at as timestamptz) as created_at,
    cast(updated_at as timestamptz) as updated_at,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_inventory_policies
