-- Service accounts, as the latest inventory read them: what org service keys act for.
with accounts as (
    select * from {{ ref('stg_langsmith__service_accounts') }}
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
