{#
    Every view model rebuilt in one statement, as tables are (materialization_table.sql): drop the
    old view and create the new one in the model's transaction. dbt's own `view` materialization
    creates `<model>__dbt_tmp`, looks both work names up in the catalog, renames the old view to
    a backup and the new one into place, commits and drops the backup: ~8 statements and as many
    Jinja macro calls and dbt events, for what DuckDB does atomically in one transaction. A failed
    build rolls the transaction back, keeping the old view. With a contract enforced,
    `get_create_view_as_sql` checks the columns first, as before.
#}
{% materialization view, adapter="duckdb", supported_languages=["sql"] %}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type="view") -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement("main") -%}
    {% if existing_relation is not none -%}
      drop {{ existing_relation.type }} {{ existing_relation }};
    {%- endif %}
    {{ get_create_view_as_sql(target_relation, compiled_code) }}
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({"relations": [target_relation]}) }}

{% endmaterialization %}
