-- Every tag value on a resource of a shared workspace, as the latest inventory read them: one row
-- per (resource, tag value). What access policies' conditions are evaluated against (tags are
-- per workspace; runs are judged by their project's tags). Keys, values and names are kept as
-- typed: conditions compare them exactly (or ignoring case where the operator says so). Empty
-- where the inventory skipped the section (no ABAC, or no access policy with a condition: see
-- sync_runs.skipped_sections).
with latest_inventory_tags as (
    {{ latest_sync_rows(source('raw', 'resource_tags')) }}
),

tags as (
    select
        trim(tagging_id) as tagging_id,
        trim(workspace_id) as workspace_id,
        lower(trim(resource_type)) as resource_type,
        trim(resource_id) as resource_id,
        resource_name,
        tag_key,
        tag_value,
        trim(tag_key_id) as tag_key_id,
        trim(tag_value_id) as tag_value_id,
        sync_id,
        cast(fetched_at as timestamptz) as fetched_at
    from latest_inventory_tags
),

workspaces as (
    select * from {{ ref('stg_langsmith__workspaces') }}
)

select
    tags.tagging_id,
    tags.workspace_id,
    workspaces.display_name as workspace_name,
    tags.resource_type,
    tags.resource_id,
    tags.resource_name,
    tags.tag_key,
    tags.tag_value,
    tags.tag_key_id,
    tags.tag_value_id,
    tags.sync_id,
    tags.fetched_at as synced_at
from tags
left join workspaces
    on workspaces.workspace_id = tags.workspace_id
