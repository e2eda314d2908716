{#
    The public id formats (README "Tables", DESIGN section 4), defined here and nowhere else.
    Every model composes entitlement and grant ids through these macros; Python code reads the
    ids from the tables and never builds them.

      organization_role:<role_id>                  entitlement of an organization role
      workspace_role:<workspace_id>:<role_id>      entitlement of a workspace role in a workspace
      <entitlement_id>:<user_id>                   grant of an entitlement to a user

    Each macro takes SQL expressions (column names) and renders one SQL expression.
#}
{% macro organization_role_entitlement_id(role_id) -%}
    ('organization_role:' || {{ role_id }})
{%- endmacro %}

{% macro workspace_role_entitlement_id(workspace_id, role_id) -%}
    ('workspace_role:' || {{ workspace_id }} || ':' || {{ role_id }})
{%- endmacro %}

{% macro grant_id(entitlement_id, user_id) -%}
    ({{ entitlement_id }} || ':' || {{ user_id }})
{%- endmacro %}
