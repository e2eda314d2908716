-- The organization's settings as the latest sync read them (the org info: one request), one row
-- per setting, values as text: the org's name (display_name), the security settings (sso_only,
-- invites_enabled, max_api_key_expiry_days, scim_group_name_separator, ...), the tier, and the
-- plan's flags as config.<flag> (config.can_use_abac, config.can_use_audit_logs, ...). History:
-- org_settings_history. (Straight from the raw table: nothing else reads it raw.)
with latest_sync_settings as (
    {{ latest_sync_rows(source('raw', 'org_settings')) }}
)

select
    trim(setting) as setting,
    value,
    sync_id,
    cast(fetched_at as timestamptz) as synced_at
from latest_sync_settings
