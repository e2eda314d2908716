"""The inventory (DESIGN.md section 9): access policies and the resource tags they match,
credentials of every kind, service accounts, SSO settings and the audit log, read on their own
schedule by the asset job ``langsmith_access_inventory`` and published under the same
all-or-nothing rules as the sync.

Cartography's verbs again: ``get_*`` talk to the API only, ``transform_*`` are pure (records in,
rows out), ``load_*`` write raw tables. Nothing here knows Dagster.

Which sections are read is the org's and the key's business (``langsmith.sections``): a section
the plan, the key or the install does not have is skipped with its reason, planned from the org
info or found out by the refusal itself (``SectionUnavailableError``); every other failure of
any section fails the run, so the previous inventory stays published whole.

The audit log is read incrementally, by time window (both ends inclusive, as the route reads
them). The first load reaches back ``LANGSMITH_ACCESS_UNUSED_DAYS`` (and a later one further, when
the setting was raised since), never past the 400 days LangSmith keeps; each later run starts
an hour before the end of the last window it read completely, so an event logged late is still
found, and events are kept once by event id (a run that finds the last window older than the
retention starts again as a first load: the days between were deleted unread). Where the load
stands (``raw.audit_windows``) is written with the events, in the run's scratch copy: a window
that fails takes its run down with it, nothing of the run is published, and the next run reads
that window again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np

from langsmith_access.langsmith import (
    AccessPolicy,
    AuditEvent,
    Credential,
    LangSmithClient,
    ResourceTagging,
    SectionPlan,
    SectionUnavailableError,
    ServiceAccount,
    SsoProvider,
)
from langsmith_access.langsmith.access_records import redact_short_key
from langsmith_access.settings import mask_url_credentials
from langsmith_access.store.raw_tables import RAW_SCHEMA, column_names
from langsmith_access.store.sections import (
    SKIPPED,
    SectionRead,
    earliest_audit_window_start,
    forget_audit_log,
    forget_audit_windows,
    latest_audit_window_end,
    record_audit_window,
)
from langsmith_access.sync.extract import a_few, load_raw

Row = dict[str, Any]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartialRead:
    """A section's records when its read left some out, and what and why (said beside its rows
    in ``raw.section_reads``, the run's log and the CLI's summary)."""

    records: list[Any]
    left_out: str


def _per_workspace(
    read_workspaces: Callable[[LangSmithClient, list[str]], dict[str, list[Any]]], what: str
) -> Callable[[LangSmithClient, list[str]], list[Any] | PartialRead]:
    """A section read one call per shared workspace (``read_workspaces``: the client's
    ``..._of_workspaces`` with ``skip_gone``). A workspace deleted since the workspaces were
    listed took ``what`` with it: it is left out and named, rather than failing the inventory."""

    def read(client: LangSmithClient, shared_workspace_ids: list[str]) -> list[Any] | PartialRead:
        by_workspace = read_workspaces(client, shared_workspace_ids)
        records = [record for records in by_workspace.values() for record in records]
        # The ids come from the workspace listing, whose records spell each UUID one way, as the answer does.
        gone = [workspace for workspace in dict.fromkeys(shared_workspace_ids) if workspace not in by_workspace]
        if not gone:
            return records
        return PartialRead(
            records, f"{len(gone)} workspace(s) deleted since they were listed, {what} with them: {a_few(gone)}"
        )

    return read


_workspace_service_keys = _per_workspace(
    lambda client, ids: client.list_service_keys_of_workspaces(ids, skip_gone=True), "their keys"
)
_workspace_resource_tags = _per_workspace(
    lambda client, ids: client.list_resource_tags_of_workspaces(ids, skip_gone=True), "their tags"
)


def _tags_decide_nothing(inventory: Inventory) -> str | None:
    """Why reading resource tags would tell nothing about access (one call per workspace), or
    None: tags decide access only through the conditions of access policies."""
    policies_read = next((r for r in inventory.reads if r.section == "access_policies"), None)
    if policies_read is not None and policies_read.status == SKIPPED:
        return f"access policies were not read ({policies_read.reason}), and tags decide access only through them"
    if not any(group.conditions for policy in inventory.of("access_policies") for group in policy.condition_groups):
        return "no access policy has a condition: resource tags decide no one's access in this org"
    return None


@dataclass(frozen=True)
class InventorySection:
    """A section the inventory reads (all but the audit log, which is read by time window):
    its name (as in ``sync_runs.skipped_sections``), how it is read (client, shared workspace
    ids -> records), and the raw table its records fill."""

    name: str
    read: Callable[[LangSmithClient, list[str]], list[Any] | PartialRead]
    table: str
    # Why the sections read before it make reading this one pointless (None: read it).
    pointless: Callable[[Inventory], str | None] = lambda _: None


# The sections, in the order they are read (``scim_groups`` is the core sync's: it comes with
# the members). The four credential listings fill one table.
SECTIONS = (
    InventorySection("access_policies", lambda client, _: client.list_access_policies(), "access_policies"),
    InventorySection("resource_tags", _workspace_resource_tags, "resource_tags", pointless=_tags_decide_nothing),
    InventorySection("service_keys", lambda client, _: client.list_service_keys(), "credentials"),
    InventorySection(
        "personal_access_tokens", lambda client, _: client.list_personal_access_tokens(), "credentials"
    ),
    InventorySection("workspace_service_keys", _workspace_service_keys, "credentials"),
    InventorySection("scim_tokens", lambda client, _: client.list_scim_tokens(), "credentials"),
    InventorySection("service_accounts", lambda client, _: client.list_service_accounts(), "service_accounts"),
    InventorySection("sso_settings", lambda client, _: client.list_sso_settings(), "sso_settings"),
)
CREDENTIAL_SECTIONS = tuple(section.name for section in SECTIONS if section.table == "credentials")
INVENTORY_SECTIONS = (*(section.name for section in SECTIONS), "audit_events")
# The raw tables the inventory replaces on each run (``audit_events`` is appended to), and the
# sections each is filled from.
TABLE_SECTIONS = {
    table: tuple(section.name for section in SECTIONS if section.table == table)
    for table in dict.fromkeys(section.table for section in SECTIONS)
}

# Each later run reads the audit log again from this long before where the last one stopped:
# LangSmith documents no delivery delay, and an overlap costs one page at most.
AUDIT_OVERLAP = timedelta(hours=1)
# Longest window one read covers: a first load of 90 days is read a day at a time, so no more
# than a day's events are held at once.
AUDIT_WINDOW_LENGTH = timedelta(days=1)
# LangSmith keeps audit logs up to 400 days (langsmith-api.md, "Audit logs"): no load reaches
# back further, whatever LANGSMITH_ACCESS_UNUSED_DAYS says. Windows before it would come back
# empty yet count as read (``user_activity.activity_known_since``), and report_unused_access
# would then call a member who logged in 450 days ago unused for 500.
AUDIT_RETENTION = timedelta(days=400)

# A whole secret inside an audit event (a misbehaving server): a key prefix and 20 or more
# characters of key material.
_SECRET_IN_TEXT = re.compile(r"(?:lsv2_[a-z]+_|ls__)[A-Za-z0-9_]{20,}")


@dataclass
class Inventory:
    """What ``get_inventory`` read: the records of each raw table (by id, in the order read),
    and for each section whether it was read (with its row count) or skipped (with why)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads: list[SectionRead] = field(default_factory=list)

    def of(self, table: str) -> list[Any]:
        """The records of one raw table (access policies, credentials, ...)."""
        return list(self.records.get(table, {}).values())


