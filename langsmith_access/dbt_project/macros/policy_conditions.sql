{#
    Access policies (ABAC) taken apart, for the models that evaluate them
    (access_policy_resources) and report on them (report_access_policy_reach); langsmith-api.md,
    "Access policies".

    policy_condition_groups(access_policies): one row per (policy, condition group), groups
    numbered from 1 in the policy's order, with the group's permission, its resource type (lower
    case; the policies' docs say `queues` where the tag API says `queue`: read as `queue`) and its
    conditions as JSON. Takes the relation of the access_policies mart.

    policy_conditions(condition_groups): one row per condition of those groups, numbered from 1,
    with the tag key and value it names, its operator (trimmed, lower case), whether it also holds
    for a resource without the key (an `_if_exists` operator), its positive form (`equals`,
    `equals_ignore_case` or `matches`) and whether it is negated (`not_...`), and whether it can
    be evaluated here (attribute_name resource_tag_key, a key, a value, a known operator).
#}
{% macro policy_condition_groups(access_policies) -%}
    select
        policies.policy_id,
        policies.name as policy_name,
        policies.effect,
        policies.role_ids,
        policies.role_names,
        policies.is_attached,
        cast(listed.position as bigint) as condition_group,
        nullif(trim(json_extract_string(listed.condition_group, '$.permission')), '') as permission,
        nullif(regexp_replace(lower(trim(json_extract_string(listed.condition_group, '$.resource_type'))),
                              '^queues$', 'queue'), '') as resource_type,
        coalesce(json_extract(listed.condition_group, '$.conditions'), '[]') as conditions
    from {{ access_policies }} as policies,
        unnest(cast(json_extract(policies.condition_groups, '$[*]') as json[]))
            with ordinality as listed(condition_group, position)
{%- endmacro %}

{% macro policy_conditions(condition_groups) -%}
    select
        policy_id,
        condition_group,
        condition_number,
        attribute_name,
        tag_key,
        tag_value,
        operator,
        operator like '%\_if\_exists' escape '\' as holds_without_key,
        -- not_equals_if_exists: the positive form `equals`, negated.
        regexp_replace(regexp_replace(operator, '_if_exists$', ''), '^not_', '') as positive_operator,
        operator like 'not\_%' escape '\' as is_negated,
        coalesce(
            attribute_name = 'resource_tag_key'
            and tag_key is not null
            and tag_value is not null
            and positive_operator in ('equals', 'equals_ignore_case', 'matches'),
            false
        ) as is_evaluable
    from (
        select
            groups.policy_id,
            groups.condition_group,
            cast(listed.position as bigint) as condition_number,
            json_extract_string(listed.condition, '$.attribute_name') as attribute_name,
            json_extract_string(listed.condition, '$.attribute_key') as tag_key,
            json_extract_string(listed.condition, '$.attribute_value') as tag_value,
            lower(trim(json_extract_string(listed.condition, '$.operator'))) as operator
        from {{ condition_groups }} as groups,
            unnest(cast(json_extract(groups.conditions, '$[*]') as json[]))
                with ordinality as listed(condition, position)
    )
{%- endmacro %}
