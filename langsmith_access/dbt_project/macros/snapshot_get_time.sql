{#
    dbt-duckdb stamps snapshot intervals with `now()::timestamp`, a naive timestamp in the
    session's time zone. Keep the instant instead: `dbt_valid_from` / `dbt_valid_to` are
    TIMESTAMPTZ, like every other timestamp in this project.

    And one instant per build: the dbt invocation's start (after the sync's reads, after the
    verifications a provisioning refresh builds), not each snapshot's own transaction time, so a
    member a sync saw leave ends in user_history at the instant their grants end in
    grant_history, and a deleted workspace in workspace_history at the instant its grants do.
#}
{% macro duckdb__snapshot_get_time() -%}
    {%- if run_started_at is not none -%}
        cast('{{ run_started_at.isoformat() }}' as timestamptz)
    {%- else -%}
        now()
    {%- endif -%}
{%- endmacro %}


{#
    The check strategy, with intervals opened at the row's `verified_at` when it has one (a
    change a provisioning run verified) and otherwise at the build's instant
    (snapshot_get_time): `updated_at` in a snapshot's config is SQL text fixed when the project
    is parsed, so it cannot name the build's instant itself. Config: `verified_at_column`.
#}
{% macro snapshot_verified_check_strategy(node, snapshotted_rel, current_rel, model_config, target_exists) %}
    {%- set strategy = snapshot_check_strategy(node, snapshotted_rel, current_rel, model_config, target_exists) -%}
    {%- set updated_at = "coalesce(" ~ config.get('verified_at_column') ~ ", " ~ snapshot_get_time() ~ ")" -%}
    {%- set scd_args = api.Relation.scd_args(strategy.unique_key, updated_at) -%}
    {%- do strategy.update({"updated_at": updated_at, "scd_id": snapshot_hash_arguments(scd_args)}) -%}
    {{ return(strategy) }}
{% endmacro %}
