-- The org's settings as the latest sync's org info gave them: security settings, the tier and
-- the plan's flags (config.<flag>), one row per setting, values as text.
with latest_sync_settings as (
    {{ latest_sync_rows(source('raw', 'org_settings')) }}
)

select
    trim(setting) as setting,
    value,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_sync_settings
