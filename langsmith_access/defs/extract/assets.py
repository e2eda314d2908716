"""Extract assets (group ``extract``): the raw tables, read from the LangSmith API.

Thin wiring around ``langsmith_access.sync.extract`` (get/transform/load) and
``langsmith_access.sync.guards`` (the blocking checks). Asset keys are ``raw/<table>``, which is
also how dagster-dbt names the dbt sources, so the dbt models hang off these assets directly.
"""


from typing import Literal

import dagster as dg
from pydantic import Field

from langsmith_access import names
from langsmith_access.defs.extract.keys import (
    RAW_ORG_MEMBERS,
    RAW_ORG_SETTINGS,
    RAW_PENDING_INVITES,
    RAW_ROLES,
    RAW_WORKSPACE_MEMBERSHIPS,
    RAW_WORKSPACES,
)
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, LangSmithAPI, SyncDatabase
from langsmith_access.store.schema import previous_sync, record_membership_read, workspaces_no_longer_shared
from langsmith_access.sync import extract, org_info
from langsmith_access.sync.guards import DEFAULT_MAX_SHRINK_SHARE, check_completeness, check_shrink

GROUP = "extract"


class MembersConfig(dg.Config):
    """Run config for the members extract (and its guards)."""

    # extract.MEMBERSHIP_ROUTES: a choice the Launchpad checks before the run starts.
    membership_route: Literal["auto", "enriched_members", "workspace_members"] = Field(
        default="auto",
        description="How members and their workspace roles are read: auto (one enriched listing "
        "where the key may read every workspace's members, else each workspace), enriched_members "
        "(that listing only) or workspace_members (each workspace).",
    )
    # None, not the default share: a scheduled run (no config) honours the variable, as the CLI does.
    max_shrink_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest drop in members or workspace grants since the previous sync that the "
        "run accepts, from 0 to 1; leave it out for LANGSMITH_ACCESS_MAX_SHRINK_SHARE "
        f"({DEFAULT_MAX_SHRINK_SHARE} unless set). A larger drop fails the shrink_guard check and "
        "publishes nothing.",
    )
    accept_shrink: bool = Field(
        default=False,
        description="Accept a drop beyond max_shrink_share for this run (a real offboarding).",
    )


def _api_metadata(langsmith: LangSmithAPI) -> dict:
    stats = langsmith.client.stats.snapshot()
    return {
        "api_calls_so_far": stats["calls"],
        "api_retries_so_far": stats["retries"],
        "api_wait_seconds_so_far": stats["wait_seconds"],
    }


def _preview(rows: list[dict], columns: list[str], limit: int = 10) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(
    key=RAW_ROLES,
    group_name=GROUP,
    pool=DUCKDB_WRITER_POOL,
    kinds={"python", "duckdb"},
    description="Organization and workspace role definitions, built-in and custom.",
)
def raw_roles(
    context: dg.AssetExecutionContext, langsmith: LangSmithAPI, sync_database: SyncDatabase
) -> dg.MaterializeResult:
    with langsmith.failures_in_its_orgs_terms():
        rows = extract.transform_roles(
            extract.get_roles(langsmith.client), context.run.run_id, extract.now_utc()
        )
    with sync_database.connect() as conn:
        extract.load_raw(conn, "roles", rows)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            **_api_metadata(langsmith),
            "preview": _preview(rows, ["role_id", "name", "display_name", "access_scope"]),
        }
    )