def get_inventory(client: LangSmithClient, plan: SectionPlan, shared_workspace_ids: list[str]) -> Inventory:
    """Every inventory section but the audit log, each read or skipped with its reason."""
    inventory = Inventory()
    for section in SECTIONS:
        pointless = section.pointless(inventory) if plan.should_read(section.name) else None
        if pointless is not None:
            inventory.reads.append(SectionRead.skipped(section.name, pointless))
            continue
        records = _read_section(section, client, plan, shared_workspace_ids, inventory.reads)
        # One row per record, should a key ever be listed by two routes (the first one wins).
        by_id = inventory.records.setdefault(section.table, {})
        for record in records:
            by_id.setdefault(record.id, record)
    return inventory


def _read_section(
    section: InventorySection,
    client: LangSmithClient,
    plan: SectionPlan,
    shared_workspace_ids: list[str],
    reads: list[SectionRead],
) -> list[Any]:
    """The section's records, its read (or skip, with why) appended to ``reads``."""
    if not plan.should_read(section.name):
        reads.append(SectionRead.skipped(section.name, plan.skipped[section.name]))
        return []
    try:
        result = section.read(client, shared_workspace_ids)
    except SectionUnavailableError as unavailable:
        reads.append(SectionRead.skipped(section.name, unavailable.reason))
        return []
    records, left_out = (result.records, result.left_out) if isinstance(result, PartialRead) else (result, None)
    reads.append(SectionRead.read(section.name, len(records), left_out))
    return records


