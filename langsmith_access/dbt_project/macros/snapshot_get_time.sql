{#
    dbt-duckdb stamps snapshot intervals with `now()::timestamp`, a naive timestamp in the
    session's time zone. Keep the instant instead: `dbt_valid_from` / `dbt_valid_to` are
    TIMESTAMPTZ, like every other timestamp in this project.
#}
{% macro duckdb__snapshot_get_time() -%}
    now()
{%- endmacro %}
