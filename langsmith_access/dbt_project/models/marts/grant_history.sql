-- Intervals during which each grant held, from the grants_snapshot (dbt snapshot, check
-- strategy on grant_id, hard deletes invalidated). A grant that disappears gets its valid_to;
-- a grant that comes back later opens a new interval. valid_to is null while the grant holds.
-- "Who had access at T": valid_from <= T and (valid_to is null or valid_to > T).
-- Times are TIMESTAMPTZ. A change a provisioning run applied is dated when provisioning
-- verified it; any other change when the dbt build of the sync that saw it ran. A role that
-- provisioning gave and took away again within one run (a grant then a revoke of the same
-- membership, or two role changes in a row) was never seen by a build: its interval comes
-- from the two verifications alone (unbuilt_intervals); one it took away and gave back
-- within one run was not held in between (held_spans).
-- opened_by_request_id: the provisioning request whose own write opened the interval; null
-- for one a sync first saw (a change made outside langsmith-access, or an organization role).
with snapshotted_grants as (
    select * from {{ ref('grants_snapshot') }}
),

observations as (
    select * from {{ ref('stg_langsmith__provisioning_observations') }}
),

-- The snapshot keeps the grant's verified_by_request_id as the build that opened the interval
-- saw it. A request that only found the role given by hand (observed 'found') opened nothing.
opened_by_requests as (
    select
        snapshotted_grants.dbt_scd_id,
        snapshotted_grants.verified_by_request_id as request_id
    from snapshotted_grants
    where snapshotted_grants.verified_by_request_id is not null
        and exists (
            select 1
            from observations
            where observations.request_id = snapshotted_grants.verified_by_request_id
                and observations.observed = 'verified'
                and observations.ls_user_id = snapshotted_grants.user_id
                and observations.workspace_id = snapshotted_grants.workspace_id
                and observations.role_id = snapshotted_grants.role_id
        )
),

-- The snapshot opens a grant provisioning applied at its verification time already
-- (grants.verified_at), but closes every grant at the time of the build that no longer saw
-- it, and sees only what held when it ran. While an interval was open, provisioning may have
-- verified the member without its role (no membership, or another role) and, in the same run,
-- with it again (a revoke and a grant of the same role in one batch; Viewer, Editor, Viewer):
-- the role was not held in between. Each verification of the membership within the interval,
-- in order, and whether it found the interval's role.
interval_observations as (
    select
        snapshotted_grants.dbt_scd_id,
        observations.verified_at,
        observations.observation_id,
        observations.role_id is not distinct from snapshotted_grants.role_id as held,
        case when observations.observed = 'verified' then observations.request_id end as verified_by_request_id
    from snapshotted_grants
    inner join observations
        on observations.ls_user_id = snapshotted_grants.user_id
        and observations.workspace_id = snapshotted_grants.workspace_id
        and observations.verified_at > snapshotted_grants.dbt_valid_from
        and (snapshotted_grants.dbt_valid_to is null
            or observations.verified_at <= snapshotted_grants.dbt_valid_to)
    where snapshotted_grants.entitlement_type = 'workspace_role'
),

-- Where the role was lost (held = false) or held again (held = true).
interval_changes as (
    select *
    from interval_observations
    qualify held <> lag(held, 1, true) over (
        partition by dbt_scd_id order by verified_at, observation_id
    )
),

-- The interval as held: from its start and from each time it was held again, to the next time
-- it was lost, else to the snapshot's end. A loss the interval never came back from ends an
-- interval the snapshot closed (dated by that verification, not by the later build); in one
-- still open, the latest build saw the grant after it, so the interval stays open.
held_spans as (
    select
        snapshotted_grants.dbt_scd_id,
        snapshotted_grants.dbt_scd_id as grant_interval_id,
        snapshotted_grants.dbt_valid_from as held_from,
        opened_by_requests.request_id as opened_by_request_id
    from snapshotted_grants
    left join opened_by_requests
        on opened_by_requests.dbt_scd_id = snapshotted_grants.dbt_scd_id

    union all

    select
        dbt_scd_id,
        md5('held again:' || dbt_scd_id || '@' || cast(verified_at as varchar)) as grant_interval_id,
        verified_at as held_from,
        verified_by_request_id as opened_by_request_id
    from interval_changes
    where held
),

recorded_intervals as (
    select
        held_spans.grant_interval_id,
        snapshotted_grants.grant_id,
        snapshotted_grants.entitlement_id,
        snapshotted_grants.entitlement_type,
        snapshotted_grants.user_id,
        snapshotted_grants.email,
        snapshotted_grants.workspace_id,
        snapshotted_grants.role_id,
        snapshotted_grants.role_name,
        snapshotted_grants.is_provisionable,
        cast(held_spans.held_from as timestamptz) as valid_from,
        cast(coalesce(lost.lost_at, snapshotted_grants.dbt_valid_to) as timestamptz) as valid_to,
        snapshotted_grants.dbt_valid_to is null and lost.lost_at is null as is_current,
        held_spans.opened_by_request_id
    from held_spans
    inner join snapshotted_grants
        on snapshotted_grants.dbt_scd_id = held_spans.dbt_scd_id
    left join lateral (
        select min(loss.verified_at) as lost_at
        from interval_changes as loss
        where loss.dbt_scd_id = held_spans.dbt_scd_id
            and not loss.held
            and loss.verified_at > held_spans.held_from
            and (
                snapshotted_grants.dbt_valid_to is not null
                or exists (
                    select 1
                    from interval_changes as regain
                    where regain.dbt_scd_id = loss.dbt_scd_id
                        and regain.held
                        and regain.verified_at > loss.verified_at
                )
            )
    ) as lost on true
),

