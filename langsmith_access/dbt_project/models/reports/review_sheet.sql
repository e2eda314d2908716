-- The access-review sheet (`langsmith-access review export`): one row per current grant, with
-- who holds it, where, which role and since when, and the deny access policies that role
-- carries (a reviewer judging what the grant allows must know what is denied). The export keeps the workspace roles (the
-- organization roles too with --include-org-roles), orders the rows by workspace and email,
-- and adds the reviewer's empty decision, reviewer and reason columns.

-- A provisioning refresh replaces only the rows of the users it changed (macros/refresh_scope.sql):
-- a user's rows here follow from that user's rows upstream and from tables provisioning does
-- not change.
{{ config(refresh_key='user_id') }}

with grants as (
    select * from {{ ref('grants') }}
),

users as (
    select * from {{ ref('users') }}
),

workspaces as (
    select * from {{ ref('workspaces') }}
),

-- The open interval of each current grant started when it was first seen.
held_since as (
    select
        grant_id,
        min(valid_from) as held_since
    from {{ ref('grant_history') }}
    where valid_to is null
    group by grant_id
),

deny_policies as (
    {{ deny_policies_per_role(ref('access_policies')) }}
)

select
    grants.grant_id,
    coalesce(users.email, grants.email) as email,
    users.full_name,
    grants.user_id,
    users.is_disabled,
    users.org_role_name,
    workspaces.display_name as workspace_name,
    grants.workspace_id,
    grants.role_name,
    grants.role_id,
    grants.entitlement_type,
    held_since.held_since,
    coalesce(deny_policies.deny_policy_names, []::varchar[]) as deny_policy_names,
    -- A revoke of it may be undone by the identity provider: the reviewer should know.
    grants.is_scim_managed
from grants
left join users
    on users.user_id = grants.user_id
left join workspaces
    on workspaces.workspace_id = grants.workspace_id
left join held_since
    on held_since.grant_id = grants.grant_id
left join deny_policies
    on deny_policies.role_id = grants.role_id
