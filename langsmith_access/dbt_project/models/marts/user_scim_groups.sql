-- One row per (user, SCIM group): the identity-provider groups SCIM put each member in (listed
-- by the enriched members route only: empty when the sync read members workspace by
-- workspace, see sync_runs.skipped_sections), with what each group's name grants by
-- LangSmith's group-name rule:
--   <prefix>Organization Admin(s)                                  the Organization Admin role
--   <prefix><org role><sep><workspace><sep><workspace role>        that org role, and that
--                                                                  workspace role in that workspace
-- where <sep> is the org's scim_group_name_separator (default ':'). Names are matched against
-- the role and workspace display names of this sync; a workspace name shared by several
-- workspaces names all of them (workspace_ids).
with members as (
    select * from {{ ref('stg_langsmith__org_members') }}
),

-- Names are compared in one Unicode form (NFC): an identity provider and LangSmith may each
-- keep "É" as typed, one character or "E" + U+0301, and both name the same thing.
roles as (
    select *, nfc_normalize(display_name) as name_key from {{ ref('stg_langsmith__roles') }}
),

workspaces as (
    select * from {{ ref('workspaces') }}
),

separator as (
    select coalesce(
        (select nfc_normalize(value) from {{ ref('org_settings') }}
         where setting = 'scim_group_name_separator' and value <> ''),
        ':'
    ) as sep
),

groups as (
    select distinct
        members.ls_user_id as user_id,
        members.email,
        trim(listed.scim_group) as scim_group,
        nfc_normalize(trim(listed.scim_group)) as group_key
    from members, unnest(members.scim_groups) as listed(scim_group)
    where trim(listed.scim_group) <> ''
),

-- A workspace group: the first org role named before a separator, then the workspace, then a
-- workspace role at the end.
workspace_group_names as (
    select
        groups.user_id,
        groups.scim_group,
        org_roles.role_id as org_role_id,
        workspace_roles.role_id as workspace_role_id,
        workspace_roles.display_name as workspace_role_name,
        substr(
            groups.group_key,
            strpos(groups.group_key, org_roles.name_key || separator.sep)
                + length(org_roles.name_key || separator.sep),
            length(groups.group_key)
                - strpos(groups.group_key, org_roles.name_key || separator.sep) + 1
                - length(org_roles.name_key || separator.sep)
                - length(separator.sep || workspace_roles.name_key)
        ) as workspace_name
    from groups
    cross join separator
    inner join roles as org_roles
        on org_roles.access_scope = 'organization'
        and strpos(groups.group_key, org_roles.name_key || separator.sep) > 0
    inner join roles as workspace_roles
        on workspace_roles.access_scope = 'workspace'
        and ends_with(groups.group_key, separator.sep || workspace_roles.name_key)
    -- a workspace between the two: "LS:Organization User:Editor" names none (the org role's
    -- separator and the workspace role's are one and the same character)
    where strpos(groups.group_key, org_roles.name_key || separator.sep)
            + length(org_roles.name_key || separator.sep) + length(separator.sep || workspace_roles.name_key)
        <= length(groups.group_key)
    qualify row_number() over (
        partition by groups.user_id, groups.scim_group
        order by strpos(groups.group_key, org_roles.name_key || separator.sep),
            length(workspace_roles.name_key) desc, org_roles.role_id, workspace_roles.role_id
    ) = 1
),

workspaces_by_name as (
    select nfc_normalize(display_name) as name_key, list(workspace_id order by workspace_id) as workspace_ids
    from workspaces
    group by name_key
),

organization_admin_role as (
    select min(role_id) as role_id from roles where name = 'ORGANIZATION_ADMIN'
),

recognized as (
    select
        groups.*,
        workspace_group_names.user_id is not null as is_workspace_group,
        workspace_group_names.user_id is null
            and (ends_with(groups.group_key, 'Organization Admin')
                 or ends_with(groups.group_key, 'Organization Admins')) as is_admin_group,
        workspace_group_names.org_role_id,
        workspace_group_names.workspace_name,
        workspace_group_names.workspace_role_id,
        workspace_group_names.workspace_role_name
    from groups
    left join workspace_group_names
        on workspace_group_names.user_id = groups.user_id
        and workspace_group_names.scim_group = groups.scim_group
)

select
    recognized.user_id || ':' || recognized.scim_group as user_scim_group_id,
    recognized.user_id,
    recognized.email,
    recognized.scim_group,
    case
        when recognized.is_workspace_group then 'workspace'
        when recognized.is_admin_group then 'organization_admin'
        else 'unrecognized'
    end as group_kind,
    case
        when recognized.is_workspace_group then recognized.org_role_id
        when recognized.is_admin_group then organization_admin_role.role_id
    end as org_role_id,
    recognized.workspace_name,
    coalesce(workspaces_by_name.workspace_ids, []::varchar[]) as workspace_ids,
    recognized.workspace_role_id,
    recognized.workspace_role_name
from recognized
cross join organization_admin_role
left join workspaces_by_name
    on workspaces_by_name.name_key = recognized.workspace_name
