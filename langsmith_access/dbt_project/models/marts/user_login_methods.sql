-- One row per (user, login method): how each active member signs in (provider) and how that
-- identity was provisioned (scim: pushed by the identity provider's SCIM; saml:jit: created at
-- the first SAML login; bootstrap: the org's first user; null: signed up or invited). Values
-- are kept as LangSmith sends them, new ones included. The same method listed twice is one row.
with members as (
    select * from {{ ref('stg_langsmith__org_members') }}
),

methods as (
    select distinct
        members.ls_user_id as user_id,
        members.email,
        method.provider,
        method.provisioning_method
    from members, unnest(members.login_methods) as listed(method)
)

select
    user_id || ':' || coalesce(provider, '') || ':' || coalesce(provisioning_method, '')
        as login_method_id,
    user_id,
    email,
    provider,
    provisioning_method
from methods
