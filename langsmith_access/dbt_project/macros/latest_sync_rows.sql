{#
    The rows of a raw table that belong to its latest sync. Each sync replaces the raw rows,
    so this is normally every row; if rows of several syncs are ever present, only the most
    recently fetched sync counts, so two syncs are never mixed.
#}
{% macro latest_sync_rows(relation) -%}
    select *
    from {{ relation }}
    where sync_id = (
        select sync_id
        from {{ relation }}
        order by fetched_at desc nulls last, sync_id desc
        limit 1
    )
{%- endmacro %}
