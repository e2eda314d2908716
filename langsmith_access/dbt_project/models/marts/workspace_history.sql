-- Intervals during which each shared workspace was listed under a name, from
-- workspaces_snapshot (dbt snapshot, check strategy on the name, hard deletes invalidated).
-- Dated by the build of the sync that saw the change: a workspace deleted between two syncs is
-- closed at the second. "Which workspaces existed at T": see the model's description.
select
    dbt_scd_id as workspace_interval_id,
    workspace_id,
    display_name,
    tenant_handle,
    created_at,
    cast(dbt_valid_from as timestamptz) as valid_from,
    cast(dbt_valid_to as timestamptz) as valid_to,
    dbt_valid_to is null as is_current
from {{ ref('workspaces_snapshot') }}
