-- Service accounts of the latest inventory.
with latest_inventory_accounts as (
    {{ latest_sync_rows(source('raw', 'service_accounts')) }}
)

select
    trim(service_account_id) as service_account_id,
    name,
    nullif(trim(organization_id), '') as organization_id,
    nullif(trim(default_workspace_id), '') as default_workspace_id,
    cast(created_at as timestamptz) as created_at,
    cast(updated_at as timestamptz) as updated_at,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_inventory_accounts
