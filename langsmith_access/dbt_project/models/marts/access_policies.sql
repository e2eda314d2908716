-- Access policies (ABAC) as the latest inventory read them: one row per policy. A policy allows
-- or denies (effect) a permission on resources whose tags match one of its condition groups
-- (groups OR-ed, conditions in a group AND-ed), for the workspace roles it is attached to
-- (role_ids). A deny beats an allow; an allow may grant what the role does not; a resource that
-- matches no policy falls back to the roles. Empty where the plan has no ABAC (see
-- sync_runs.skipped_sections).
with latest_inventory_policies as (
    {{ latest_sync_rows(source('raw', 'access_policies')) }}
),

policies as (
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
),

roles as (
    select * from {{ ref('stg_langsmith__roles') }}
),

-- role_names[i] names role_ids[i]: kept in the API's order, a repeated id named each time.
role_names as (
    select
        policies.policy_id,
        list(coalesce(roles.display_name, role_id) order by attached.position) as role_names
    from policies, unnest(policies.role_ids) with ordinality as attached(role_id, position)
    left join roles using (role_id)
    group by policies.policy_id
)

select
    policies.policy_id,
    policies.name,
    policies.description,
    policies.effect,
    policies.role_ids,
    coalesce(role_names.role_names, []::varchar[]) as role_names,
    len(policies.role_ids) > 0 as is_attached,
    policies.condition_groups,
    cast(json_array_length(policies.condition_groups) as bigint) as condition_group_count,
    policies.created_at,
    policies.updated_at,
    policies.sync_id,
    policies.fetched_at as synced_at
from policies
left join role_names
    on role_names.policy_id = policies.policy_id
