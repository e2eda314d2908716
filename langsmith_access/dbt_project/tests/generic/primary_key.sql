{#
    The column identifies rows: never null, never repeated. One query instead of dbt's
    `not_null` and `unique` (each test is a node dbt runs and an asset check Dagster records;
    halving them is a measurable part of a sync). Fails with one row per null or repeated key.
#}
{% test primary_key(model, column_name) %}

select
    {{ column_name }} as key_value,
    count(*) as occurrences
from {{ model }}
group by {{ column_name }}
having {{ column_name }} is null or count(*) > 1

{% endtest %}
