{#
    A user holds at most one role per workspace (LangSmith's rule): fails with one row per
    (user, workspace) that has more than one workspace_role grant.
#}
{% test one_role_per_user_and_workspace(model) %}

select
    user_id,
    workspace_id,
    count(*) as workspace_role_grants,
    string_agg(role_id, ', ' order by role_id) as role_ids
from {{ model }}
where entitlement_type = 'workspace_role'
group by user_id, workspace_id
having count(*) > 1

{% endtest %}
