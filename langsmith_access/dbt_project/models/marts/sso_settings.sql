-- SAML SSO configurations, as the latest inventory read them: one row per identity provider.
-- Just-in-time provisioning puts a new user in default_workspace_ids with
-- default_workspace_role_id at their first SSO login. Empty where the plan has no SAML SSO.
with providers as (
    select * from {{ ref('stg_langsmith__sso_settings') }}
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
    providers.sso_groups_enabled,
    providers.sso_groups_claim_field,
    providers.sso_groups_required,
    providers.sso_groups_role_sync_enabled,
    providers.attribute_mapping_keys,
    providers.sync_id,
    providers.fetched_at as synced_at
from providers
left join roles
    on roles.role_id = providers.default_workspace_role_id
