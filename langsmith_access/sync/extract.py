"""Extraction: read the org from the API and shape it into raw-table rows.

Cartography's verbs: ``get_*`` talk to the API only, ``transform_*`` are pure (records in, rows
out; tested on recorded payloads), ``load_raw`` writes one raw table. Nothing here knows Dagster.

Two ways to read workspace memberships, cheapest first:

- ``enriched_members``: ``/api/v1/platform/orgs/current/members`` lists active members *and*
  pending invites with every workspace membership, 500 people a call.
- ``workspace_members`` (fallback where that route is missing, e.g. older or self-hosted
  installs, or where it says it did not list every workspace): active members and pending
  invites from their own listings, then each shared workspace's member list, fanned out with
  bounded concurrency.

Which route was used and why (``route_reason``) is recorded with the sync, and so is whether the
enriched route's answer was restricted by the org's anonymity setting
(``X-Members-Anonymity-Restricted``). What such an answer withholds is undocumented, so a
missing email or name is never read as a change: ``keep_withheld_values`` puts back the value
the previous sync knew (a member first seen in a restricted answer keeps null, and the sync
summary says how many values were kept). Keeping, not nulling: analysts and provisioning
requests find people by email, and a null would read as the email having been removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from langsmith_access.langsmith import (
    EnrichedMember,
    LangSmithClient,
    Listing,
    LoginMethod,
    NotFoundError,
    OrgMember,
    PendingInvite,
    Role,
    RouteNotAvailableError,
    Workspace,
    WorkspaceMember,
)
from langsmith_access.langsmith.client import (
    ANONYMITY_RESTRICTED_HEADER,
    LISTS_ALL_WORKSPACES_HEADER,
)
from langsmith_access.store.raw_tables import RAW_SCHEMA, column_names

ENRICHED_ROUTE = "enriched_members"
PER_WORKSPACE_ROUTE = "workspace_members"
MEMBERSHIP_ROUTES = ("auto", ENRICHED_ROUTE, PER_WORKSPACE_ROUTE)

Row = dict[str, Any]


@dataclass(frozen=True)
class ListingReport:
    """What the completeness check needs to know about one listing that was read."""

    name: str
    rows: int
    reported_total: int | None
    pages: int
    scans: int

    @property
    def matches_reported_total(self) -> bool:
        return self.reported_total is None or self.reported_total == self.rows


@dataclass
class MemberRecords:
    """What ``get_members`` read: the enriched listing, or the three per-route listings."""

    route: str
    enriched: Listing[EnrichedMember] | None = None
    org_members: Listing[OrgMember] | None = None
    pending_invites: Listing[PendingInvite] | None = None
    workspace_members: dict[str, Listing[WorkspaceMember]] = field(default_factory=dict)
    # Shared workspaces whose memberships had to be read (the per-workspace route reads each).
    workspaces_expected: int = 0
    fallback_reason: str | None = None
    # Why this route was used: for the operator, in sync_runs.route_reason and the summary.
    route_reason: str | None = None
    # The enriched route said its answer was restricted by the org's anonymity setting.
    anonymity_restricted: bool = False

    @property
    def workspaces_read(self) -> int:
        if self.route == ENRICHED_ROUTE:
            return self.workspaces_expected  # one listing covers every workspace
        return len(self.workspace_members)

    def listings(self) -> list[ListingReport]:
        if self.enriched is not None:
            return [report("enriched_members", self.enriched)]
        assert self.org_members is not None and self.pending_invites is not None
        return [
            report("org_members", self.org_members),
            report("pending_invites", self.pending_invites),
        ] + [report(f"workspace_members:{w}", listing) for w, listing in self.workspace_members.items()]


@dataclass
class MemberRows:
    """Raw rows for the three member tables."""

    org_members: list[Row]
    pending_invites: list[Row]
    workspace_memberships: list[Row]


def now_utc() -> datetime:
    return datetime.now(UTC)


def report(name: str, listing: Listing) -> ListingReport:
    return ListingReport(name, len(listing), listing.reported_total, listing.pages, listing.scans)


# ----------------------------------------------------------------------- roles


def get_roles(client: LangSmithClient) -> list[Role]:
    return client.list_roles()


def transform_roles(roles: Iterable[Role], sync_id: str, fetched_at: datetime) -> list[Row]:
    return [
        {
            "sync_id": sync_id,
            "fetched_at": fetched_at,
            "role_id": role.id,
            "name": role.name,
            "display_name": role.display_name,
            "description": role.description,
            "access_scope": role.access_scope,
            "organization_id": role.organization_id,
            "permissions": list(role.permissions),
        }
        for role in roles
    ]


# ------------------------------------------------------------------ workspaces


def get_workspaces(client: LangSmithClient) -> list[Workspace]:
    # Deleted ones too, so the filtering is visible downstream.
    return client.list_workspaces(include_deleted=True)


def transform_workspaces(
    workspaces: Iterable[Workspace], sync_id: str, fetched_at: datetime
) -> list[Row]:
    return [
        {
            "sync_id": sync_id,
            "fetched_at": fetched_at,
            "workspace_id": w.id,
            "display_name": w.display_name,
            "tenant_handle": w.tenant_handle,
            "is_personal": w.is_personal,
            "is_deleted": w.is_deleted,
            "organization_id": w.organization_id,
            "created_at": w.created_at,
        }
        for w in workspaces
    ]


# --------------------------------------------------------------------- members


def get_members(
    client: LangSmithClient, shared_workspace_ids: list[str], route: str = "auto"
) -> MemberRecords:
    """Members, pending invites and memberships by the cheapest route that gives all of them."""
    if route not in MEMBERSHIP_ROUTES:
        raise ValueError(
            f"membership route must be one of {', '.join(MEMBERSHIP_ROUTES)}, got {route!r}"
        )
    if route == PER_WORKSPACE_ROUTE:
        return _read_each_workspace(
            client, shared_workspace_ids, None, "asked for by the run (membership_route)"
        )
    anonymity_restricted = False
    try:
        enriched = client.list_enriched_members()
    except RouteNotAvailableError as exc:
        if route == ENRICHED_ROUTE:
            raise
        reason = exc.reason
    else:
        anonymity_restricted = _header_is_true(enriched, ANONYMITY_RESTRICTED_HEADER)
        lists_all = enriched.headers.get(LISTS_ALL_WORKSPACES_HEADER, "true").lower()
        if lists_all != "false":
            return MemberRecords(
                route=ENRICHED_ROUTE,
                enriched=enriched,
                workspaces_expected=len(shared_workspace_ids),
                route_reason=(
                    "asked for by the run (membership_route)"
                    if route == ENRICHED_ROUTE
                    else "the enriched members route listed every workspace in "
                    f"{enriched.pages} call(s)"
                ),
                anonymity_restricted=anonymity_restricted,
            )
        reason = (
            "the enriched members route did not list every workspace "
            f"({LISTS_ALL_WORKSPACES_HEADER}: false): the key lacks organization:manage; give it "
            "the Organization Admin role to read every workspace in one listing"
        )
        if route == ENRICHED_ROUTE:
            raise NotFoundError(reason)
    return _read_each_workspace(client, shared_workspace_ids, reason, reason, anonymity_restricted)


def _read_each_workspace(
    client: LangSmithClient,
    shared_workspace_ids: list[str],
    fallback_reason: str | None,
    route_reason: str,
    anonymity_restricted: bool = False,
) -> MemberRecords:
    return MemberRecords(
        route=PER_WORKSPACE_ROUTE,
        org_members=client.list_org_members(),
        pending_invites=client.list_pending_invites(),
        workspace_members=client.list_members_of_workspaces(shared_workspace_ids),
        workspaces_expected=len(shared_workspace_ids),
        fallback_reason=fallback_reason,
        route_reason=route_reason,
        anonymity_restricted=anonymity_restricted,
    )


def _header_is_true(listing: Listing, name: str) -> bool:
    return listing.headers.get(name, "").strip().lower() == "true"


# Member fields an anonymity-restricted answer may withhold.
WITHHOLDABLE_FIELDS = ("email", "full_name", "display_name")


def keep_withheld_values(org_member_rows: list[Row], known: dict[str, Row]) -> int:
    """Put back, in rows read from an anonymity-restricted answer, the values the previous sync
    knew (``known``: ls_user_id -> row with the withholdable fields) where the answer has none.
    Changes the rows in place; returns how many values were kept."""
    kept = 0
    for row in org_member_rows:
        previous = known.get(row["ls_user_id"])
        if previous is None:
            continue
        for name in WITHHOLDABLE_FIELDS:
            if row.get(name) is None and previous.get(name) is not None:
                row[name] = previous[name]
                kept += 1
    return kept


def transform_members(records: MemberRecords, sync_id: str, fetched_at: datetime) -> MemberRows:
    tag = {"sync_id": sync_id, "fetched_at": fetched_at}
    if records.enriched is not None:
        return _transform_enriched(records.enriched.items, tag)
    assert records.org_members is not None and records.pending_invites is not None
    return MemberRows(
        org_members=[_org_member_row(m, tag) for m in records.org_members],
        pending_invites=[_pending_invite_row(p, tag) for p in records.pending_invites],
        workspace_memberships=[
            {
                **tag,
                "workspace_id": workspace_id,
                "ls_user_id": member.ls_user_id,
                "workspace_identity_id": member.id,
                "role_id": member.role_id,
                "role_name": member.role_name,
                "source": PER_WORKSPACE_ROUTE,
            }
            for workspace_id, listing in records.workspace_members.items()
            for member in listing
        ],
    )


def _transform_enriched(people: list[EnrichedMember], tag: Row) -> MemberRows:
    members: list[Row] = []
    invites: list[Row] = []
    memberships: list[Row] = []
    for person in people:
        if person.is_pending:
            # A pending invite is not a user: whatever workspaces it names are not grants.
            invites.append(
                {
                    **tag,
                    "invite_id": person.id,
                    "email": person.email,
                    "org_role_id": person.role_id,
                    "org_role_name": person.role_name,
                    "workspace_ids": [m.workspace_id for m in person.workspace_memberships],
                    "workspace_role_id": None,
                    "created_at": person.created_at,
                }
            )
            continue
        members.append(
            {
                **tag,
                "org_identity_id": person.id,
                "ls_user_id": person.ls_user_id,
                "user_id": None,
                "email": person.email,
                "full_name": None,  # this route has only the display name
                "display_name": person.display_name,
                "is_disabled": person.is_disabled,
                "org_role_id": person.role_id,
                "org_role_name": person.role_name,
                "created_at": person.created_at,
                "login_methods": login_methods_json(person.login_methods),
                "scim_groups": [group.name for group in person.scim_groups],
            }
        )
        memberships.extend(
            {
                **tag,
                "workspace_id": m.workspace_id,
                "ls_user_id": person.ls_user_id,
                "workspace_identity_id": None,
                "role_id": m.role_id,
                "role_name": m.role_name,
                "source": ENRICHED_ROUTE,
            }
            for m in person.workspace_memberships
        )
    return MemberRows(members, invites, memberships)


def _org_member_row(member: OrgMember, tag: Row) -> Row:
    return {
        **tag,
        "org_identity_id": member.id,
        "ls_user_id": member.ls_user_id,
        "user_id": member.user_id,
        "email": member.email,
        "full_name": member.full_name,
        "display_name": member.display_name,
        "is_disabled": member.is_disabled,
        "org_role_id": member.role_id,
        "org_role_name": member.role_name,
        "created_at": member.created_at,
        "login_methods": login_methods_json(member.login_methods),
        "scim_groups": None,  # only the enriched members route lists them
    }


def login_methods_json(methods: Iterable[LoginMethod]) -> str:
    """``raw.org_members.login_methods``: the member's login methods as JSON text."""
    return json.dumps(
        [{"provider": m.provider, "provisioning_method": m.provisioning_method} for m in methods]
    )


