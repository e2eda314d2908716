"""Time-bound grants: warn before they end, and queue the revoke that ends them.

A grant applied with terms (``--duration``, ``--until``, or the policy's default or max) has an
``expires_at``. When it is due, ``queue_due_expiries`` queues one revoke for it, as the system
(``requested_by = 'langsmith-access'``, ``reason = 'expired'``, ``parent_request_id`` = the
grant), in the same transaction as the grant's ``expiry_queued`` event; the revoke is then
applied like any other request. A grant gets at most one such revoke (one whose
``parent_request_id`` names it stops another), so a crash between queuing and applying loses
nothing and revokes once.

The revoke undoes only what the grant did (``planner.plan_expiry``): the executor reads the
grant's ``prior_role_id`` (recorded when it was applied) to know whether to remove the member or
restore the role they had. A later request on the same membership that is still in force (its
``successor``) changes that: a later grant built on the granted role (it replaced it, or found it
already there) takes over what the member had before, and ends with it; a later revoke already
ended the access. So grants stack: Editor for 8h, then Admin for 1h, gives Editor back after the
hour and the member's first role after 8h, and a second grant of the same role extends the first.

A grant's ``access.expiring`` warning (``warn_expiring``) is due ``LANGSMITH_ACCESS_EXPIRY_WARNING``
before its end: a provisioning run sends those due before it takes the queue and again after
applying it, so a grant applied inside its window (shorter than it) is warned of by the run
that applies it. The ``expiry_warned`` event and the outbox row are one transaction: sent once.

A revoke that failed (LangSmith refused or did not answer) is queued again, after 5 minutes,
then 10, 20, ... at most 6 hours apart: the access must end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning.approvals import overdue_requests
from langsmith_access.provisioning.queue import (
    EXPIRED_REASON,
    OPEN_STATUSES_SQL,
    REQUEST_COLUMNS,
    SYSTEM_REQUESTER,
    fetch_requests,
    iso_minutes,
    new_id,
    record_event,
)
from langsmith_access.settings import ORGS_FILE_VARIABLE, Orgs
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.raw_tables import RAW_SCHEMA
from langsmith_access.store.sql import column_names, scalar, table_exists
from langsmith_access.store.sync_runs import organization_of, same_organization

_REQUESTS = "main.provisioning_requests"  # a grant's own row, in the conditions below


def _in_force(row: str, requests: str = _REQUESTS) -> str:
    """``row`` changed a membership or confirmed a grant (a revoke that found nothing to remove
    changed nothing), and no expiry revoke of its own (among ``requests``) has undone that since."""
    return (
        f"({row}.status = 'applied' OR ({row}.action = 'grant' AND {row}.status = 'already_satisfied')) "
        f"AND {row}.parent_request_id IS NULL AND NOT EXISTS (SELECT 1 FROM {requests} AS ended "
        f"WHERE ended.parent_request_id = {row}.request_id AND ended.status IN ('applied', 'already_satisfied'))"
    )


def _of_membership(conn: duckdb.DuckDBPyConnection, user_id: str, workspace_id: str, where: str,
                   params: list) -> list[dict]:
    """The requests of one membership (a user in a workspace: its expiry revokes included, which
    carry their grant's user and workspace) matching ``where``, in which the table is
    ``membership``: one filtered read of the queue, not a join over all of it (a batch of
    500 expiry revokes asks this once each, under the executor's lock)."""
    cursor = conn.execute(
        f"WITH membership AS (SELECT * FROM {_REQUESTS} WHERE user_id = ? AND workspace_id = ?) "
        f"SELECT {', '.join(REQUEST_COLUMNS)} FROM membership AS provisioning_requests WHERE {where} "
        "ORDER BY request_seq",
        [user_id, workspace_id, *params],
    )
    return [dict(zip(REQUEST_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def _settled_after(later: str, earlier: str) -> str:
    """``later`` settled after ``earlier`` (one batch settles in queue order, at one time)."""
    return (f"({later}.updated_at > {earlier}.updated_at OR ({later}.updated_at = {earlier}.updated_at "
            f"AND {later}.request_seq > {earlier}.request_seq))")


# Grants whose access may end: in force, with an end, and not given an expiry revoke yet, or
# only ones that failed (queued again after a backoff: ``_RETRY_DUE``).
_LIVE_TIME_BOUND = (
    f"action = 'grant' AND expires_at IS NOT NULL AND {_in_force('provisioning_requests')} "
    f"AND NOT EXISTS (SELECT 1 FROM {_REQUESTS} AS child "
    "WHERE child.parent_request_id = provisioning_requests.request_id AND child.status <> 'failed')"
)
_RETRY_DUE = (
    "coalesce((SELECT max(child.updated_at) + to_seconds(CAST(least(300 * pow(2, count(*) - 1), 21600) "
    f"AS BIGINT)) FROM {_REQUESTS} AS child WHERE child.parent_request_id = "
    "provisioning_requests.request_id AND child.status = 'failed'), expires_at) <= ?"
)
_DUE = f"{_LIVE_TIME_BOUND} AND expires_at <= ? AND {_RETRY_DUE}"
# Of the live ones, those ending within (?, ?] that were not warned about yet (``to_warn`` keeps
# those whose end will change the member's access).
_ENDING_UNWARNED = (
    f"{_LIVE_TIME_BOUND} AND expires_at > ? AND expires_at <= ? AND NOT EXISTS "
    "(SELECT 1 FROM main.provisioning_events AS e WHERE e.request_id = provisioning_requests.request_id "
    "AND e.kind = 'expiry_warned')"
)


def _settle_order(request: dict) -> tuple:
    return (request["updated_at"], request["request_seq"])


def end_changes_access(conn: duckdb.DuckDBPyConnection, grant: dict) -> bool:
    """Will ``grant``'s end change the member's role, as the executor will end it (if nothing is
    changed by hand meanwhile)? Plays the membership's requests in force forward, each
    time-bound grant ending at its ``expires_at`` as the executor ends it: a later request in
    force (its ``successor``) takes it over, and a later grant built on its role inherits what it
    replaced; with none, it restores what it replaced. ``grant``'s own end changes the role when
    nothing took it over and what it restores is not its own role."""
    in_force = _of_membership(conn, grant["user_id"], grant["workspace_id"],
                              _in_force("provisioning_requests", "membership"), [])
    in_force.sort(key=_settle_order)
    replaced = {r["request_id"]: r["prior_role_id"] for r in in_force}
    live = {r["request_id"] for r in in_force}
    ending = sorted(
        (r for r in in_force if r["action"] == "grant" and r["expires_at"] is not None
         and (r["expires_at"], _settle_order(r)) <= (grant["expires_at"], _settle_order(grant))),
        key=lambda r: (r["expires_at"], _settle_order(r)),
    )
    for ended in ending:
        later = next((r for r in in_force
                      if r["request_id"] in live and _settle_order(r) > _settle_order(ended)), None)
        live.discard(ended["request_id"])
        if ended["request_id"] == grant["request_id"]:
            return later is None and replaced[ended["request_id"]] != ended["role_id"]
        if later is not None and later["action"] == "grant" and replaced[later["request_id"]] == ended["role_id"]:
            replaced[later["request_id"]] = replaced[ended["request_id"]]
    return True  # ``grant`` is not in force after all: its end is due as it stands


def to_warn(conn: duckdb.DuckDBPyConnection, now: datetime, warning: timedelta) -> list[dict]:
    """The time-bound grants ending within ``warning`` of ``now``, not warned about yet, whose
    end will end or change the member's access (``end_changes_access``): a grant taken over by a
    later one, or of a role the member will hold on through another grant, ends nothing."""
    return [grant for grant in fetch_requests(conn, _ENDING_UNWARNED, [now, now + warning])
            if end_changes_access(conn, grant)]


def successor(conn: duckdb.DuckDBPyConnection, grant: dict) -> dict | None:
    """The first request on ``grant``'s membership (its user in its workspace) that settled after
    it, took effect, and is still in force; None if there is none (the grant's own effect is
    what the member has, unless someone changed it by hand)."""
    later = _of_membership(
        conn, grant["user_id"], grant["workspace_id"],
        f"{_in_force('provisioning_requests', 'membership')} AND EXISTS (SELECT 1 FROM membership AS grant_ "
        f"WHERE grant_.request_id = ? AND {_settled_after('provisioning_requests', 'grant_')})",
        [grant["request_id"]],
    )
    # Read in queue order; settled order is what counts.
    later.sort(key=lambda r: (r["updated_at"], r["request_seq"]))
    return later[0] if later else None


def extends_a_time_bound_grant(conn: duckdb.DuckDBPyConnection, request: dict,
                               found_identity_id: str | None = None) -> bool:
    """Does ``request`` (a grant the member already satisfies) find its role given by a
    time-bound grant still in force? Then it extends that access to its own end.

    ``found_identity_id``: the workspace identity ``request`` found the role through (None: not
    known, as from the org listing). When the grants in force left other identities (someone
    removed the member and added them again by hand), the role found is the hand-made
    membership's, not a grant's: there is nothing to extend, and ending ``request`` must not take
    that membership away."""
    in_force = _of_membership(
        conn, request["user_id"], request["workspace_id"],
        f"role_id = ? AND request_id <> ? AND action = 'grant' AND expires_at IS NOT NULL "
        f"AND {_in_force('provisioning_requests', 'membership')}",
        [request["role_id"], request["request_id"]],
    )
    if not in_force or found_identity_id is None:
        return bool(in_force)
    granted = _granted_identities(conn, [grant["request_id"] for grant in in_force], request["role_id"])
    return not granted or found_identity_id in granted


def _granted_identities(conn: duckdb.DuckDBPyConnection, request_ids: list[str], role_id: str) -> set[str]:
    """The workspace identities the grants' own verified writes of ``role_id`` left (those known)."""
    if not table_exists(conn, RAW_SCHEMA, "provisioning_observations"):
        return set()
    placeholders = ", ".join("?" for _ in request_ids)
    return {identity for (identity,) in conn.execute(
        f"SELECT DISTINCT workspace_identity_id FROM {RAW_SCHEMA}.provisioning_observations "
        f"WHERE request_id IN ({placeholders}) AND role_id = ? AND coalesce(observed, 'verified') = 'verified' "
        "AND workspace_identity_id IS NOT NULL",
        [*request_ids, role_id],
    ).fetchall()}


def unsettled_in(path: Path) -> tuple[str | None, int, int]:
    """The organization a database file holds (``organization_of``) and its ``unsettled_work``,
    read with a short read-only connection. Raises ``duckdb.Error`` for a file that cannot be
    read (another process writing it, no database, one from before these columns)."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return (organization_of(conn), *unsettled_work(conn))


def unsettled_work(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(requests still open, time-bound grants whose end is still to be applied) in a database:
    what only a provisioning run of its org settles."""
    if not table_exists(conn, "main", "provisioning_requests"):
        return 0, 0
    open_requests = scalar(conn, f"SELECT count(*) FROM {_REQUESTS} WHERE status IN ({OPEN_STATUSES_SQL})")
    time_bound = scalar(conn, f"SELECT count(*) FROM {_REQUESTS} WHERE {_LIVE_TIME_BOUND}")
    return int(open_requests or 0), int(time_bound or 0)


def due_grants(conn: duckdb.DuckDBPyConnection, now: datetime) -> list[dict]:
    """The time-bound grants whose end ``queue_due_expiries`` would queue at ``now`` (read-only)."""
    return fetch_requests(conn, _DUE, [now, now])


def queue_due_expiries(conn: duckdb.DuckDBPyConnection, now: datetime) -> list[str]:
    """Queue the revoke of every time-bound grant due at ``now``; the revokes' ids. One
    transaction (the caller holds the writer lease)."""
    due = due_grants(conn, now)
    if not due:
        return []
    revokes = []
    conn.execute("BEGIN")
    try:
        for grant in due:
            revoke_id = new_id()
            conn.execute(
                "INSERT INTO main.provisioning_requests (request_id, action, user_id, user_email, workspace_id, "
                "workspace_name, role_id, role_name, status, reason, requested_by, requested_at, updated_at, "
                "requested_user, requested_workspace, requested_role, parent_request_id) "
                "VALUES (?, 'revoke', ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                [revoke_id, grant["user_id"], grant["user_email"], grant["workspace_id"], grant["workspace_name"],
                 grant["role_id"], grant["role_name"], EXPIRED_REASON, SYSTEM_REQUESTER, now, now,
                 grant["user_id"], grant["workspace_id"], grant["role_id"], grant["request_id"]],
            )
            record_event(conn, grant["request_id"], "expiry_queued",
                         {"revoke_request_id": revoke_id, "expires_at": grant["expires_at"]}, at=now)
            record_event(conn, revoke_id, "queued",
                         {"action": "revoke", "user_id": grant["user_id"], "workspace_id": grant["workspace_id"],
                          "role_id": grant["role_id"], "parent_request_id": grant["request_id"]}, at=now)
            revokes.append(revoke_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return revokes


def expiring_detail(grant: dict, org: str) -> str:
    """The ``detail`` of ``access.expiring``: when, and how to keep the access (read in a chat
    channel, it must say what to do). The command names the grant by ids, which need no quoting
    in a shell, and the org unless it is the single-org ``default``."""
    which_org = f" --org {org}" if org and org != "default" else ""
    return (f"expires at {iso_minutes(grant['expires_at'])}: to keep it, ask for it again before then "
            f"(`langsmith-access request grant --user {grant['user_id']} --workspace {grant['workspace_id']} "
            f"--role {grant['role_id']}{which_org}`, with --duration or --until as the policy allows)")


def warn_expiring(
    conn: duckdb.DuckDBPyConnection, now: datetime, warning: timedelta, notifier: Notifier
) -> list[str]:
    """Send ``access.expiring`` once for every time-bound grant ending within ``warning`` of
    ``now`` (an ``expiry_warned`` event marks it sent); the grants' ids. Nothing without a
    webhook."""
    if not notifier.enabled:
        return []
    soon = to_warn(conn, now, warning)
    if not soon:
        return []
    conn.execute("BEGIN")
    try:
        for grant in soon:
            record_event(conn, grant["request_id"], "expiry_warned", {"expires_at": grant["expires_at"]}, at=now)
            notifier.notify(conn, "access.expiring", at=now, request_id=grant["request_id"],
                            user=grant["user_email"] or grant["user_id"], workspace=grant["workspace_name"],
                            role=grant["role_name"], detail=expiring_detail(grant, notifier.org))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [g["request_id"] for g in soon]


def expiry_work_due(conn: duckdb.DuckDBPyConnection, now: datetime, warning: timedelta | None) -> list[str]:
    """Ids of what a provisioning run would act on before taking the queue (read-only): grants
    due to expire, requests past their approval deadline, and (``warning`` given) grants to warn
    about. Empty before anything was queued."""
    # Never queued, or a copy from before access governance.
    if "expires_at" not in column_names(conn, "main", "provisioning_requests"):
        return []
    due = [r["request_id"] for r in due_grants(conn, now)]
    due += [r["request_id"] for r in overdue_requests(conn, now)]
    if warning is not None:
        due += [r["request_id"] for r in to_warn(conn, now, warning)]
    return due


def unlisted_org_warnings(orgs: Orgs) -> list[str]:
    """A warning (printed after ``warning: ``) for each folder beside the orgs file's org
    folders that no entry names (an org removed from the file, or a slug renamed) whose database
    still holds open requests or time-bound grants to end: no run settles them any more, so
    that access never ends."""
    if orgs.source is None or not orgs.orgs:
        return []
    first = orgs.orgs[0]
    root, name = first.orgs_root, first.duckdb_path.name
    try:
        if root is None or not root.is_dir():
            return []
        # The root itself too: the database the single-org variables used, left where it was when
        # the org moved into the orgs file (README: "Moving an org ... into an orgs file").
        folders = [root, *sorted(p for p in root.iterdir() if p.name not in orgs.slugs)]
    except OSError:
        return []  # the orgs' folder cannot be looked at: each org's own run says so
    warnings = []
    for folder in folders:
        # The root's own database is named as LANGSMITH_ACCESS_DUCKDB is; every org folder's, alike.
        database = AccessDatabase(orgs.single_org_duckdb_path if folder == root and orgs.single_org_duckdb_path
                                  else folder / name)
        try:
            if not folder.is_dir():
                continue
            path = database.working_path if database.working_path.exists() else database.path
            if not path.exists():
                continue
        except OSError:
            continue  # a folder that cannot be looked at (no permission): nothing to say of it
        try:
            held, open_requests, time_bound = unsettled_in(path)
        except duckdb.Error:
            continue  # not one of ours, or busy: nothing to say of it
        if not open_requests and not time_bound:
            continue
        parts = ([_counted(open_requests, "open request")] if open_requests else []) + (
            [f"{_counted(time_bound, 'time-bound grant')} still to end"] if time_bound else [])
        work = " and ".join(parts)
        if folder == root:
            warnings.append(_single_org_database_warning(orgs, database, held, work))
            continue
        warnings.append(
            f"{folder} holds organization {held or '(unknown)'}'s database, which no entry of "
            f"{orgs.source} names, with {work}: no run settles them now (a time-bound grant's access "
            f"does not end). Fix: give that org its entry back with slug {folder.name!r} (then run "
            f"`langsmith-access provision --org {folder.name}`), or, if it was renamed, move "
            f"{folder}'s files into its new slug's folder.")
    return warnings


def _single_org_database_warning(orgs: Orgs, database: AccessDatabase, held: str | None, work: str) -> str:
    """``unlisted_org_warnings``'s warning for the single-org database beside the org folders:
    no run under the orgs file settles what it holds. The fix names the entry of its org where
    one does: moved into that slug's folder before the slug's first run, its queue goes on."""
    entry = next((org for org in orgs if held and org.organization_id and same_organization(org.organization_id, held)),
                 None)
    if entry is None:
        fix = "give its org an entry in that file, and move them into that slug's folder before its first run"
    elif AccessDatabase.of_org(entry).working_path.exists() or entry.duckdb_path.exists():
        fix = (f"org {entry.slug!r} has started a database of its own since, so settle them with "
               f"{ORGS_FILE_VARIABLE} unset and the single-org variables set (`langsmith-access provision`)")
    else:
        fix = f"move them into {entry.duckdb_path.parent} before the first run of org {entry.slug!r}"
    return (f"{database.path} (the single-org variables' database) holds organization {held or '(unknown)'}'s "
            f"data, with {work}: no run settles them while {orgs.source} is used (a time-bound grant's access "
            f"does not end). Fix: its files are everything named {database.path.stem}* beside it, and logs/; {fix}.")


def _counted(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"
