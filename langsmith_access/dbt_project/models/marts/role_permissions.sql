-- One row per (role, permission): the roles' permission lists, unnested.
with all_roles as (
    select * from {{ ref('stg_langsmith__roles') }}
),

permissions_per_role as (
    select
        role_id,
        trim(unnest(permissions)) as permission
    from all_roles
)

select distinct
    role_id,
    permission
from permissions_per_role
where permission is not null
    and permission <> ''
