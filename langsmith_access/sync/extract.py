"""Extraction: read the org from the API and shape it into raw-table rows.

Cartography's verbs: ``get_*`` talk to the API only, ``transform_*`` are pure (records in, rows
out; tested on recorded payloads), ``load_*`` write raw tables. Nothing here knows Dagster.

Roles and workspaces are a few thousand rows at most: read whole, then loaded. Members are read
as a stream (``load_members``): each page of a member listing is transformed and appended to
the raw tables as it arrives, so a sync holds a few pages of members, never the whole org (a
50,000-member org is ~240,000 workspace memberships). The rules of a whole read still hold: a
listing that moved while being read is read again and replaces what its earlier scan wrote;
rows are de-duplicated by id; the whole load is one transaction in the sync's scratch database,
which is published only when every step and check of the sync passed.

Two ways to read workspace memberships, cheapest first:

- ``enriched_members``: ``/api/v1/platform/orgs/current/members`` lists active members *and*
  pending invites with every workspace membership, 500 people a call.
- ``workspace_members`` (fallback where that route is missing, e.g. older or self-hosted
  installs, or where it says it did not list every workspace): pending invites and active
  members from their own listings (in that order), then each shared workspace's member list, fanned out with
  bounded concurrency.

Which route was used and why (``route_reason``) is recorded with the sync, and so is whether the
enriched route's answer was restricted by the org's anonymity setting
(``X-Members-Anonymity-Restricted``). What such an answer withholds is undocumented, so a
missing email or name is never read as a change: ``keep_withheld_values`` puts back the value
the previous sync knew, in the org member listing too when the sync reads each workspace after
a restricted enriched page (a member first seen in a restricted answer keeps null, and the sync
summary says how many values were kept). Keeping, not nulling: analysts and provisioning
requests find people by email, and a null would read as the email having been removed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from langsmith_access.langsmith import (
    EnrichedMember,
    LangSmithClient,
    LangSmithError,
    ListingRead,
    ListingsDisagreeError,
    LoginMethod,
    NotFoundError,
    OrgMember,
    PendingInvite,
    PermissionDeniedError,
    Role,
    RouteNotAvailableError,
    Workspace,
    WorkspaceMember,
)
from langsmith_access.langsmith.client import (
    ANONYMITY_RESTRICTED_HEADER,
    LISTS_ALL_WORKSPACES_HEADER,
)
from langsmith_access.store.raw_rows import BATCH_ROWS, RawTableAppender, insert_rows
from langsmith_access.store.raw_tables import RAW_SCHEMA, column_names
from langsmith_access.store.schema import known_member_values
from langsmith_access.store.sql import one_row

ENRICHED_ROUTE = "enriched_members"
PER_WORKSPACE_ROUTE = "workspace_members"
MEMBERSHIP_ROUTES = ("auto", ENRICHED_ROUTE, PER_WORKSPACE_ROUTE)
MEMBER_TABLES = ("org_members", "pending_invites", "workspace_memberships")

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
class MemberRead:
    """How ``load_members`` read the members, invites and memberships (not the rows: those are
    in the raw tables)."""

    route: str
    listings: list[ListingReport]
    # Shared workspaces whose memberships had to be read, and how many were.
    workspaces_expected: int
    workspaces_read: int
    fallback_reason: str | None = None
    # Why this route was used: for the operator, in sync_runs.route_reason and the summary.
    route_reason: str | None = None
    # The enriched route said its answer was restricted by the org's anonymity setting.
    anonymity_restricted: bool = False
    # Withheld emails and names put back from the previous sync (see keep_withheld_values).
    withheld_values_kept: int = 0
    # People who joined while the workspaces were read, added from a second read of the org
    # member listing (see add_members_who_joined_meanwhile).
    members_joined_meanwhile: int = 0


@dataclass
class MemberRows:
    """Raw rows for the three member tables."""

    org_members: list[Row]
    pending_invites: list[Row]
    workspace_memberships: list[Row]


@dataclass(frozen=True)
class MemberCounts:
    """What the member tables hold after a load: for the shrink guard and the asset metadata."""

    org_members: int
    disabled: int
    pending_invites: int
    workspace_memberships: int
    workspace_grants: int  # memberships of shared workspaces (neither personal nor deleted)


def now_utc() -> datetime:
    return datetime.now(UTC)


def report(name: str, read: ListingRead) -> ListingReport:
    return ListingReport(name, read.rows, read.reported_total, read.pages, read.scans)


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
            "is_restricted": role.is_restricted,
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


# LangSmith documents X-Members-List-All-Workspaces as "true if caller has organization:manage".
ORG_MANAGE = "organization:manage"


class NotEveryWorkspaceListed(Exception):
    """A page of the enriched members route said it did not list every workspace's memberships
    (``X-Members-List-All-Workspaces: false``), or did not say, for a key without
    organization:manage: stop reading it, it cannot be trusted."""

    def __init__(self, anonymity_restricted: bool, *, header_missing: bool = False,
                 permissions_known: bool = True):
        if not header_missing:
            why = (f"the enriched members route did not list every workspace "
                   f"({LISTS_ALL_WORKSPACES_HEADER}: false): the key lacks {ORG_MANAGE}")
        else:
            key = (f"the key lacks {ORG_MANAGE}" if permissions_known
                   else f"the org info does not say whether the key has {ORG_MANAGE}")
            why = (f"the enriched members route did not say whether it lists every workspace "
                   f"(no {LISTS_ALL_WORKSPACES_HEADER} header), and {key}")
        super().__init__(
            f"{why}; give it the Organization Admin role to read every workspace in one listing"
        )
        self.why = why
        self.anonymity_restricted = anonymity_restricted


def require_every_workspace_listed(headers: Mapping[str, str], client: LangSmithClient) -> None:
    """Raise ``NotEveryWorkspaceListed`` unless a page of the enriched members route lists every
    workspace: its header says so, or (an install that sends no header) the key has
    organization:manage according to the org info (read once per client)."""
    said = (headers.get(LISTS_ALL_WORKSPACES_HEADER) or "").strip().lower()
    restricted = answers_anonymity_restricted(headers)
    if said == "true":
        return
    if said == "false":
        raise NotEveryWorkspaceListed(restricted)
    # Absent, or a value the spec does not use ("", "1", "yes"): as good as not said.
    permissions = client.organization_info().permissions
    if permissions is None or ORG_MANAGE not in permissions:
        raise NotEveryWorkspaceListed(restricted, header_missing=True,
                                      permissions_known=permissions is not None)


def answers_anonymity_restricted(headers: Mapping[str, str]) -> bool:
    """Whether a members page says its answers are anonymity-restricted (emails and names may
    be withheld)."""
    return _header_is_true(headers, ANONYMITY_RESTRICTED_HEADER)


def enriched_route_fallback(error: Exception) -> str | None:
    """The sync's rule for leaving the enriched members route: why it reads each workspace
    instead after ``error`` (the route is missing here, answers something that is not JSON, or
    lists only some workspaces), or None when ``error`` fails the sync. The connection doctor
    judges the route by this rule too, so its verdict and the sync's cannot drift apart."""
    if isinstance(error, RouteNotAvailableError):
        return error.reason
    if isinstance(error, NotEveryWorkspaceListed):
        return str(error)
    return None


