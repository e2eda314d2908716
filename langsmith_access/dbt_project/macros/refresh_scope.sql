{#
    Which users' rows a provisioning refresh may replace on their own (materialization_table.sql).

    `raw.refresh_scope` (user_id) lists the users of the verified changes no build has laid into
    `grants` yet. langsmith-access writes it into the refresh's scratch copy only
    (transform/history.py) and drops it before that copy is committed: a sync's build never
    sees it, and nothing else writes it.

    A model refreshes only those users' rows when all of these hold, and is rebuilt whole
    otherwise:
      - it is configured with `refresh_key` (the column naming the user): its rows for a user
        depend only on that user's rows upstream and on tables a provisioning run does not
        change (users, roles, workspaces, policies), so every other user's rows are already
        what the whole query would give;
      - its table exists and was last written whole by exactly this query: the md5 of its
        compiled SQL, macros included, is recorded with the table in `staging.table_queries`
        (another version of the project rebuilds it whole, and records its own);
      - the run is not a --full-refresh.
#}
{% macro refresh_scope_of(existing_relation, query_md5) %}
  {%- if existing_relation is none or flags.FULL_REFRESH -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set present = run_query(
      "select schema_name from duckdb_tables() where database_name = '" ~ this.database ~ "' and "
      ~ "((schema_name = 'raw' and table_name = 'refresh_scope') "
      ~ "or (schema_name = 'staging' and table_name = 'table_queries'))"
  ).columns[0].values() -%}
  {%- if "raw" not in present or "staging" not in present -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set recorded = run_query(
      "select query_md5 from " ~ table_queries_relation() ~ " where table_name = '"
      ~ this.schema ~ "." ~ this.identifier ~ "'"
  ).columns[0].values() -%}
  {%- if recorded | list != [query_md5] -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(api.Relation.create(database=this.database, schema="raw", identifier="refresh_scope")) }}
{% endmacro %}


{# Statements that record the query a whole table was written by (inside its transaction). #}
{% macro record_table_query(relation, query_md5) %}
  create schema if not exists {{ relation.database }}.staging;
  create table if not exists {{ table_queries_relation() }} (
      table_name varchar primary key, query_md5 varchar not null);
  insert or replace into {{ table_queries_relation() }}
      values ('{{ relation.schema }}.{{ relation.identifier }}', '{{ query_md5 }}')
{% endmacro %}


{% macro table_queries_relation() %}
  {{- return(api.Relation.create(database=this.database, schema="staging", identifier="table_queries")) -}}
{% endmacro %}
