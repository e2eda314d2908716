-- Users are the active (accepted) organization members. Disabled members are still members
-- and are kept, flagged; pending invites are not users (see pending_invites).
with members as (
    select * from {{ ref('stg_langsmith__org_members') }}
),

roles as (
    select * from {{ ref('stg_langsmith__roles') }}
)

select
    members.ls_user_id as user_id,
    members.org_identity_id,
    members.email,
    coalesce(members.full_name, members.display_name) as full_name,
    members.display_name,
    members.is_disabled,
    members.org_role_id,
    coalesce(roles.display_name, members.org_role_name) as org_role_name,
    members.created_at,
    members.legacy_user_id,
    members.sync_id,
    members.fetched_at as synced_at
from members
left join roles
    on roles.role_id = members.org_role_id
