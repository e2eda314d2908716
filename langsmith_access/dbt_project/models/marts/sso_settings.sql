-- SAML SSO configurations, as the latest inventory read them: one row per identity provider.
-- Just-in-time provisioning puts a new user in default_workspace_ids with
-- default_workspace_role_id at their first SSO login. Empty where the plan has no SAML SSO.
-- has_metadata_xml: the IdP metadata was pasted as XML (never stored) instead of a URL;
-- attribute_mapping_load_error: LangSmith could not load the attribute mapping (misconfigured).
with latest_inventory_sso as (
    {{ latest_sync_rows(source('raw', 'sso_settings')) }}
),

providers as (
    select
        trim(sso_provider_id) as sso_provider_id,
        nullif(trim(provider_id), '') as provider_id,
        nullif(trim(default_workspace_role_id), '') as default_workspace_role_id,
        coalesce(default_workspace_ids, []::varchar[]) as default_workspace_ids,
        metadata_url,
        coalesce(has_metadata_xml, false) as has_metadata_xml,
        coalesce(sso_groups_enabled, false) as sso_groups_enabled,
        sso_groups_claim_field,
        coalesce(sso_groups_required, false) as sso_groups_required,
        coalesce(sso_groups_role_sync_enabled, true) as sso_groups_role_sync_enabled,
        coalesce(attribute_mapping_keys, []::varchar[]) as attribute_mapping_keys,
        nullif(trim(attribute_mapping_load_error), '') as attribute_mapping_load_error,
        sync_id,
        cast(fetched_at as timestamptz) as fetched_at
    from latest_inventory_sso
),

roles as (
    select * from {{ ref('stg_langsmith__roles') }}
)

select
    providers.sso_provider_id,
    providers.provider_id,
    providers.default_workspace_ids,
    providers.default_workspace_role_id,
    roles.display_name as default_workspace_role_name,
    providers.metadata_url,
    providers.has_metadata_xml,
    providers.sso_groups_enabled,
    providers.sso_groups_claim_field,
    providers.sso_groups_required,
    providers.sso_groups_role_sync_enabled,
    providers.attribute_mapping_keys,
    providers.attribute_mapping_load_error,
    providers.sync_id,
    providers.fetched_at as synced_at
from providers
left join roles
    on roles.role_id = providers.default_workspace_role_id
