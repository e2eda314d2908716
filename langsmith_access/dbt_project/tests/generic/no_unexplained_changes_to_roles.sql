{#
    Drift on privileged roles: fails with one row per change of the latest sync (rows whose
    sync_id is the staged sync's) that gives, takes away or replaces one of `role_names`
    (roles.name, e.g. WORKSPACE_ADMIN). Meant for report_unexplained_changes with severity
    `warn`: Dagster records a WARN check result and the sync still publishes.
#}
{% test no_unexplained_changes_to_roles(model, role_names) %}

with watched_roles as (
    select role_id, name
    from {{ ref('roles') }}
    where name in ({% for name in role_names %}'{{ name }}'{% if not loop.last %}, {% endif %}{% endfor %})
),

latest_sync as (
    select distinct sync_id from {{ ref('stg_langsmith__org_members') }}
)

select changes.*
from {{ model }} as changes
where changes.sync_id in (select sync_id from latest_sync)
    and (
        changes.role_id in (select role_id from watched_roles)
        or changes.previous_role_id in (select role_id from watched_roles)
    )

{% endtest %}
