{#
    The deny access policies each workspace role carries: one row per role that at least one
    policy with effect 'deny' is attached to (access_policies.role_ids), with the policies'
    names, sorted (a nameless policy by its id; two policies of one name both listed). The
    reports that show a role left-join it and read a missing row as an empty list.

    Takes the relation of the access_policies mart, so the model calling it names its ref().
#}
{% macro deny_policies_per_role(access_policies) -%}
    select
        role_id,
        list(coalesce(name, policy_id) order by coalesce(name, policy_id), policy_id) as deny_policy_names
    from (
        select distinct attached.role_id, policies.policy_id, policies.name
        from {{ access_policies }} as policies, unnest(policies.role_ids) as attached(role_id)
        where policies.effect = 'deny'
    )
    group by role_id
{%- endmacro %}
