-- Active (accepted) organization members of the latest sync; disabled members are kept.
with latest_sync_members as (
    {{ latest_sync_rows(source('raw', 'org_members')) }}
),

-- Whether that sync skipped the SCIM groups, and whether for the plan.
scim_groups_skip as (
    select
        count(*) > 0 as skipped,
        coalesce(bool_or(section_reads.reason like 'not in plan:%'), false) as not_in_plan
    from {{ source('raw', 'section_reads') }} as section_reads
    where section_reads.sync_id in (select sync_id from latest_sync_members)
        and section_reads.section = 'scim_groups'
        and section_reads.status = 'skipped'
)

select
    trim(ls_user_id) as ls_user_id,
    trim(org_identity_id) as org_identity_id,
    nullif(trim(user_id), '') as legacy_user_id,
    nullif(trim(email), '') as email,
    nullif(trim(full_name), '') as full_name,
    nullif(trim(display_name), '') as display_name,
    coalesce(is_disabled, false) as is_disabled,
    nullif(trim(org_role_id), '') as org_role_id,
    nullif(trim(org_role_name), '') as org_role_name,
    cast(created_at as timestamptz) as created_at,
    -- Login methods (JSON text in the raw row), parsed; provider and provisioning method kept
    -- as sent (LangSmith adds values), with the login's user name (null before it was kept).
    -- An unreadable value stops the build.
    coalesce(
        from_json(
            login_methods,
            '[{"provider": "VARCHAR", "provisioning_method": "VARCHAR", "username": "VARCHAR"}]'
        ),
        []
    ) as login_methods,
    -- Null where the route did not say (the per-workspace route lists no SCIM groups, and the
    -- sync then skips the section with a "membership route" reason): unknown. Empty where the
    -- plan has no SCIM (skipped "not in plan", the reason langsmith/sections.py words):
    -- whatever the listing still names is not SCIM provisioning any more.
    case
        when scim_groups_skip.not_in_plan then []::varchar[]
        when scim_groups_skip.skipped then null
        else scim_groups
    end as scim_groups,
    sync_id,
    cast(fetched_at as timestamptz) as fetched_at
from latest_sync_members
cross join scim_groups_skip
