-- Workspace member rows of the latest sync: one per (workspace, member) as listed, with the
-- member's workspace role. The same assignment read twice (e.g. from both member routes)
-- collapses into one row, preferring the row that carries the workspace identity id. Two
-- different roles for one member of one workspace are NOT collapsed: the grant checks must
-- see them (a user holds at most one role per workspace).
with latest_sync_memberships as (
    {{ latest_sync_rows(source('raw', 'workspace_memberships')) }}
),

cleaned as (
    select
        trim(workspace_id) as workspace_id,
        nullif(trim(ls_user_id), '') as ls_user_id,
        nullif(trim(workspace_identity_id), '') as workspace_identity_id,
        trim(role_id) as role_id,
        nullif(trim(role_name), '') as role_name,
        source,
        sync_id,
        cast(fetched_at as timestamptz) as fetched_at
    from latest_sync_memberships
)

select *
from cleaned
qualify row_number() over (
    partition by workspace_id, ls_user_id, role_id
    order by workspace_identity_id nulls last, fetched_at desc, source
) = 1
