-- Service accounts, as the latest inventory read them: what org service keys act for.
with latest_inventory_accounts as (
    {{ latest_sync_rows(source('raw', 'service_accounts')) }}
),

accounts as (
    select
        trim(service_account_id) as service_account_id,
        name,
        nullif(trim(default_workspace_id), '') as default_workspace_id,
        cast(created_at as timestamptz) as created_at,
        cast(updated_at as timestamptz) as updated_at,
        sync_id,
        cast(fetched_at as timestamptz) as fetched_at
    from latest_inventory_accounts
),

workspaces as (
    select * from {{ ref('stg_langsmith__workspaces') }}
)

select
    accounts.service_account_id,
    accounts.name,
    accounts.default_workspace_id,
    workspaces.display_name as default_workspace_name,
    accounts.created_at,
    accounts.updated_at,
    accounts.sync_id,
    accounts.fetched_at as synced_at
from accounts
left join workspaces
    on workspaces.workspace_id = accounts.default_workspace_id
