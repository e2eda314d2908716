"""The core sync's part of the rest of the access picture (DESIGN.md section 9): the org info
(one request: the org's security settings, its tier and its plan's flags) and the SCIM groups,
which come with the member rows of the enriched members route.

``get``/``transform`` like ``extract.py``; the settings go to ``raw.org_settings``, and what the
sync made of the ``scim_groups`` section (read, or skipped with why) to ``raw.section_reads``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from langsmith_access.langsmith import LangSmithClient, OrganizationInfo, plan_sections
from langsmith_access.store.raw_tables import RAW_SCHEMA
from langsmith_access.store.sections import SectionRead, record_section_reads
from langsmith_access.store.sql import scalar
from langsmith_access.sync.extract import load_raw

Row = dict

# The one section of the access picture the core sync reads (with the members).
CORE_SECTIONS = ("scim_groups",)


def get_org_info(client: LangSmithClient) -> OrganizationInfo:
    """``GET /api/v1/orgs/current/info``, typed (read once per client)."""
    return client.organization_info()


def transform_org_settings(info: OrganizationInfo, sync_id: str, fetched_at: datetime) -> list[Row]:
    """One ``raw.org_settings`` row per setting (values as text), the tier and each plan flag
    (``config.<flag>``)."""
    return [
        {"sync_id": sync_id, "fetched_at": fetched_at, "setting": setting, "value": value}
        for setting, value in info.setting_rows()
    ]


def scim_groups_read(
    info: OrganizationInfo,
    *,
    membership_route: str | None,
    route_reason: str | None,
    scim_group_rows: int,
) -> SectionRead:
    """What the sync made of the ``scim_groups`` section: read (the enriched members route gave
    ``scim_group_rows`` (member, group) pairs), or skipped because the plan has no SAML SSO
    (SCIM needs it), the members were read workspace by workspace, whose rows have no groups, or
    no read of them is on file (``membership_route`` None)."""
    plan = plan_sections(
        info, membership_route=membership_route, membership_route_reason=route_reason
    )
    if not plan.should_read("scim_groups"):
        return SectionRead.skipped("scim_groups", plan.skipped["scim_groups"])
    if membership_route is None:
        # A run reading the org info before any read of the members (a partial run on a new
        # database): nothing was read, which "read, 0 rows" would not say.
        return SectionRead.skipped(
            "scim_groups", "membership route: no read of the members is on file, and SCIM groups come with "
            "them; the next full sync reads both")
    return SectionRead.read("scim_groups", scim_group_rows)


@dataclass(frozen=True)
class OrgInfoRead:
    """What the core sync made of the org info: the settings rows it loaded, and the
    ``scim_groups`` section (read or skipped)."""

    info: OrganizationInfo
    settings: int
    scim_groups: SectionRead


def load_org_info(
    client: LangSmithClient,
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    job: str,
    fetched_at: datetime,
) -> OrgInfoRead:
    """Read the org info, replace ``raw.org_settings`` and record the ``scim_groups`` section
    (after the members were read: it depends on the route they were read by)."""
    info = get_org_info(client)
    rows = transform_org_settings(info, sync_id, fetched_at)
    # The route of the members on file (one row, replaced by each members read), whichever sync
    # read them: a run reading the org info alone (a partial run) judges the groups those
    # members' rows carry, as scim_group_rows counts them.
    rows_read = conn.execute(
        f"SELECT membership_route, route_reason FROM {RAW_SCHEMA}.membership_read"
    ).fetchall()
    membership = rows_read[0] if rows_read else None
    scim_group_rows = scalar(
        conn, f"SELECT coalesce(sum(len(scim_groups)), 0) FROM {RAW_SCHEMA}.org_members"
    )
    scim_groups = scim_groups_read(
        info,
        membership_route=membership[0] if membership else None,
        route_reason=membership[1] if membership else None,
        scim_group_rows=int(scim_group_rows),
    )
    load_raw(conn, "org_settings", rows)
    record_section_reads(conn, sync_id=sync_id, job=job, reads=[scim_groups])
    return OrgInfoRead(info, len(rows), scim_groups)
