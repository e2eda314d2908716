-- What each access policy's condition groups match among the tagged resources the latest
-- inventory read: one row per (policy, condition group, resource). A group matches a resource of
-- its resource_type (a group without one: of any type) when every condition holds (conditions
-- AND-ed; a group without conditions matches every resource of the type). A condition on a tag
-- key (attribute_name resource_tag_key) holds, by operator:
--   equals / equals_ignore_case / matches (glob: * any text, ? one character): some value of
--     the key on the resource is attribute_value (ignoring case) / matches the pattern;
--   not_equals / not_equals_ignore_case / not_matches: the resource has the key, and none of
--     its values is / matches it;
--   each with _if_exists: as above, and also when the resource does not have the key (that these
--     variants exist says the plain operators, not_equals included, need the key).
-- A condition this cannot evaluate (another attribute_name, an operator LangSmith adds later, no
-- key or value) holds for nothing here; report_access_policy_reach names it. Resources with no
-- tag at all are not listed by LangSmith's tag API, so a group that also matches untagged
-- resources (only _if_exists conditions, or none) matches more than these rows:
-- report_access_policy_reach says which.
with tags as (
    select * from {{ ref('resource_tags') }}
),

condition_groups as (
    {{ policy_condition_groups(ref('access_policies')) }}
),

conditions as (
    {{ policy_conditions('condition_groups') }}
),

resources as (
    select distinct workspace_id, workspace_name, resource_type, resource_id, resource_name
    from tags
),

candidates as (
    select condition_groups.*, resources.workspace_id, resources.workspace_name, resources.resource_id,
        resources.resource_name, resources.resource_type as matched_resource_type
    from condition_groups
    inner join resources
        on condition_groups.resource_type is null
        or resources.resource_type = condition_groups.resource_type
),

-- For each candidate and condition (by its number: two conditions may share everything else):
-- does the resource carry the key, and does one of its values satisfy the condition's positive
-- form (equals, equals_ignore_case, matches)?
checked as (
    select
        candidates.policy_id,
        candidates.condition_group,
        candidates.workspace_id,
        candidates.resource_id,
        conditions.condition_number,
        conditions.is_negated,
        conditions.holds_without_key,
        conditions.is_evaluable,
        count(tags.tagging_id) > 0 as has_key,
        coalesce(bool_or(case conditions.positive_operator
            when 'equals' then tags.tag_value = conditions.tag_value
            when 'equals_ignore_case' then lower(tags.tag_value) = lower(conditions.tag_value)
            when 'matches' then tags.tag_value glob conditions.tag_value
            else false
        end), false) as some_value_satisfies
    from candidates
    inner join conditions
        on conditions.policy_id = candidates.policy_id
        and conditions.condition_group = candidates.condition_group
    left join tags
        on tags.workspace_id = candidates.workspace_id
        and tags.resource_id = candidates.resource_id
        and tags.tag_key = conditions.tag_key
    group by all
),

failed as (
    select distinct policy_id, condition_group, workspace_id, resource_id
    from checked
    where not (
        is_evaluable and case
            when not has_key then holds_without_key
            when is_negated then not some_value_satisfies
            else some_value_satisfies
        end
    )
)

select
    candidates.policy_id,
    candidates.policy_name,
    candidates.effect,
    candidates.role_ids,
    candidates.condition_group,
    candidates.permission,
    candidates.matched_resource_type as resource_type,
    candidates.workspace_id,
    candidates.workspace_name,
    candidates.resource_id,
    candidates.resource_name
from candidates
anti join failed
    on failed.policy_id = candidates.policy_id
    and failed.condition_group = candidates.condition_group
    and failed.workspace_id = candidates.workspace_id
    and failed.resource_id = candidates.resource_id