-- The grant each observation of a role is of.
observed_grants as (
    select
        ls_user_id,
        workspace_id,
        role_id,
        verified_at,
        case when observed = 'verified' then request_id end as verified_by_request_id,
        {{ workspace_role_entitlement_id('workspace_id', 'role_id') }} as entitlement_id,
        {{ grant_id(workspace_role_entitlement_id('workspace_id', 'role_id'), 'ls_user_id') }} as grant_id
    from observations
    where ls_user_id is not null
        and role_id is not null
),

-- Each time provisioning found a member holding a role that no recorded interval of that
-- grant holds at that moment.
unrecorded_roles as (
    select observed_grants.*
    from observed_grants
    where not exists (
        select 1
        from recorded_intervals as recorded
        where recorded.grant_id = observed_grants.grant_id
            and recorded.valid_from <= observed_grants.verified_at
            and (recorded.valid_to is null or recorded.valid_to > observed_grants.verified_at)
    )
),

-- Held until provisioning next found the member without it (another role, or no membership).
-- Observations of one role with no other between them share that end: one interval, from the
-- first. A role still held at the latest observation is the snapshot's to record (no end).
unrecorded_ends as (
    select
        unrecorded_roles.*,
        (
            select min(later.verified_at)
            from observations as later
            where later.ls_user_id = unrecorded_roles.ls_user_id
                and later.workspace_id = unrecorded_roles.workspace_id
                and later.verified_at > unrecorded_roles.verified_at
                and later.role_id is distinct from unrecorded_roles.role_id
        ) as held_to
    from unrecorded_roles
),

unbuilt_ends as (
    select
        grant_id, entitlement_id, ls_user_id, workspace_id, role_id, held_to,
        min(verified_at) as held_from,
        -- the request whose write gave the role at held_from (null: one found it given by hand)
        arg_min_null(verified_by_request_id, verified_at) as opened_by_request_id
    from unrecorded_ends
    group by grant_id, entitlement_id, ls_user_id, workspace_id, role_id, held_to
),

-- Only where no recorded interval of the membership (any role) overlaps it: a member holds one
-- role per workspace at a time. (B in A, B, A within one batch is kept: A's recorded interval
-- is split around it, held_spans.) Left out, so: a role a sync recorded later than
-- provisioning verified it (a run that died before its rebuild).
unbuilt_spans as (
    select unbuilt_ends.*
    from unbuilt_ends
    where unbuilt_ends.held_to is not null
        and not exists (
            select 1
            from recorded_intervals as recorded
            where recorded.entitlement_type = 'workspace_role'
                and recorded.user_id = unbuilt_ends.ls_user_id
                and recorded.workspace_id = unbuilt_ends.workspace_id
                and recorded.valid_from < unbuilt_ends.held_to
                and (recorded.valid_to is null or recorded.valid_to > unbuilt_ends.held_from)
        )
),

unbuilt_intervals as (
    select
        md5('verified:' || unbuilt_spans.grant_id || '@' || cast(unbuilt_spans.held_from as varchar))
            as grant_interval_id,
        unbuilt_spans.grant_id,
        unbuilt_spans.entitlement_id,
        'workspace_role' as entitlement_type,
        unbuilt_spans.ls_user_id as user_id,
        -- The names as the latest interval recorded before it had them; with none before it,
        -- the first one recorded after it (nearer in time than today's names, which a rename
        -- or an email change since may have moved).
        coalesce(
            (
                select arg_max(recorded.email, recorded.valid_from)
                from recorded_intervals as recorded
                where recorded.user_id = unbuilt_spans.ls_user_id
                    and recorded.valid_from <= unbuilt_spans.held_from
            ),
            (
                select arg_min(recorded.email, recorded.valid_from)
                from recorded_intervals as recorded
                where recorded.user_id = unbuilt_spans.ls_user_id
                    and recorded.valid_from > unbuilt_spans.held_from
            )
        ) as email,
        unbuilt_spans.workspace_id,
        unbuilt_spans.role_id,
        coalesce(
            (
                select arg_max(recorded.role_name, recorded.valid_from)
                from recorded_intervals as recorded
                where recorded.role_id = unbuilt_spans.role_id
                    and recorded.valid_from <= unbuilt_spans.held_from
            ),
            (
                select arg_min(recorded.role_name, recorded.valid_from)
                from recorded_intervals as recorded
                where recorded.role_id = unbuilt_spans.role_id
                    and recorded.valid_from > unbuilt_spans.held_from
            ),
            (select roles.display_name from {{ ref('stg_langsmith__roles') }} as roles
             where roles.role_id = unbuilt_spans.role_id)
        ) as role_name,
        true as is_provisionable,
        unbuilt_spans.held_from as valid_from,
        unbuilt_spans.held_to as valid_to,
        false as is_current,
        unbuilt_spans.opened_by_request_id
    from unbuilt_spans
)

select * from recorded_intervals
union all
select * from unbuilt_intervals
