{#
    Which users' rows a provisioning refresh may replace on their own (materialization_table.sql).

    `raw.refresh_scope` (user_id) lists the users of the verified changes no build has laid into
    `grants` yet. langsmith-access writes it into the refresh's scratch copy only
    (transform/history.py) and drops it before that copy is committed: a sync's build never
    sees it, and nothing else writes it.

    A model refreshes only those users' rows when all of these hold, and is written whole
    otherwise:
      - it is configured with `refresh_key` (the column naming the user): its rows for a user
        follow from that user's rows upstream and from tables a provisioning run does not
        change (users, roles, workspaces, policies), so every other user's rows are already
        what the whole query gives;
      - its table was last written whole by this same project: every whole write marks the
        table (its comment) with the content hash of the project's files and of dbt's version,
        which langsmith-access writes into `raw.dbt_project` before each build
        (transform/project.py). Another version of any model or macro, upstream ones included,
        is another hash, and anything else that writes the table (an older version, dbt's own
        materialization) leaves no mark: the table is written whole;
      - the run is not a --full-refresh.
#}
{% macro refresh_scope_of(existing_relation, written_by) %}
  {%- if existing_relation is none or written_by is none or flags.FULL_REFRESH -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set found = run_query(
      "select (select comment from duckdb_tables() where database_name = '" ~ this.database
      ~ "' and schema_name = '" ~ this.schema ~ "' and table_name = '" ~ this.identifier ~ "'), "
      ~ "(select count(*) from duckdb_tables() where database_name = '" ~ this.database
      ~ "' and schema_name = 'raw' and table_name = 'refresh_scope')"
  ).rows[0] -%}
  {%- if found[0] != written_by or found[1] == 0 -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(api.Relation.create(database=this.database, schema="raw", identifier="refresh_scope")) }}
{% endmacro %}


{# The mark of a whole write by this project, or none when no project hash was given. #}
{% macro written_by_this_project() %}
  {%- set found = run_query(
      "select count(*) from duckdb_tables() where database_name = '" ~ this.database
      ~ "' and schema_name = 'raw' and table_name = 'dbt_project'"
  ).rows[0][0] -%}
  {%- if found == 0 -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set marker = api.Relation.create(database=this.database, schema="raw", identifier="dbt_project") -%}
  {%- set project = run_query("select project_hash from " ~ marker).rows[0][0] -%}
  {{ return("langsmith-access: written whole by project " ~ project) }}
{% endmacro %}
