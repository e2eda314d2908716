-- SAML SSO configurations of the latest inventory.
with latest_inventory_sso as (
    {{ latest_sync_rows(source('raw', 'sso_settings')) }}
)

select
    trim(sso_provider_id) as sso_provider_id,
    nullif(trim(provider_id), '') as provider_id,
    nullif(trim(default_workspace_role_id), '') as default_workspace_role_id,
    coalesce(default_workspace_ids, []::varchar[]) as default_workspace_ids,
    metadata_url,
    coalesce(sso_groups_enabled, false) as sso_groups_enabled,
    sso_groups_claim_field,
    coalesce(sso_groups_required, false) as sso_groups_required,
    coalesce(sso_groups_role_sync_enabled, true) as sso_groups_role_sync_enabled,
    coalesce(attribute_mapping_keys, []::varchar[]) as attribute_mapping_keys,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_inventory_sso
