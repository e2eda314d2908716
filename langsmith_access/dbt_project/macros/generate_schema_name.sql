{#
    Use a model's configured schema name as is (`main`, `staging`, `snapshots`) instead of
    dbt's default `<target schema>_<custom schema>`: the analysts query `main.users`.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
