-- What provisioning verified in LangSmith, every observation ever recorded (the raw table is
-- appended to by provisioning runs and never replaced by a sync): a member's role in a
-- workspace, or no membership (role_id null), when the verifying read found it. `grants` uses
-- the ones made after the latest sync; `grant_history` dates provisioning's removals by them.
-- observed: 'verified' (what the request's own write made) or 'found' (what a request found
-- changed by hand and did not cause); rows from before the column are 'verified'.
select
    observation_id,
    request_id,
    run_id,
    cast(verified_at as timestamptz) as verified_at,
    trim(workspace_id) as workspace_id,
    nullif(trim(ls_user_id), '') as ls_user_id,
    nullif(trim(role_id), '') as role_id,
    nullif(trim(workspace_identity_id), '') as workspace_identity_id,
    coalesce(nullif(trim(observed), ''), 'verified') as observed
from {{ source('raw', 'provisioning_observations') }}