def load_members(
    client: LangSmithClient,
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    shared_workspace_ids: list[str],
    route: str = "auto",
    batch_rows: int = BATCH_ROWS,
) -> MemberRead:
    """Read members, pending invites and memberships by the cheapest route that gives all of
    them, and replace the raw member tables with them, page by page as they arrive.

    One transaction: if anything fails, the tables are as they were (and the sync's scratch
    database, where they live, is discarded anyway).
    """
    if route not in MEMBERSHIP_ROUTES:
        raise ValueError(
            f"membership route must be one of {', '.join(MEMBERSHIP_ROUTES)}, got {route!r}"
        )
    tables = RawMemberTables(conn, sync_id, now_utc(), batch_rows=batch_rows)
    conn.execute("BEGIN")
    try:
        tables.clear()
        read = get_members(client, tables, shared_workspace_ids, route)
        tables.flush()
        refuse_what_no_listing_has(client, conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return read


def get_members(
    client: LangSmithClient, tables: RawMemberTables, shared_workspace_ids: list[str], route: str
) -> MemberRead:
    """Stream the members into ``tables`` by the route asked for (``auto``: the cheapest)."""
    if route == PER_WORKSPACE_ROUTE:
        return _read_each_workspace(
            client, tables, shared_workspace_ids, None, "asked for by the run (membership_route)"
        )
    anonymity_restricted = False
    try:
        enriched = client.stream_enriched_members(tables.enriched_sink(client))
    except (LangSmithError, NotEveryWorkspaceListed) as error:
        reason = enriched_route_fallback(error)
        if reason is None:
            raise  # not a reason to read each workspace: the sync fails with it
        if route == ENRICHED_ROUTE:  # asked for this route: no fallback
            if isinstance(error, NotEveryWorkspaceListed):
                raise NotFoundError(str(error)) from None
            raise
        if isinstance(error, NotEveryWorkspaceListed):
            # The reading stopped at the first page that said so (the first page, unless the
            # key's role changed while it was read), not after the whole listing.
            anonymity_restricted = error.anonymity_restricted
    else:
        return MemberRead(
            route=ENRICHED_ROUTE,
            listings=[report("enriched_members", enriched)],
            workspaces_expected=len(shared_workspace_ids),
            workspaces_read=len(shared_workspace_ids),  # one listing covers every workspace
            route_reason=(
                "asked for by the run (membership_route)"
                if route == ENRICHED_ROUTE
                else "the enriched members route listed every workspace in "
                f"{enriched.pages} call(s)"
            ),
            anonymity_restricted=tables.anonymity_restricted,
            withheld_values_kept=tables.withheld_values_kept,
        )
    tables.clear()  # whatever the enriched route delivered before it stopped
    return _read_each_workspace(
        client, tables, shared_workspace_ids, reason, reason, anonymity_restricted
    )


def _read_each_workspace(
    client: LangSmithClient,
    tables: RawMemberTables,
    shared_workspace_ids: list[str],
    fallback_reason: str | None,
    route_reason: str,
    anonymity_restricted: bool = False,
) -> MemberRead:
    # Invites before members: an invite accepted between the two reads then shows as both (the
    # next sync drops the invite), never as neither (a member the sync would lose).
    pending_invites = client.stream_pending_invites(tables.pending_invites_sink())
    org_members = client.stream_org_members(tables.org_members_sink(anonymity_restricted=anonymity_restricted))
    try:
        workspaces = client.stream_members_of_workspaces(
            shared_workspace_ids, tables.workspace_members_sink
        )
    except (NotFoundError, PermissionDeniedError) as error:
        refuse_workspaces_deleted_meanwhile(client, shared_workspace_ids, error)
        raise
    joined = add_members_who_joined_meanwhile(client, tables)
    return MemberRead(
        route=PER_WORKSPACE_ROUTE,
        listings=[report("org_members", org_members), report("pending_invites", pending_invites)]
        + [report(f"workspace_members:{w}", read) for w, read in workspaces.items()],
        workspaces_expected=len(shared_workspace_ids),
        workspaces_read=len(workspaces),
        fallback_reason=fallback_reason,
        route_reason=route_reason,
        anonymity_restricted=anonymity_restricted or tables.anonymity_restricted,
        withheld_values_kept=tables.withheld_values_kept,
        members_joined_meanwhile=joined,
    )


def refuse_workspaces_deleted_meanwhile(client: LangSmithClient, shared_workspace_ids: list[str],
                                        error: LangSmithError) -> None:
    """A workspace's member listing answered 403 or 404: LangSmith answers a deleted workspace
    so, as it does a key without the permission. Read the workspace listing again and, when
    workspaces listed as shared before the members are deleted now (or gone), raise
    ``ListingsDisagreeError`` naming them: nothing to fix but syncing again, where the key's
    permission is otherwise the fix. Returns when none is; the caller raises ``error``."""
    still_shared = {w.id for w in get_workspaces(client) if not w.is_deleted and not w.is_personal}
    gone = [workspace_id for workspace_id in shared_workspace_ids if workspace_id not in still_shared]
    if gone:
        raise ListingsDisagreeError(
            f"LangSmith's listings disagree: {len(gone)} workspace(s) were deleted while the sync "
            f"read the members: {a_few(gone)} (nothing is wrong in "
            f"LangSmith: the next sync no longer reads them; the listing answered: {error}). "
            "Then sync again"
        ) from error


def add_members_who_joined_meanwhile(client: LangSmithClient, tables: RawMemberTables) -> int:
    """Add to ``org_members`` the people the workspaces' member listings name and the org member
    listing, read before them, did not: someone who joined the org (and a workspace) while the
    workspaces were read. The org member listing is read again and only those people are taken
    from it, so nobody read the first time is lost (a member removed since stays, as their
    workspace rows do). Anyone still missing is no org member: ``refuse_what_no_listing_has``
    names them. Returns how many were added."""
    tables.flush()
    missing = _ids_not_in(tables.conn, "workspace_memberships", "ls_user_id", "org_members", "ls_user_id")
    if not missing:
        return 0
    joined: dict[str, OrgMember] = {}
    client.stream_org_members(
        _Sink(
            joined.clear,
            lambda members, _: joined.update((m.ls_user_id, m) for m in members if m.ls_user_id in missing),
        )
    )
    tables.add(MemberRows([_org_member_row(m, tables.tag) for m in joined.values()], [], []))
    return len(joined)


# Memberships of the workspaces the sync keeps (dbt leaves out personal and deleted ones),
# with the workspace's name.
_SHARED_MEMBERSHIPS = (
    f"SELECT memberships.*, workspaces.display_name AS workspace_name "
    f"FROM {RAW_SCHEMA}.workspace_memberships AS memberships "
    f"JOIN {RAW_SCHEMA}.workspaces AS workspaces USING (workspace_id) "
    "WHERE NOT workspaces.is_personal AND NOT workspaces.is_deleted"
)
# How many of the people or roles a refusal names.
_NAMED = 5


def refuse_what_no_listing_has(client: LangSmithClient, conn: duckdb.DuckDBPyConnection) -> None:
    """Raise ``ListingsDisagreeError`` naming them when the members' listings name workspaces or
    roles the workspace and role listings, read before them, do not have, or a shared workspace
    lists people who are no org members (after ``add_members_who_joined_meanwhile``). dbt's
    checks would stop the build on them too, but only with a count of rows, and the sync's
    database, where the rows are, is discarded: the operator could not tell whom to fix.

    Workspaces and roles are read again, only to say which it is: created while the sync read
    (the next sync has them) or not listed at all (deleted while held; a key that cannot list
    it). What the second read found is not added: those listings are the workspaces' and roles'
    own assets' tables, written by them alone."""
    problems = []
    unknown_workspaces = conn.execute(
        f"""
        SELECT workspace_id, count(*), any_value(ls_user_id)
        FROM {RAW_SCHEMA}.workspace_memberships
        WHERE workspace_id NOT IN (SELECT workspace_id FROM {RAW_SCHEMA}.workspaces)
        GROUP BY workspace_id ORDER BY workspace_id
        """
    ).fetchall()
    if unknown_workspaces:
        listed_now = {workspace.id: workspace for workspace in get_workspaces(client)}
        created = [row for row in unknown_workspaces if row[0] in listed_now]
        unlisted = [row for row in unknown_workspaces if row[0] not in listed_now]
        if created:
            named = "; ".join(f"workspace {workspace_id} ({listed_now[workspace_id].display_name!r}), "
                              f"{held} member(s)" for workspace_id, held, _ in created[:_NAMED])
            problems.append(
                f"{len(created)} workspace(s) were created while the sync read the members: "
                f"{named}{_more(created)} (nothing is wrong in LangSmith: the next sync reads them)"
            )
        if unlisted:
            named = "; ".join(f"workspace {workspace_id}, {held} member(s), e.g. user {user_id}"
                              for workspace_id, held, user_id in unlisted[:_NAMED])
            problems.append(
                f"members belong to {len(unlisted)} workspace(s) the workspace listing does not have, "
                f"even read again: {named}{_more(unlisted)}. Give the key access to every workspace "
                "(an organization-scoped key; see `langsmith-access doctor`)"
            )
    roles = conn.execute(
        f"""
        SELECT role_id, any_value(role_name), count(*), any_value(workspace_id) FROM (
            SELECT role_id, role_name, workspace_id FROM ({_SHARED_MEMBERSHIPS})
            UNION ALL
            SELECT org_role_id, org_role_name, NULL FROM {RAW_SCHEMA}.org_members
        ) AS held
        WHERE role_id IS NOT NULL
            AND role_id NOT IN (SELECT role_id FROM {RAW_SCHEMA}.roles WHERE role_id IS NOT NULL)
        GROUP BY role_id ORDER BY role_id
        """
    ).fetchall()
    if roles:
        roles_listed_now = {role.id for role in get_roles(client)}
        for was_created, roles_of_kind in ((True, [r for r in roles if r[0] in roles_listed_now]),
                                           (False, [r for r in roles if r[0] not in roles_listed_now])):
            if not roles_of_kind:
                continue
            named = "; ".join(
                f"role {role_id} ({name or 'no name'}), held {held} time(s)"
                + (f", e.g. in workspace {workspace_id}" if workspace_id else " as an organization role")
                for role_id, name, held, workspace_id in roles_of_kind[:_NAMED]
            )
            problems.append(
                f"{len(roles_of_kind)} role(s) were created and given while the sync read the members: "
                f"{named}{_more(roles_of_kind)} (nothing is wrong in LangSmith: the next sync reads them)"
                if was_created else
                f"members hold {len(roles_of_kind)} role(s) the role listing does not have, even read "
                f"again (deleted while still held?): {named}{_more(roles_of_kind)}. Give their holders "
                "another role in LangSmith"
            )
    outsiders = conn.execute(
        f"""
        SELECT memberships.ls_user_id, memberships.workspace_id, memberships.workspace_name,
            memberships.workspace_identity_id
        FROM ({_SHARED_MEMBERSHIPS}) AS memberships
        WHERE memberships.ls_user_id NOT IN (
            SELECT ls_user_id FROM {RAW_SCHEMA}.org_members WHERE ls_user_id IS NOT NULL)
        ORDER BY memberships.ls_user_id, memberships.workspace_id
        """
    ).fetchall()
    if outsiders:
        named = "; ".join(
            f"user {user_id} in workspace {workspace_id} ({name!r}, workspace identity {identity})"
            for user_id, workspace_id, name, identity in outsiders[:_NAMED]
        )
        problems.append(
            f"{len(outsiders)} workspace member row(s) name people who are not active org members, "
            f"even after the org member listing was read again: {named}{_more(outsiders)}. Remove "
            "them from those workspaces in LangSmith (or add them to the organization)"
        )
    if problems:
        raise ListingsDisagreeError(
            "LangSmith's listings disagree: " + "; and ".join(problems) + ". Then sync again"
        )


def _more(items: Sequence[Any]) -> str:
    return f", and {len(items) - _NAMED} more" if len(items) > _NAMED else ""


def a_few(names: Sequence[str]) -> str:
    """The first few names, and how many more: ``a, b, c, d, e, and 3 more``."""
    return ", ".join(names[:_NAMED]) + _more(names)


def _ids_not_in(conn: duckdb.DuckDBPyConnection, table: str, column: str, listing: str,
                listing_column: str) -> set[str]:
    """The values of ``raw.<table>.<column>`` that ``raw.<listing>`` does not list."""
    return {
        value
        for (value,) in conn.execute(
            f'SELECT DISTINCT "{column}" FROM {RAW_SCHEMA}."{table}" WHERE "{column}" IS NOT NULL '
            f'AND "{column}" NOT IN (SELECT "{listing_column}" FROM {RAW_SCHEMA}."{listing}" '
            f'WHERE "{listing_column}" IS NOT NULL)'
        ).fetchall()
    }


def _header_is_true(headers: Mapping[str, str], name: str) -> bool:
    return headers.get(name, "").strip().lower() == "true"


class _Sink:
    """A ``ListingSink`` made of two functions."""

    def __init__(
        self,
        begin_scan: Callable[[], None],
        add_page: Callable[[Sequence[Any], Mapping[str, str]], None],
    ):
        self._begin_scan = begin_scan
        self._add_page = add_page

    def begin_scan(self) -> None:
        self._begin_scan()

    def add_page(self, records: Sequence[Any], headers: Mapping[str, str]) -> None:
        self._add_page(records, headers)


class RawMemberTables:
    """The raw member tables of one sync (``org_members``, ``pending_invites``,
    ``workspace_memberships``), filled page by page: the sinks it hands out transform each page
    and append its rows, and a listing read again takes back what its earlier scan wrote.

    Thread-safe: on the per-workspace route, workspaces' pages arrive from several threads.
    """

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        sync_id: str,
        fetched_at: datetime,
        *,
        batch_rows: int = BATCH_ROWS,
    ):
        self.conn = conn
        self.sync_id = sync_id
        self.fetched_at = fetched_at
        self.tag: Row = {"sync_id": sync_id, "fetched_at": fetched_at}
        self.tables = {
            table: RawTableAppender(conn, table, batch_rows=batch_rows) for table in MEMBER_TABLES
        }
        self.anonymity_restricted = False
        self.withheld_values_kept = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Take back every row of the three tables (the previous sync's, or this one's)."""
        with self._lock:
            for table in self.tables.values():
                table.discard()
            self.anonymity_restricted = False
            self.withheld_values_kept = 0

    def flush(self) -> None:
        """Write the rows still held: call once every listing was read."""
        with self._lock:
            for table in self.tables.values():
                table.flush()

    def add(self, rows: MemberRows) -> None:
        with self._lock:
            self.tables["org_members"].add(rows.org_members)
            self.tables["pending_invites"].add(rows.pending_invites)
            self.tables["workspace_memberships"].add(rows.workspace_memberships)

    # The sinks, one per listing.

    def enriched_sink(self, client: LangSmithClient) -> _Sink:
        return _Sink(self.clear, lambda people, headers: self._add_enriched_page(people, headers, client))

    def org_members_sink(self, *, anonymity_restricted: bool = False) -> _Sink:
        """The org member listing's. ``anonymity_restricted``: the enriched route said the org's
        answers are restricted, so this listing's may withhold values too (undocumented: kept
        as from a restricted page, whatever this listing's own headers say)."""

        def begin_scan() -> None:
            self._discard("org_members")
            with self._lock:
                self.withheld_values_kept = 0  # on this route, only this listing's rows keep values

        def add_page(members: Sequence[OrgMember], headers: Mapping[str, str]) -> None:
            rows = MemberRows([_org_member_row(m, self.tag) for m in members], [], [])
            if anonymity_restricted or answers_anonymity_restricted(headers):
                self._keep_withheld_values(rows)
            self.add(rows)

        return _Sink(begin_scan, add_page)

    def pending_invites_sink(self) -> _Sink:
        return _Sink(
            lambda: self._discard("pending_invites"),
            lambda invites, _: self.add(
                MemberRows([], [_pending_invite_row(p, self.tag) for p in invites], [])
            ),
        )

    def workspace_members_sink(self, workspace_id: str) -> _Sink:
        return _Sink(
            lambda: self._discard("workspace_memberships", "workspace_id", workspace_id),
            lambda members, _: self.add(
                MemberRows(
                    [],
                    [],
                    transform_workspace_members(
                        workspace_id, members, self.sync_id, self.fetched_at
                    ),
                )
            ),
        )

    def _discard(self, table: str, column: str | None = None, value: Any = None) -> None:
        with self._lock:
            self.tables[table].discard(column, value)

    def _add_enriched_page(self, people: Sequence[EnrichedMember], headers: Mapping[str, str],
                           client: LangSmithClient) -> None:
        require_every_workspace_listed(headers, client)
        restricted = answers_anonymity_restricted(headers)
        rows = transform_enriched_members(people, self.sync_id, self.fetched_at)
        if restricted:
            self._keep_withheld_values(rows)
        self.add(rows)

    def _keep_withheld_values(self, rows: MemberRows) -> None:
        """Rows of an anonymity-restricted answer: the values it withheld put back from the
        previous sync (``keep_withheld_values``), and counted."""
        with self._lock:
            known = known_member_values(self.conn, [r["ls_user_id"] for r in rows.org_members])
            self.anonymity_restricted = True
            self.withheld_values_kept += keep_withheld_values(rows.org_members, known)


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