@dg.asset(
    key=RAW_WORKSPACES,
    group_name=GROUP,
    pool=DUCKDB_WRITER_POOL,
    kinds={"python", "duckdb"},
    description="Every workspace the API lists, with is_personal and is_deleted (filtered in dbt).",
)
def raw_workspaces(
    context: dg.AssetExecutionContext, langsmith: LangSmithAPI, sync_database: SyncDatabase
) -> dg.MaterializeResult:
    with langsmith.failures_in_its_orgs_terms():
        rows = extract.transform_workspaces(
            extract.get_workspaces(langsmith.client), context.run.run_id, extract.now_utc()
        )
    with sync_database.connect() as conn:
        extract.load_raw(conn, "workspaces", rows)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "shared": sum(1 for r in rows if not r["is_personal"] and not r["is_deleted"]),
            "personal": sum(1 for r in rows if r["is_personal"]),
            "deleted": sum(1 for r in rows if r["is_deleted"]),
            **_api_metadata(langsmith),
            "preview": _preview(rows, ["workspace_id", "display_name", "is_personal", "is_deleted"]),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            RAW_ORG_MEMBERS,
            group_name=GROUP,
            kinds={"python", "duckdb"},
            deps=[RAW_WORKSPACES],
            description="Active (accepted) org members, disabled ones included.",
        ),
        dg.AssetSpec(
            RAW_PENDING_INVITES,
            group_name=GROUP,
            kinds={"python", "duckdb"},
            deps=[RAW_WORKSPACES],
            description="Pending org invites: not users, never granted anything.",
        ),
        dg.AssetSpec(
            RAW_WORKSPACE_MEMBERSHIPS,
            group_name=GROUP,
            kinds={"python", "duckdb"},
            deps=[RAW_WORKSPACES],
            description="Each listed (workspace, member) pair with the member's workspace role.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec("complete_read", asset=RAW_ORG_MEMBERS, blocking=True,
                          description="Every page read; row counts match X-Pagination-Total."),
        dg.AssetCheckSpec("complete_read", asset=RAW_WORKSPACE_MEMBERSHIPS, blocking=True,
                          description="Every shared workspace's memberships read."),
        dg.AssetCheckSpec("shrink_guard", asset=RAW_ORG_MEMBERS, blocking=True,
                          description="Members did not drop beyond the allowed share."),
        dg.AssetCheckSpec("shrink_guard", asset=RAW_WORKSPACE_MEMBERSHIPS, blocking=True,
                          description="Workspace grants did not drop beyond the allowed share."),
    ],
    name=names.MEMBERS_OP,
    pool=DUCKDB_WRITER_POOL,
)
def raw_members(
    context: dg.AssetExecutionContext,
    config: MembersConfig,
    langsmith: LangSmithAPI,
    sync_database: SyncDatabase,
):
    with langsmith.failures_in_its_orgs_terms(), sync_database.connect() as conn:
        shared_workspaces = [
            row[0]
            for row in conn.execute(
                "SELECT workspace_id FROM raw.workspaces WHERE NOT is_personal AND NOT is_deleted "
                "ORDER BY workspace_id"
            ).fetchall()
        ]
        previous = previous_sync(conn)
        # Streamed: each page goes into the raw tables as it arrives, none is kept.
        read = extract.load_members(
            langsmith.client,
            conn,
            sync_id=context.run.run_id,
            shared_workspace_ids=shared_workspaces,
            route=config.membership_route,
        )
        counts = extract.count_members(conn)
        workspaces_gone = workspaces_no_longer_shared(conn)
        record_membership_read(
            conn,
            sync_id=context.run.run_id,
            membership_route=read.route,
            route_reason=read.route_reason,
            anonymity_restricted=read.anonymity_restricted,
            withheld_values_kept=read.withheld_values_kept,
        )
        previews = {
            table: extract.first_rows(conn, table, columns)
            for table, columns in (
                ("org_members", ["ls_user_id", "email", "is_disabled", "org_role_name"]),
                ("workspace_memberships", ["workspace_id", "ls_user_id", "role_name"]),
            )
        }
    context.log.info(f"Membership route {read.route}: {read.route_reason}")
    if read.members_joined_meanwhile:
        context.log.info(f"{read.members_joined_meanwhile} member(s) joined while the workspaces were read: "
                         "added from a second read of the org member listing")
    if read.anonymity_restricted and read.route == extract.ENRICHED_ROUTE:
        context.log.warning(
            "The members answer was restricted by the organization's anonymity setting: "
            f"{read.withheld_values_kept} withheld email/name values kept from the previous sync"
        )

    completeness = check_completeness(read.listings, read.workspaces_expected, read.workspaces_read)
    shrink = check_shrink(
        previous,
        users=counts.org_members,
        workspace_grants=counts.workspace_grants,
        max_shrink_share=(config.max_shrink_share if config.max_shrink_share is not None
                          else sync_database.org.settings.max_shrink_share),
        accept_shrink=config.accept_shrink,
        workspaces_gone=workspaces_gone,
    )
    common = {
        "membership_route": read.route,
        "route_reason": read.route_reason or "",
        "anonymity_restricted": read.anonymity_restricted,
        **_api_metadata(langsmith),
    }
    yield dg.MaterializeResult(
        asset_key=RAW_ORG_MEMBERS,
        metadata={
            "dagster/row_count": counts.org_members,
            "disabled": counts.disabled,
            **common,
            "preview": _preview(
                previews["org_members"], ["ls_user_id", "email", "is_disabled", "org_role_name"]
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=RAW_PENDING_INVITES,
        metadata={"dagster/row_count": counts.pending_invites, **common},
    )
    yield dg.MaterializeResult(
        asset_key=RAW_WORKSPACE_MEMBERSHIPS,
        metadata={
            "dagster/row_count": counts.workspace_memberships,
            "in_shared_workspaces": counts.workspace_grants,
            **common,
            "preview": _preview(
                previews["workspace_memberships"], ["workspace_id", "ls_user_id", "role_name"]
            ),
        },
    )
    for asset_key in (RAW_ORG_MEMBERS, RAW_WORKSPACE_MEMBERSHIPS):
        for name, result in (("complete_read", completeness), ("shrink_guard", shrink)):
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=name,
                passed=result.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                # As the UI shows it: the commands it suggests with this org's --org.
                description=sync_database.org.in_its_own_terms(result.description),
                metadata=result.metadata,
            )


@dg.asset(
    key=RAW_ORG_SETTINGS,
    group_name=GROUP,
    # After the members: whether SCIM groups were read depends on the route they took.
    deps=[RAW_ORG_MEMBERS],
    pool=DUCKDB_WRITER_POOL,
    kinds={"python", "duckdb"},
    description=(
        "The org's security settings, tier and plan flags (one request: the org info); records "
        "whether the SCIM groups (on the member rows) were read or why they were skipped."
    ),
)
def raw_org_settings(
    context: dg.AssetExecutionContext, langsmith: LangSmithAPI, sync_database: SyncDatabase
) -> dg.MaterializeResult:
    with langsmith.failures_in_its_orgs_terms(), sync_database.connect() as conn:
        read = org_info.load_org_info(
            langsmith.client, conn, sync_id=context.run.run_id, job=context.job_name,
            fetched_at=extract.now_utc(),
        )
    context.log.info(read.scim_groups.describe())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": read.settings,
            "tier": read.info.tier or "",
            "scim_groups": read.scim_groups.describe(),
            **_api_metadata(langsmith),
        }
    )


@dg.definitions
def extract_definitions() -> dg.Definitions:
    return dg.Definitions(assets=[raw_roles, raw_workspaces, raw_members, raw_org_settings])
