{#
    Fails with one row per value of `column_name` (a workspace id) that names a personal or a
    deleted workspace in `workspaces` (a relation with workspace_id, is_personal, is_deleted).
#}
{% test not_in_personal_or_deleted_workspace(model, column_name, workspaces) %}

select
    checked.{{ column_name }} as workspace_id,
    all_workspaces.is_personal,
    all_workspaces.is_deleted
from {{ model }} as checked
inner join {{ workspaces }} as all_workspaces
    on all_workspaces.workspace_id = checked.{{ column_name }}
where all_workspaces.is_personal
    or all_workspaces.is_deleted

{% endtest %}
