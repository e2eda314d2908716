{#
    Every table model rebuilt in one statement: drop the old table and create the new one in the
    model's transaction. dbt-duckdb's own `table` materialization builds `<model>__dbt_tmp`, then
    asks the catalog about indexes and foreign keys (four queries), renames the old table to a
    backup and the new one into place, commits and drops the backup: ~10 statements and as many
    Jinja macro calls and dbt events per model, for what DuckDB does atomically in one
    transaction. The project has none of what those steps serve (no indexes, constraints,
    grants, docs persisted in the database, Python models), and every build runs on the sync's
    scratch file, never the analysts' copy: a failed build rolls the transaction back, keeping
    the old table, and publishes nothing.

    The root project's materialization takes precedence over the adapter's for this project's
    models only. With a contract enforced, `create_table_as` checks the columns first and
    creates the table with the contract's columns before inserting the rows, as before.

    Refreshing some users' rows only (models configured with `refresh_key`, see
    refresh_scope.sql): in a provisioning refresh, where only the users of the new observations
    can have other rows, such a model replaces those users' rows (delete, then insert the
    model's own query restricted to them) instead of writing the whole table again: at 20,000
    members that is a few thousand rows instead of millions. Everything else is rebuilt whole,
    and each whole write of such a model marks its table with the project that wrote it.
#}
{% materialization table, adapter="duckdb", supported_languages=["sql"] %}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type="table") -%}
  {%- set refresh_key = config.get("refresh_key") -%}
  {%- set written_by = written_by_this_project() if refresh_key else none -%}
  {%- set scope = refresh_scope_of(existing_relation, written_by) if refresh_key else none -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement("main") -%}
    {% if scope is not none -%}
      delete from {{ target_relation }} where {{ refresh_key }} in (select user_id from {{ scope }});
      insert into {{ target_relation }} by name
        select * from (
          {{ compiled_code }}
        ) as rebuilt
        where {{ refresh_key }} in (select user_id from {{ scope }});
    {%- else -%}
      {% if existing_relation is not none -%}
        drop {{ existing_relation.type }} {{ existing_relation }};
      {%- endif %}
      {{ create_table_as(False, target_relation, compiled_code) }}
      {%- if written_by is not none %};
        comment on table {{ target_relation }} is '{{ written_by }}'
      {%- endif %}
    {%- endif %}
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({"relations": [target_relation]}) }}

{% endmaterialization %}
