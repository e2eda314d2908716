{#
    Several rules on one model's rows in one test: one node for dbt to run and one asset check for
    Dagster to record, instead of one per rule (each costs ~0.1 s of a sync whatever the data).
    Fails with one row per violation: `rule` and `column_name` say which rule, `value` the
    offending value (as text), `occurrences` how many rows hold it.

    Every argument is optional:
      primary_key:        [column, ...]  each never null and never repeated (a row per null or
                                          repeated key, as the `primary_key` test)
      not_null:           [column, ...]  each filled in every row (a row per column missing in a row)
      accepted_values:    {column: [value, ...]}  each non-null value one of these (a row per
                                          other value, as dbt's `accepted_values`)
      references:         {column: {to: "ref('model')", field: column}}  each non-null value
                                          present in that model's `field` (a row per unknown
                                          value, as dbt's `relationships`)
      unique_combination: [column, ...]  the combination never repeated (a row per repeated one)
#}
{% test row_rules(model, primary_key=[], not_null=[], accepted_values={}, references={}, unique_combination=[]) %}

with checked as (
    select * from {{ model }}
),

violations as (
    {%- for column in primary_key %}
    select 'primary_key' as rule, '{{ column }}' as column_name,
        cast({{ column }} as varchar) as value, count(*) as occurrences
    from checked
    group by {{ column }}
    having {{ column }} is null or count(*) > 1
    union all
    {%- endfor %}
    {%- for column in not_null %}
    select 'not_null' as rule, '{{ column }}' as column_name, null as value, 1 as occurrences
    from checked
    where {{ column }} is null
    union all
    {%- endfor %}
    {%- for column, values in accepted_values.items() %}
    select 'accepted_values' as rule, '{{ column }}' as column_name,
        cast({{ column }} as varchar) as value, count(*) as occurrences
    from checked
    where {{ column }} not in ({% for value in values %}'{{ value }}'{% if not loop.last %}, {% endif %}{% endfor %})
    group by {{ column }}
    union all
    {%- endfor %}
    {%- for column, target in references.items() %}
    select 'references' as rule, '{{ column }}' as column_name,
        cast(checked.{{ column }} as varchar) as value, count(*) as occurrences
    from checked
    where checked.{{ column }} is not null
        and checked.{{ column }} not in (
            select referenced.{{ target.field }} from {{ target.to }} as referenced
            where referenced.{{ target.field }} is not null
        )
    group by checked.{{ column }}
    union all
    {%- endfor %}
    {%- if unique_combination %}
    {#- The combination may hold an expression with quotes (coalesce(workspace_id, '')). #}
    select 'unique_combination' as rule, '{{ unique_combination | join(", ") | replace("'", "''") }}' as column_name,
        concat_ws(', ', {{ unique_combination | join(", ") }}) as value, count(*) as occurrences
    from checked
    group by {{ unique_combination | join(", ") }}
    having count(*) > 1
    union all
    {%- endif %}
    select null as rule, null as column_name, null as value, 0 as occurrences
    where false
)

select * from violations

{% endtest %}
