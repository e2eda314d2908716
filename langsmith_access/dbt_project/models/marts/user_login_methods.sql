-- One row per (user, login method): how each active member signs in (provider) and how that
-- identity was provisioned (scim: pushed by the identity provider's SCIM; saml:jit: created at
-- the first SAML login; bootstrap: the org's first user; null: signed up or invited), with the
-- login's user name at its provider where it has one (a key's created_by may name its creator
-- so). Values are kept as LangSmith sends them, new ones included. The same method listed twice
-- is one row; one provider under two user names is two logins, so two rows.
with members as (
    select * from {{ ref('stg_langsmith__org_members') }}
),

methods as (
    select distinct
        members.ls_user_id as user_id,
        members.email,
        method.provider,
        method.provisioning_method,
        method.username
    from members, unnest(members.login_methods) as listed(method)
)

select
    -- The user name is appended only where there is one: a login without one keeps its id.
    user_id || ':' || coalesce(provider, '') || ':' || coalesce(provisioning_method, '')
        || coalesce(':' || username, '') as login_method_id,
    user_id,
    email,
    provider,
    provisioning_method,
    username
from methods