# ------------------------------------------------------------------ transforms (pure)


def _tag(sync_id: str, fetched_at: datetime) -> Row:
    return {"sync_id": sync_id, "fetched_at": fetched_at}


def transform_access_policies(policies: Iterable[AccessPolicy], sync_id: str, fetched_at: datetime) -> list[Row]:
    return [
        {
            **_tag(sync_id, fetched_at),
            "policy_id": p.id,
            "name": _scrubbed(p.name),
            "description": _scrubbed(p.description),
            # Kept as sent (an open set), so as free text as any: never a key.
            "effect": _scrubbed(p.effect),
            "role_ids": list(p.role_ids),
            # Free text too: a condition's resource tag value is whatever an admin typed.
            "condition_groups": scrub_secrets(p.condition_groups_json()),
            "created_at": p.created_at,
            "updated_at": p.updated_at,
        }
        for p in policies
    ]


def transform_resource_tags(taggings: Iterable[ResourceTagging], sync_id: str, fetched_at: datetime) -> list[Row]:
    """One row per tag value on a resource. Keys, values and resource names are what people
    typed: free text, cut like any other should a key be pasted in one."""
    return [
        {
            **_tag(sync_id, fetched_at),
            "tagging_id": t.id,
            "workspace_id": t.workspace_id,
            "tag_key_id": t.tag_key_id,
            "tag_key": scrub_secrets(t.tag_key),
            "tag_value_id": t.tag_value_id,
            "tag_value": scrub_secrets(t.tag_value),
            "resource_type": scrub_secrets(t.resource_type),
            "resource_id": t.resource_id,
            "resource_name": scrub_secrets(t.resource_name),
        }
        for t in taggings
    ]


def transform_credentials(credentials: Iterable[Credential], sync_id: str, fetched_at: datetime) -> list[Row]:
    """One row per credential. ``short_key`` is what the listing showed, already cut to its
    prefix and last characters if the server sent a whole secret (``Credential``)."""
    return [
        {
            **_tag(sync_id, fetched_at),
            "credential_id": c.id,
            "kind": c.kind,
            "short_key": c.short_key,
            # Free text: a key pasted as its own description is cut as a whole short_key is.
            "description": _scrubbed(c.description),
            # Names an admin typed: free text as well.
            "workspace_names": None if c.workspace_names is None else [scrub_secrets(n) for n in c.workspace_names],
            "listed_in_workspace_id": c.workspace_id,
            "default_workspace_name": _scrubbed(c.default_workspace_name),
            "role_id": c.role_id,
            "org_role_id": c.org_role_id,
            # Both kept as sent (no schema names them): free text that is never a key.
            "access_scope": _scrubbed(c.access_scope),
            "created_by": _scrubbed(c.created_by),
            "read_only": c.read_only,
            "created_at": c.created_at,
            "last_used_at": c.last_used_at,
            "expires_at": c.expires_at,
            "revoked_at": c.revoked_at,
        }
        for c in credentials
    ]


def transform_service_accounts(accounts: Iterable[ServiceAccount], sync_id: str, fetched_at: datetime) -> list[Row]:
    return [
        {
            **_tag(sync_id, fetched_at),
            "service_account_id": a.id,
            "name": scrub_secrets(a.name),
            "organization_id": a.organization_id,
            "default_workspace_id": a.default_workspace_id,
            "created_at": a.created_at,
            "updated_at": a.updated_at,
        }
        for a in accounts
    ]


