-- Pending organization invites. Not users and never granted anything until accepted.
with invites as (
    select * from {{ ref('stg_langsmith__pending_invites') }}
),

roles as (
    select * from {{ ref('stg_langsmith__roles') }}
)

select
    invites.invite_id,
    invites.email,
    invites.org_role_id,
    coalesce(roles.display_name, invites.org_role_name) as org_role_name,
    invites.workspace_ids,
    invites.workspace_role_id,
    invites.created_at,
    invites.sync_id,
    invites.fetched_at as synced_at
from invites
left join roles
    on roles.role_id = invites.org_role_id
