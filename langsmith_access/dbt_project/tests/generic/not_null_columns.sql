{#
    Every listed column is filled in every row: one scan of the model instead of one `not_null`
    test per column. Fails with one row per row that misses any of them; `null_columns` names
    which.
#}
{% test not_null_columns(model, columns) %}

select
    concat_ws(', '
        {%- for column in columns %}, case when {{ column }} is null then '{{ column }}' end{% endfor %}
    ) as null_columns,
    *
from {{ model }}
where {% for column in columns %}{{ column }} is null{% if not loop.last %} or {% endif %}{% endfor %}

{% endtest %}