def transform_sso_settings(providers: Iterable[SsoProvider], sync_id: str, fetched_at: datetime) -> list[Row]:
    return [
        {
            **_tag(sync_id, fetched_at),
            "sso_provider_id": p.id,
            "provider_id": _scrubbed(p.provider_id),  # the identity provider's own id: any text
            "default_workspace_role_id": p.default_workspace_role_id,
            "default_workspace_ids": list(p.default_workspace_ids),
            # A URL an admin typed: a password for the metadata host, or a signed link's token
            # in its query string, would travel in it.
            "metadata_url": _scrubbed(None if p.metadata_url is None else mask_url_credentials(p.metadata_url)),
            "sso_groups_enabled": p.sso_groups_enabled,
            "sso_groups_claim_field": _scrubbed(p.sso_groups_claim_field),
            "sso_groups_required": p.sso_groups_required,
            "sso_groups_role_sync_enabled": p.sso_groups_role_sync_enabled,
            "attribute_mapping_keys": [scrub_secrets(k) for k in p.attribute_mapping_keys],
            "has_metadata_xml": p.has_metadata_xml,
            # Free text LangSmith or the identity provider wrote: it may quote what it failed on
            # (a pasted key, the metadata URL with its password or signed link), cut as above.
            "attribute_mapping_load_error": _scrubbed(
                None if p.attribute_mapping_load_error is None else mask_url_credentials(p.attribute_mapping_load_error)
            ),
        }
        for p in providers
    ]


def scrub_secrets(text: str) -> str:
    """``text`` with every whole key or token in it cut to its prefix and last four characters
    (an audit event never carries one; a misbehaving server might)."""
    return _SECRET_IN_TEXT.sub(lambda match: redact_short_key(match.group(0))[0], text)


def _scrubbed(text: str | None) -> str | None:
    return None if text is None else scrub_secrets(text)


def transform_audit_events(events: Iterable[AuditEvent], sync_id: str, fetched_at: datetime) -> list[Row]:
    """One row per event; operations and everything else kept as sent."""
    return [
        {
            **_tag(sync_id, fetched_at),
            # Every text the server sent, not only the whole event (detail): any may carry one.
            "event_id": scrub_secrets(e.event_id),
            "at": e.at,
            "operation": scrub_secrets(e.operation),
            "succeeded": e.succeeded,
            "actor_user_id": _scrubbed(e.actor_user_id),
            "credential_id": _scrubbed(e.credential_id),
            "workspace_id": _scrubbed(e.workspace_id),
            "target_ids": [scrub_secrets(uid) for uid in e.target_ids],
            "source_ip": _scrubbed(e.source_ip),
            "http_method": _scrubbed(e.http_method),
            "path": _scrubbed(e.path),
            "status_code": e.status_code,
            "detail": scrub_secrets(e.detail),
        }
        for e in events
    ]


# How each raw table's rows are made from the records its sections read (TABLE_SECTIONS).
TABLE_TRANSFORMS: dict[str, Callable[[list[Any], str, datetime], list[Row]]] = {
    "access_policies": transform_access_policies,
    "resource_tags": transform_resource_tags,
    "credentials": transform_credentials,
    "service_accounts": transform_service_accounts,
    "sso_settings": transform_sso_settings,
}


# ------------------------------------------------------------------ load


def load_inventory(
    conn: duckdb.DuckDBPyConnection, inventory: Inventory, sync_id: str, fetched_at: datetime
) -> dict[str, int]:
    """Replace the inventory's raw tables (a skipped section's table is left empty). Returns rows
    per table."""
    return {
        table: load_raw(conn, table, transform(inventory.of(table), sync_id, fetched_at))
        for table, transform in TABLE_TRANSFORMS.items()
    }


# ------------------------------------------------------------------ the audit log


@dataclass(frozen=True)
class AuditLoad:
    """What one run loaded of the audit log: the span it read, and how many events it found and
    how many of those it did not have before."""

    start: datetime
    end: datetime
    windows: int
    pages: int
    events_read: int
    events_new: int


def audit_windows(
    resume_from: datetime | None, now: datetime, unused_days: int, known_since: datetime | None = None
) -> Iterator[tuple[datetime, datetime]]:
    """The windows to read, oldest first: from ``AUDIT_OVERLAP`` before ``resume_from`` (the end
    of the last window read; None: never read, then ``unused_days`` back, at most
    ``AUDIT_RETENTION``) up to ``now``, each at most ``AUDIT_WINDOW_LENGTH`` long. Consecutive
    windows share their boundary instant.

    ``known_since``: where the loaded log starts. Later than ``unused_days`` back (the setting
    was raised since the first load), the days before it are read first, up to it (and back to
    ``AUDIT_RETENTION`` at most): otherwise ``report_unused_access`` would stay empty until the
    log had grown that long by itself. Beyond the retention it does grow by itself: the events
    loaded are kept."""
    reach_back = now - min(timedelta(days=unused_days), AUDIT_RETENTION)
    if resume_from is not None and known_since is not None and reach_back < known_since:
        yield from _day_windows(reach_back, min(known_since, now))
    start = reach_back if resume_from is None else resume_from - AUDIT_OVERLAP
    yield from _day_windows(min(start, now), now)