def transform_enriched_members(
    people: Iterable[EnrichedMember], sync_id: str, fetched_at: datetime
) -> MemberRows:
    """Rows of the three member tables from enriched member records (a page, or a listing)."""
    tag = {"sync_id": sync_id, "fetched_at": fetched_at}
    members: list[Row] = []
    invites: list[Row] = []
    memberships: list[Row] = []
    for person in people:
        if person.is_pending:
            # A pending invite is not a user: whatever workspaces it names are not grants. This
            # route may list a pending row without the workspaces its invite offers: none listed
            # is "not said" (null), not "none" (the per-workspace route reads the invites' own).
            offered = person.workspace_memberships
            invites.append(
                {
                    **tag,
                    "invite_id": person.id,
                    "email": person.email,
                    "org_role_id": person.role_id,
                    "org_role_name": person.role_name,
                    "workspace_ids": [m.workspace_id for m in offered] if offered else None,
                    "workspace_role_id": next((m.role_id for m in offered if m.role_id), None),
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


def transform_workspace_members(
    workspace_id: str, members: Iterable[WorkspaceMember], sync_id: str, fetched_at: datetime
) -> list[Row]:
    """``workspace_memberships`` rows from one workspace's member listing (or a page of it)."""
    tag = {"sync_id": sync_id, "fetched_at": fetched_at}
    return [
        {
            **tag,
            "workspace_id": workspace_id,
            "ls_user_id": member.ls_user_id,
            "workspace_identity_id": member.id,
            "role_id": member.role_id,
            "role_name": member.role_name,
            "source": PER_WORKSPACE_ROUTE,
        }
        for member in members
    ]


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
        [{"provider": m.provider, "provisioning_method": m.provisioning_method, "username": m.username}
         for m in methods]
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


def count_members(conn: duckdb.DuckDBPyConnection) -> MemberCounts:
    """Count what the member tables hold (after ``load_members``)."""
    org_members, disabled = one_row(
        conn,
        f"SELECT count(*), count(*) FILTER (WHERE is_disabled) FROM {RAW_SCHEMA}.org_members",
    )
    memberships, grants = one_row(
        conn,
        f"""
        SELECT count(*), count(*) FILTER (WHERE workspace_id IN (
            SELECT workspace_id FROM {RAW_SCHEMA}.workspaces WHERE NOT is_personal AND NOT is_deleted
        ))
        FROM {RAW_SCHEMA}.workspace_memberships
        """,
    )
    (pending,) = one_row(conn, f"SELECT count(*) FROM {RAW_SCHEMA}.pending_invites")
    return MemberCounts(org_members, disabled, pending, memberships, grants)


def first_rows(
    conn: duckdb.DuckDBPyConnection, table: str, columns: list[str], limit: int = 10
) -> list[Row]:
    """A few rows of a raw table, for a preview."""
    unknown = set(columns) - set(column_names(table))
    if unknown:
        raise ValueError(f"raw.{table} has no column {', '.join(sorted(unknown))}")
    quoted = ", ".join(f'"{c}"' for c in columns)
    found = conn.execute(f'SELECT {quoted} FROM {RAW_SCHEMA}."{table}" LIMIT ?', [limit]).fetchall()
    return [dict(zip(columns, values, strict=True)) for values in found]


# ------------------------------------------------------------------------ load


def load_raw(conn: duckdb.DuckDBPyConnection, table: str, rows: list[Row]) -> int:
    """Replace the rows of one raw table with ``rows`` (in one transaction). Returns the count."""
    conn.execute("BEGIN")
    try:
        conn.execute(f'DELETE FROM {RAW_SCHEMA}."{table}"')
        insert_rows(conn, table, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)
