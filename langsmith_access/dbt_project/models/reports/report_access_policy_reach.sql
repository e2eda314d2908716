-- Where each access policy (ABAC) reaches: one row per (policy, condition group), with what the
-- group matches among the tagged resources the latest inventory read (access_policy_resources)
-- and who it acts on. A reviewer reads a deny that matches nothing as protecting nothing (a typo
-- in a tag key or value, or tags never put on), and an allow's reach as access the roles alone
-- do not show.
--   resources_matched / workspaces_matched   tagged resources (and their workspaces) it matches;
--   matches_untagged_resources   it also matches resources without the keys it names (every
--       condition `_if_exists`, or none): LangSmith's tag API lists no untagged resource, so its
--       reach is more than resources_matched says;
--   unevaluated_conditions       conditions this project cannot evaluate (another attribute_name,
--       an operator LangSmith adds later, no key or value), as `attribute_name operator key`:
--       the group's reach is then unknown, and it is never called matches_nothing;
--   matches_nothing              none of the above: as tagged today, it applies to no resource;
--   members_affected             members (disabled ones left out) holding one of the policy's
--       roles, as listed (grants), in a workspace where it matches: any shared workspace when it
--       matches untagged resources. An Organization Admin's implicit Admin is not counted:
--       LangSmith does not document whether policies reach it.
with policies as (
    select * from {{ ref('access_policies') }}
),

condition_groups as (
    {{ policy_condition_groups('policies') }}
),

conditions as (
    {{ policy_conditions('condition_groups') }}
),

matched as (
    select * from {{ ref('access_policy_resources') }}
),

grants as (
    select * from {{ ref('grants') }}
),

users as (
    select * from {{ ref('users') }}
),

per_group_conditions as (
    select
        condition_groups.policy_id,
        condition_groups.condition_group,
        coalesce(bool_and(conditions.is_evaluable and conditions.holds_without_key), true)
            as matches_untagged_resources,
        coalesce(
            list(concat_ws(' ', coalesce(conditions.attribute_name, '(no attribute_name)'),
                           coalesce(conditions.operator, '(no operator)'), conditions.tag_key)
                 order by conditions.condition_number) filter (where not conditions.is_evaluable),
            []::varchar[]
        ) as unevaluated_conditions
    from condition_groups
    left join conditions
        on conditions.policy_id = condition_groups.policy_id
        and conditions.condition_group = condition_groups.condition_group
    group by condition_groups.policy_id, condition_groups.condition_group
),

reach as (
    select
        policy_id,
        condition_group,
        count(distinct resource_id) as resources_matched,
        count(distinct workspace_id) as workspaces_matched
    from matched
    group by policy_id, condition_group
),

-- Who holds one of each group's roles, where (equi-joins only: grants is large).
holders as (
    select distinct policy_roles.policy_id, policy_roles.condition_group, grants.user_id, grants.workspace_id
    from (select policy_id, condition_group, unnest(role_ids) as role_id from condition_groups) as policy_roles
    inner join grants
        on grants.role_id = policy_roles.role_id
        and grants.entitlement_type = 'workspace_role'
    inner join users
        on users.user_id = grants.user_id
        and not users.is_disabled
),

-- Those the group acts on: holders in a workspace where it matched, or anywhere when it
-- matches untagged resources.
acting_on as (
    select holders.*
    from holders
    semi join (select distinct policy_id, condition_group, workspace_id from matched) as matched_in
        on matched_in.policy_id = holders.policy_id
        and matched_in.condition_group = holders.condition_group
        and matched_in.workspace_id = holders.workspace_id
    union
    select holders.*
    from holders
    semi join per_group_conditions
        on per_group_conditions.policy_id = holders.policy_id
        and per_group_conditions.condition_group = holders.condition_group
        and per_group_conditions.matches_untagged_resources
),

affected as (
    select policy_id, condition_group, count(distinct user_id) as members_affected
    from acting_on
    group by policy_id, condition_group
)

select
    condition_groups.policy_id,
    condition_groups.policy_name,
    condition_groups.effect,
    condition_groups.is_attached,
    condition_groups.role_names,
    condition_groups.condition_group,
    condition_groups.permission,
    condition_groups.resource_type,
    cast(condition_groups.conditions as varchar) as conditions,
    coalesce(reach.resources_matched, 0) as resources_matched,
    coalesce(reach.workspaces_matched, 0) as workspaces_matched,
    per_group_conditions.matches_untagged_resources,
    per_group_conditions.unevaluated_conditions,
    coalesce(reach.resources_matched, 0) = 0
        and not per_group_conditions.matches_untagged_resources
        and len(per_group_conditions.unevaluated_conditions) = 0 as matches_nothing,
    coalesce(affected.members_affected, 0) as members_affected
from condition_groups
inner join per_group_conditions
    on per_group_conditions.policy_id = condition_groups.policy_id
    and per_group_conditions.condition_group = condition_groups.condition_group
left join reach
    on reach.policy_id = condition_groups.policy_id
    and reach.condition_group = condition_groups.condition_group
left join affected
    on affected.policy_id = condition_groups.policy_id
    and affected.condition_group = condition_groups.condition_group