def _day_windows(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """``start`` to ``end`` in windows of at most ``AUDIT_WINDOW_LENGTH``, sharing boundaries."""
    while True:
        stop = min(start + AUDIT_WINDOW_LENGTH, end)
        yield start, stop
        if stop >= end:
            return
        start = stop


def load_audit_events(
    client: LangSmithClient,
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    now: datetime,
    unused_days: int,
    fetched_at: datetime,
) -> AuditLoad:
    """Read the audit log from where the last run stopped up to ``now``, window by window,
    appending the events not loaded before and recording each window once it is read whole.
    Raises ``SectionUnavailableError`` (nothing loaded) where the plan, key or install has no
    audit log; any other failure propagates, with the run's earlier windows in its scratch copy
    only."""
    resume_from = latest_audit_window_end(conn)
    if resume_from is not None and resume_from < now - AUDIT_RETENTION:
        # Stopped for longer than LangSmith keeps its log: what was logged after the last window
        # and before the retention's edge is gone. Read on from there, the log would have a hole
        # that activity_known_since (the first window) says it has not: start again as a first
        # load, keeping the events loaded.
        logger.warning("the audit log was last read up to %s, more than %s days ago: what LangSmith logged "
                       "after that and has deleted since is lost; loading it again as a first load",
                       resume_from.isoformat(), AUDIT_RETENTION.days)
        forget_audit_windows(conn)
        resume_from = None
    windows = list(audit_windows(resume_from, now, unused_days, earliest_audit_window_start(conn)))
    pages = read = new = 0
    for start, end in windows:
        window = client.list_audit_events(start, end)
        rows = transform_audit_events(window.events, sync_id, fetched_at)
        added = append_new_events(conn, rows)
        record_audit_window(
            conn, sync_id=sync_id, window_start=start, window_end=end,
            events_read=len(rows), events_new=added, pages=window.pages,
        )
        pages += window.pages
        read += len(rows)
        new += added
    return AuditLoad(windows[0][0], windows[-1][1], len(windows), pages, read, new)


def append_new_events(conn: duckdb.DuckDBPyConnection, rows: list[Row]) -> int:
    """Append to ``raw.audit_events`` the rows whose event id it does not hold yet; returns how
    many were added."""
    if not rows:
        return 0
    columns = column_names("audit_events")
    quoted = ", ".join(f'"{name}"' for name in columns)
    frame = {
        name: np.fromiter((row.get(name) for row in rows), dtype=object, count=len(rows))
        for name in columns
    }
    conn.register("incoming_events", frame)
    try:
        before = _count(conn)
        conn.execute(
            f"INSERT INTO {RAW_SCHEMA}.audit_events ({quoted}) "
            f"SELECT {quoted} FROM incoming_events AS incoming "
            f"WHERE NOT EXISTS (SELECT 1 FROM {RAW_SCHEMA}.audit_events AS known "
            "WHERE known.event_id = incoming.event_id) "
            "QUALIFY row_number() OVER (PARTITION BY incoming.event_id) = 1"
        )
        return _count(conn) - before
    finally:
        conn.unregister("incoming_events")


def _count(conn: duckdb.DuckDBPyConnection) -> int:
    [(count,)] = conn.execute(f"SELECT count(*) FROM {RAW_SCHEMA}.audit_events").fetchall()
    return int(count)


def read_audit_log(
    client: LangSmithClient,
    conn: duckdb.DuckDBPyConnection,
    plan: SectionPlan,
    *,
    sync_id: str,
    now: datetime,
    unused_days: int,
    fetched_at: datetime,
) -> tuple[SectionRead, AuditLoad | None]:
    """The audit-log section: loaded (``load_audit_events``), or skipped with why; skipped, the
    events loaded before are forgotten (DESIGN.md section 9: a skipped section's table is
    empty, and no activity is known without an audit log)."""
    if not plan.should_read("audit_events"):
        forget_audit_log(conn)
        return SectionRead.skipped("audit_events", plan.skipped["audit_events"]), None
    try:
        load = load_audit_events(
            client, conn, sync_id=sync_id, now=now, unused_days=unused_days, fetched_at=fetched_at
        )
    except SectionUnavailableError as unavailable:
        forget_audit_log(conn)
        return SectionRead.skipped("audit_events", unavailable.reason), None
    return SectionRead.read("audit_events", load.events_new), load