def _pending_invite_row(invite: PendingInvite, tag: Row) -> Row:
    return {
        **tag,
        "invite_id": invite.id,
        "email": invite.email,
        "org_role_id": invite.role_id,
        "org_role_name": invite.role_name,
        "workspace_ids": list(invite.workspace_ids),
        "workspace_role_id": invite.workspace_role_id,
        "created_at": invite.created_at,
    }


# ------------------------------------------------------------------------ load

# Columns every raw row carries with the same value for the whole sync.
SYNC_TAG_COLUMNS = ("sync_id", "fetched_at")


def load_raw(conn: duckdb.DuckDBPyConnection, table: str, rows: list[Row]) -> int:
    """Replace the rows of one raw table with ``rows`` (in one transaction). Returns the count.

    The rows reach DuckDB column by column, as NumPy object arrays (which DuckDB scans
    directly: ``None`` is NULL, lists are lists, aware datetimes are TIMESTAMPTZ). A column
    holding the same object in every row (the sync's tag: sync_id, fetched_at) is sent once, as
    a parameter: converting 100,000 identical datetimes costs more than the rest of the row.
    """
    columns = column_names(table)
    quoted = ", ".join(f'"{name}"' for name in columns)
    conn.execute("BEGIN")
    try:
        conn.execute(f'DELETE FROM {RAW_SCHEMA}."{table}"')
        if rows:
            constants = {
                name: rows[0].get(name)
                for name in columns
                if name in SYNC_TAG_COLUMNS
                and all(row.get(name) is rows[0].get(name) for row in rows)
            }
            # fromiter, not np.array: a column of equally long lists must stay one-dimensional.
            frame = {
                name: np.fromiter((row.get(name) for row in rows), dtype=object, count=len(rows))
                for name in columns
                if name not in constants
            }
            selected = ", ".join("?" if name in constants else f'"{name}"' for name in columns)
            conn.register("incoming_rows", frame)
            conn.execute(
                f'INSERT INTO {RAW_SCHEMA}."{table}" ({quoted}) SELECT {selected} FROM incoming_rows',
                list(constants.values()),
            )
            conn.unregister("incoming_rows")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)
