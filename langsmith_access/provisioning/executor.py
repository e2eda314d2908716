"""Carry out claimed requests against LangSmith: validate live, read, plan, apply, verify, audit.

Plain Python (no Dagster). Every decision and every API call is recorded in
``provisioning_events`` as it happens, so a run killed at any point leaves a trail the next run
settles from live state:

- ``write_sent`` is recorded *before* a write goes out; a request found ``in_progress`` with a
  ``write_sent`` and no answer is settled by reading live state, never by blindly re-sending.
- A write whose answer was lost (5xx, dropped connection), or that a conflict refused (someone
  changed the membership), is verified by a read before any retry, and after the last attempt
  before the request is called failed. A member found as asked after refused writes alone was
  made so by someone else: ``already_satisfied`` (the change recorded as found), not applied.

What a settled request verified (the member's live role in the workspace, or none) is recorded in
the raw table ``raw.provisioning_observations``, in the same transaction as the request's
status; so is what a request found changed by hand where it contradicts ``grants`` (before its
write, or instead of one when already satisfied, or when it failed holding another role, or when
live validation found the member gone from the org: drift, which the refresh then lists; observed
``found``, not ``verified``). Provisioning never writes ``grants``: dbt builds it from the latest
sync plus these observations (the refresh after a provisioning run, and every sync).

Two ways to read live state, cheapest first for the batch at hand (``Provisioner.process_all``):

- per request: look the member up, read their membership in the workspace, write, read it back
  (three reads and a write);
- per batch, for a batch of 50 requests or more when that costs fewer calls: one listing of
  the whole org (the enriched members
  route, 500 people a page) validates every member and gives every live role before the first
  write, and one more listing after the last write verifies every request at once. A change of
  role or a removal still reads the member's workspace identity (which the listing lacks) right
  before its write, and a request the second listing does not confirm is read back on its own
  before it is called failed. A membership with more than one request in the batch is read,
  written and verified live, request by request, in queue order: the listing, taken before
  the first write, does not show what the earlier one did.

Access governance (DESIGN.md section 10): an applied grant records the member's role before it
(``prior_role_id``) and, when time-bound, when it ends (``expires_at``, counted from when it was
verified, or from the write a run that died sent for it); so does a grant found already
satisfied by a time-bound grant of the same role (it extends it). The revoke that ends a grant
(a request with a ``parent_request_id``) is planned by ``plan_expiry`` from that prior role, so
it undoes only what the grant did, unless a later request took the membership over
(``expiry.successor``): a later grant built on the granted role inherits the prior role and ends
with it, a later revoke already ended it. Settled requests raise their notifications
(``request.applied``, ``request.failed``, ``access.expired``) in the same transaction as their
status.

The rest of the access picture (DESIGN.md section 9): a change to a member SCIM provisions is
applied with a ``scim_warning`` event first (the identity provider may overwrite it at its next
push), and a revoke for an Organization Admin settles saying that Admin access remains through
the organization role (implicit Admin in every workspace).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeGuard

import duckdb

from langsmith_access.governance.notifications import Notifier
from langsmith_access.langsmith import (
    ConflictError,
    EnrichedMember,
    LangSmithClient,
    LangSmithError,
    NotFoundError,
    OrgMember,
    PermissionDeniedError,
    Role,
    TransientError,
    UnexpectedResponseError,
    Workspace,
)
from langsmith_access.langsmith.client import PAGE_SIZE
from langsmith_access.langsmith.refusals import explain_write_refusal, is_write_refusal
from langsmith_access.provisioning import expiry, queue
from langsmith_access.provisioning.planner import (
    ADD,
    CHANGE_ROLE,
    NOTHING,
    REMOVE,
    Plan,
    desired_role,
    plan_change,
    plan_expiry,
)
from langsmith_access.store.raw_tables import RAW_SCHEMA, column_names, unbuilt_observations_query
from langsmith_access.store.sql import first_row, scalar, table_exists
from langsmith_access.sync.extract import NotEveryWorkspaceListed, require_every_workspace_listed

MAX_WRITE_ATTEMPTS = 3
ORG_LISTING_PATH = "/api/v1/platform/orgs/current/members"
WORKSPACE_MEMBERS_PATH = "/api/v1/workspaces/current/members/active"
ORG_MEMBER_LOOKUP_PATH = "/api/v1/orgs/current/members/active"
WORKSPACES_PATH = "/api/v1/workspaces"
# The status of every read an event records: the client returns only a 2xx answer (anything else
# raises, after its retries), and every read here is a GET answered 200.
READ_OK = 200
# Reads per request in the per-request mode: member lookup, live read, verifying read.
READS_PER_REQUEST = 3
# A batch gets one more thread per this many requests, up to max_concurrency.
REQUESTS_PER_THREAD = 16
# Smaller batches read per request even where org listings would cost fewer calls: each of
# their requests settles as soon as it is verified, and the saving is a few dozen calls at most.
MIN_REQUESTS_FOR_ORG_LISTING = 50
# How long a workspace read again after a 403 or 404 and found still there is taken to be there
# by the run's later 403s and 404s in it: a long run reads again (it may be deleted since).
WORKSPACE_FOUND_TRUSTED_SECONDS = 60.0

# Writes refused (409/404: someone changed the membership meanwhile, into what the request asks)
# or surely never sent: nothing of what the member holds is this request's doing.
SOMEONE_ELSE_MADE_IT_SO = "made so by someone else; no write of this request took effect"


@dataclass
class Outcome:
    request_id: str
    status: str  # applied | already_satisfied | rejected | failed | (dry run: planned)
    detail: str
    plan: Plan | None = None
    writes: int = 0


@dataclass
class LiveDirectory:
    """Roles and workspaces as LangSmith has them now: read once per batch."""

    roles: dict[str, Role]
    workspaces: dict[str, Workspace]

    @classmethod
    def read(cls, client: LangSmithClient) -> LiveDirectory:
        return cls(
            roles={r.id: r for r in client.list_roles()},
            workspaces={w.id: w for w in client.list_workspaces(include_deleted=True)},
        )

    @property
    def role_names(self) -> dict[str, str]:
        return {role_id: role.display_name for role_id, role in self.roles.items()}


@dataclass(frozen=True)
class Live:
    """A member's live role in one workspace, and their workspace identity id (which the
    change-role and remove writes need) when the read that found it gives it."""

    role_id: str | None
    id: str | None


@dataclass
class OrgSnapshot:
    """The whole org as LangSmith lists it now, from one paged listing (the enriched members
    route): the active members, and each member's role in each workspace."""

    members: dict[str, EnrichedMember]  # ls_user_id -> active (accepted) member
    roles: dict[tuple[str, str], str | None]  # (ls_user_id, workspace_id) -> workspace role id
    pages: int

    @classmethod
    def read(cls, client: LangSmithClient) -> OrgSnapshot | None:
        """None where this install cannot list the whole org that way (no such route, or the
        key does not see every workspace's memberships on some page of the listing)."""
        sink = _EveryPageListsEveryWorkspace(client)
        try:
            listing = client.stream_enriched_members(sink)
        except (NotFoundError, NotEveryWorkspaceListed):
            return None
        members: dict[str, EnrichedMember] = {}
        roles: dict[tuple[str, str], str | None] = {}
        for person in sink.people:
            if person.is_pending or person.ls_user_id is None:
                continue  # an invite is not a member
            members[person.ls_user_id] = person
            for membership in person.workspace_memberships:
                roles[(person.ls_user_id, membership.workspace_id)] = membership.role_id
        return cls(members, roles, listing.pages)

    def live(self, user_id: str, workspace_id: str) -> Live | None:
        if (user_id, workspace_id) not in self.roles:
            return None
        return Live(self.roles[(user_id, workspace_id)], None)


class _EveryPageListsEveryWorkspace:
    """A ``ListingSink`` that keeps the org listing's people and refuses
    (``NotEveryWorkspaceListed``) any page that does not list every workspace's memberships, as
    the sync does. The key's role may change while the listing is read: a first page that lists
    only some workspaces stays partial whatever the last page says."""

    def __init__(self, client: LangSmithClient):
        self.client = client
        self.people: list[EnrichedMember] = []

    def begin_scan(self) -> None:
        self.people = []

    def add_page(self, records: Sequence[EnrichedMember], headers: Mapping[str, str]) -> None:
        require_every_workspace_listed(headers, self.client)
        self.people.extend(records)


@dataclass
class _Written:
    """A request whose write went out and was answered; the batch's second listing verifies it."""

    request: dict
    plan: Plan
    writes: int
    identity_id: str | None  # the member's workspace identity after the write (None: removed)


VERIFIED, FOUND = "verified", "found"  # raw.provisioning_observations.observed


@dataclass(frozen=True)
class Observation:
    """A member's role in a workspace as provisioning verified it (role_id None: not a member).
    One row of ``raw.provisioning_observations``."""

    request_id: str
    run_id: str
    verified_at: datetime
    workspace_id: str
    user_id: str
    role_id: str | None
    workspace_identity_id: str | None
    observed: str = VERIFIED  # or FOUND: seen, not caused, by the request (see raw_tables.py)


def record_observations(conn: duckdb.DuckDBPyConnection, observations: list[Observation]) -> None:
    """Append observations to ``raw.provisioning_observations`` (in the caller's transaction)."""
    columns = column_names("provisioning_observations")
    conn.executemany(
        f"INSERT INTO {RAW_SCHEMA}.provisioning_observations ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})",
        [
            [queue.new_id(), o.request_id, o.run_id, o.verified_at, o.workspace_id, o.user_id,
             o.role_id, o.workspace_identity_id, o.observed]
            for o in observations
        ],
    )


ORGANIZATION_ADMIN = "ORGANIZATION_ADMIN"
SCIM_WARNING = (
    "SCIM provisions this member: the identity provider may overwrite this change at its next "
    "push. To make it last, change the member's SCIM groups in the identity provider."
)
# A failed request's status_detail says the fix (DESIGN.md section 4), this one too.
VERIFICATION_FIX = (
    "Fix: the change did not hold (LangSmith did not keep it, or someone or SCIM changed the "
    "membership right after): check the member's role in the workspace in LangSmith, then queue "
    "the request again if it is still wanted."
)
ADMIN_ACCESS_REMAINS = (
    "Admin access to this workspace remains through the organization role: an Organization "
    "Admin is an implicit Admin of every workspace (change the organization role in LangSmith to "
    "take it away)"
)


def is_scim_provisioned(member: EnrichedMember | OrgMember) -> bool:
    """SCIM provisions the member: one of their login methods was pushed by SCIM."""
    return any(method.provisioning_method == "scim" for method in member.login_methods)


def _is_outage(error: LangSmithError) -> TypeGuard[TransientError]:
    """LangSmith gave no usable answer after every retry, and no write is in doubt: an outage,
    not a problem of the request (a write whose answer was lost is re-read, never this)."""
    return isinstance(error, TransientError) and not error.maybe_applied


class Rejected(Exception):
    """Live validation refused the request (the message says why)."""


class MemberGone(Rejected):
    """The member is no active org member any more: they hold no role in any workspace."""


@dataclass
class Provisioner:
    client: LangSmithClient
    conn: duckdb.DuckDBPyConnection  # the working database; the caller holds the writer lease
    run_id: str
    dry_run: bool = False
    log: Callable[[str], None] = lambda line: None
    # Read by the first process() or process_all(): see the ``directory`` property.
    _directory: LiveDirectory | None = field(default=None, init=False, repr=False)
    # Set for a batch read through org listings (see the module docstring); None: per request.
    snapshot: OrgSnapshot | None = None
    # Revokes whose member is an Organization Admin: their outcome says what access remains.
    _admin_revokes: set[str] = field(default_factory=set)
    outcomes: list[Outcome] = field(default_factory=list)
    _written: list[_Written] = field(default_factory=list)
    # Audit events, status changes and verified states not yet written to the database: written
    # together, in one transaction, before each write goes out and when requests settle.
    _events: list[tuple] = field(default_factory=list)
    # Group commit: events are appended under a lock of their own, so threads keep adding theirs
    # while another thread commits; a thread whose event a later commit already wrote skips its
    # own commit (a 500-request batch sends 475 writes, each needing its write-ahead commit of
    # ~6-12 ms; one at a time under one lock, they were the apply step's bottleneck).
    _events_lock: threading.Lock = field(default_factory=threading.Lock)
    _events_added: int = 0  # events appended so far (the sequence number of the last one)
    _events_committed: int = 0  # the sequence number of the last event committed
    _clock_lock: threading.Lock = field(default_factory=threading.Lock)
    _statuses: list[tuple] = field(default_factory=list)
    _observations: list[Observation] = field(default_factory=list)
    # Applied grants' (request id, prior role id, expires_at), and notifications to raise: written
    # with the statuses.
    _grant_terms: list[tuple[str, str | None, datetime | None]] = field(default_factory=list)
    _notices: list[tuple[str, datetime, dict]] = field(default_factory=list)
    notifier: Notifier = field(default_factory=Notifier.off)
    # Each request being processed, by id; the first plan of this run that needed a write, by
    # request id (its current role is what the member had before the grant).
    _requests: dict[str, dict] = field(default_factory=dict)
    _first_write_plans: dict[str, Plan] = field(default_factory=dict)
    # The grant each expiry revoke ends, by the revoke's id (None: no such row), read once.
    _parent_grants: dict[str, dict | None] = field(default_factory=dict)
    # Expiry revokes whose grant a later request took over: that request, and the prior role it
    # inherits when the revoke settles.
    _taken_over: dict[str, tuple[dict, str | None]] = field(default_factory=dict)
    # Expiry revokes that end no access (it goes on, or a revoke already ended it): no
    # access.expired.
    _access_goes_on: set[str] = field(default_factory=set)
    # Memberships (user, workspace) with more than one request in the batch (process_all).
    _chained: set[tuple[str, str]] = field(default_factory=set)
    _recovered: set[str] = field(default_factory=set)  # requests an earlier run sent a write for
    # Workspaces read again after a 403 or 404 and found still there, and when (time.monotonic):
    # a refused write in each of a thousand requests costs no thousand readings.
    _workspaces_found_shared: dict[str, float] = field(default_factory=dict)
    # Writes earlier runs sent, per request of the batch, read in one query by process_all (a
    # query per request took ~1 ms each, under the lock the batch's threads share).
    _earlier_write_counts: dict[str, int] | None = None
    _last_at: datetime | None = None
    _log_lines: list[str] = field(default_factory=list)
    # Set when LangSmith stopped answering (a TransientError on a read, or on a write that did
    # not go out): the run stops, and ``release_unsettled`` hands what it did not settle back.
    unreachable: TransientError | None = None
    # Set when the run is stopping (cancelled from the Dagster UI, Ctrl-C, an unexpected error
    # in one thread): the other threads take no further request, as one thread would not.
    _stopping: bool = False
    _writes_sent_now: set[str] = field(default_factory=set)  # requests this run sent a write for
    # Guards the buffers above, ``outcomes``, ``_written`` and the database connection: a large
    # batch is processed by several threads.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def directory(self) -> LiveDirectory:
        """Roles and workspaces as LangSmith has them now, read once by the first request."""
        if self._directory is None:
            raise RuntimeError("Provisioner.directory is read by process() or process_all(): call one first")
        return self._directory

    def process_all(self, requests: list[dict]) -> list[Outcome]:
        """Process a batch, reading live state the cheaper way for its size; returns every
        request's outcome once each is final (or planned, in a dry run).

        A large batch is processed by up to ``max_concurrency`` threads. The requests for one
        user in one workspace stay in one thread, in queue order (a grant then a revoke of the
        same membership must not race); requests for different memberships are independent.
        """
        if not requests:
            return self.outcomes
        try:
            if self._directory is None:
                self._directory = LiveDirectory.read(self.client)
            if self.snapshot is None and self._org_listing_is_cheaper(len(requests)):
                self.snapshot = OrgSnapshot.read(self.client)
        except TransientError as error:
            self._stop_for(error)
            return self.outcomes
        self._earlier_write_counts = self._count_earlier_writes([r["request_id"] for r in requests])
        chains: dict[tuple[str, str], list[dict]] = {}
        for request in requests:
            chains.setdefault((request["user_id"], request["workspace_id"]), []).append(request)
        # A membership with several requests changes under the batch's listing (taken before
        # any write): each of them reads, writes and verifies live, in order.
        self._chained = {membership for membership, chain in chains.items() if len(chain) > 1}
        workers = min(
            self.client.settings.max_concurrency, len(chains),
            math.ceil(len(requests) / REQUESTS_PER_THREAD),
        )
        try:
            self._process_in_threads(requests, chains.values(), workers)
            self.finish()
        except BaseException:
            self._commit_before_stopping()
            raise
        self._emit_logs()
        return self.outcomes

    def _process_in_threads(self, requests: list[dict], chains: Iterable[list[dict]], workers: int) -> None:
        """Every request, in queue order in this thread, or each membership's chain of requests
        in one of ``workers`` threads."""
        if workers <= 1:
            for request in requests:
                self.process(request)
                self._emit_logs()
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provisioning") as pool:
            futures: list[Future[None]] = []
            try:
                # Submitted inside the try: an interrupt while they are submitted stops the
                # chains already submitted too (leaving the pool waits for every one of them).
                futures.extend(pool.submit(self._process_chain, chain) for chain in chains)
                for future in as_completed(futures):
                    future.result()  # an unexpected error stops the run, as it would in one thread
                    self._emit_logs()
            except BaseException:
                # The pool would otherwise run every chain to its end before the error (or
                # the interrupt) got out: the requests under way finish, no other starts.
                self._stopping = True
                for future in futures:
                    future.cancel()
                raise

    def _commit_before_stopping(self) -> None:
        """The run stops on an unexpected error (or is cancelled): what it did and has not
        recorded yet (the answer of its last write, its reads, requests verified) is recorded
        still, unless the database is what failed (the caller raises the error that stops the run)."""
        try:
            self._commit()
        except Exception as error:
            self.log(f"the run's last events could not be recorded ({type(error).__name__}: {error})")
        self._emit_logs()

    def _process_chain(self, requests: list[dict]) -> None:
        try:
            for request in requests:
                self.process(request)
        except BaseException:
            # Stop the run from here, before this thread takes another chain: the calling thread
            # may wake to stop it well after (a busy machine), the other threads going on meanwhile.
            self._stopping = True
            raise

    def _emit_logs(self) -> None:
        """Log settled outcomes from the calling (main) thread."""
        with self._lock:
            lines, self._log_lines = self._log_lines, []
        for line in lines:
            self.log(line)

    def process(self, request: dict) -> Outcome | None:
        """One request. In the per-batch mode a request whose write went out is settled by
        ``finish()`` (None here); every other outcome is settled at once."""
        if self.unreachable is not None:
            return None  # LangSmith stopped answering: left for release_unsettled
        if self._stopping:
            return None  # the run is stopping: left claimed, the next run takes it
        if self._directory is None:
            self._directory = LiveDirectory.read(self.client)
        request_id = request["request_id"]
        with self._lock:
            self._requests[request_id] = request
        try:
            outcome = self._process(request)
        except Rejected as rejection:
            if isinstance(rejection, MemberGone):
                # Gone from the org, so from the workspace: grants shows it now, not at the next
                # sync (a grant's end finding them gone would otherwise leave its access shown).
                self._observe_if_changed(request, None)
            outcome = self._refused(request, rejection)
        except LangSmithError as error:
            if _is_outage(error):
                self._stop_for(error)  # not this request's fault: it waits for the next run
                return None
            try:
                gone = self._workspace_gone(request, error)
            except TransientError as outage:  # the workspaces could not be read again: no answer
                self._stop_for(outage)
                return None
            if gone is not None:
                outcome = self._refused(request, gone)
            else:
                outcome = Outcome(request_id, "failed", self._failure_detail(error, request))
        if isinstance(outcome, _Written):
            with self._lock:
                self._written.append(outcome)
            return None
        self._settle(outcome)
        return outcome

    @staticmethod
    def _refused(request: dict, rejection: Rejected) -> Outcome:
        if request.get("parent_request_id"):
            # The end of a time-bound grant whose member, workspace or role is gone: the
            # access it gave is gone with them.
            return Outcome(request["request_id"], "already_satisfied", f"{rejection}: nothing to undo")
        return Outcome(request["request_id"], "rejected", str(rejection))

    def _workspace_gone(self, request: dict, error: LangSmithError) -> Rejected | None:
        """After a 403 or 404: whether the request's workspace was deleted (or went out of the
        key's sight) since this run read the workspaces, as its member routes then answer. One
        more read of the workspaces says; if so, the request is refused as validation refuses it
        (None: the workspace is there, and the error stands). Raises the ``TransientError`` of
        that read when LangSmith does not answer it."""
        if not isinstance(error, (NotFoundError, PermissionDeniedError)):
            return None
        with self._lock:
            found_at = self._workspaces_found_shared.get(request["workspace_id"])
            if found_at is not None and time.monotonic() - found_at < WORKSPACE_FOUND_TRUSTED_SECONDS:
                return None
        self.client.take_retried_attempts()
        try:
            workspaces = {w.id: w for w in self.client.list_workspaces(include_deleted=True)}
        except LangSmithError as read_error:
            if _is_outage(read_error):
                raise  # LangSmith stopped answering: the run stops, the request waits for the next
            return None  # no better answer than the error itself
        self.directory.workspaces = workspaces  # later requests of this run are refused before any call
        workspace = workspaces.get(request["workspace_id"])
        self._event(request["request_id"], "workspaces_read", {
            "method": "GET", "path": WORKSPACES_PATH, "status_code": READ_OK,
            "workspace_id": request["workspace_id"], "listed": workspace is not None,
            "deleted": workspace is None or not workspace.is_shared, **_retried(self.client),
        })
        try:
            _shared_workspace(request, workspace)
        except Rejected as refusal:
            return refusal
        with self._lock:
            self._workspaces_found_shared[request["workspace_id"]] = time.monotonic()
        return None

    def _failure_detail(self, error: LangSmithError, request: dict) -> str:
        """The error and its fix (status_detail holds the fix when a request failed): for a refused
        write, its cause and fix (plan or key permissions)."""
        if not is_write_refusal(error):
            return f"{error}. Fix: {error.fix}"
        directory = self._directory
        role = directory.roles.get(request.get("role_id") or "") if directory else None
        plan = self._first_write_plans.get(request["request_id"])
        held_role = directory.roles.get(plan.current_role_id or "") if directory and plan else None
        if directory and plan and plan.target_role_id and plan.target_role_id != request.get("role_id"):
            # An expiry restoring the role a grant replaced writes that role, not the request's.
            role = directory.roles.get(plan.target_role_id) or role
        workspace = directory.workspaces.get(request.get("workspace_id") or "") if directory else None
        try:
            org_info = self.client.organization_info_once()
        except LangSmithError:
            org_info = None
        return explain_write_refusal(
            error, role=role, org_info=org_info, held_role=held_role,
            key_role_there=directory.roles.get(workspace.role_id or "") if directory and workspace else None,
        ) or str(error)

    def finish(self) -> None:
        """Verify every write of the batch with one more listing of the org, and settle them.
        Once LangSmith has stopped answering, a write not verified yet stays in progress: the
        next run settles it from LangSmith's state."""
        if not self._written or self.unreachable is not None:
            return
        written, self._written = self._written, []
        try:
            after = OrgSnapshot.read(self.client)
        except LangSmithError as error:
            if _is_outage(error):
                self._stop_for(error)
                return
            self.log(f"the verifying listing failed ({error}); reading each request back instead")
            after = None
        for item in written:
            try:
                outcome = self._verify(item, after)
            except LangSmithError as error:
                if _is_outage(error):
                    self._stop_for(error)
                    break
                outcome = Outcome(item.request["request_id"], "failed", self._failure_detail(error, item.request),
                                  item.plan, writes=item.writes)
            self._settle(outcome, commit=False)
        self._commit()

    def _stop_for(self, error: TransientError) -> None:
        with self._lock:
            if self.unreachable is None:
                self.unreachable = error
                self._log_lines.append(f"LangSmith stopped answering ({error}): the run stops here")

    def release_unsettled(self, requests: list[dict], *, failure: Exception | None = None) -> list[str]:
        """After LangSmith stopped answering (or the run failed with ``failure``, such as an
        endpoint that is no LangSmith API): each of ``requests`` (claimed by this run) that has
        no outcome goes back to ``pending``, unless a write went out for it (this run's, or a
        dead earlier run's), which then stays ``in_progress`` for the next run to settle from
        live state. Each says why in its status_detail. Returns the ids released."""
        settled = {outcome.request_id for outcome in self.outcomes}
        unsettled = [r["request_id"] for r in requests if r["request_id"] not in settled]
        # A write this run sent, or an earlier run (one that died) did: LangSmith's state decides.
        written = self._writes_sent_now | {
            request_id for request_id, count in self._count_earlier_writes(unsettled).items() if count}
        stopped_by = failure if failure is not None else self.unreachable
        fix = getattr(failure, "fix", None)
        cause = (f"the run failed ({failure}{'; fix: ' + fix if fix else ''})" if failure is not None
                 else f"LangSmith stopped answering ({self.unreachable})")
        released, statuses = [], []
        for request_id in unsettled:
            if request_id in written:
                statuses.append((request_id, "in_progress",
                                 f"a write went out before {cause}; the next provisioning run "
                                 "settles it from LangSmith's state"))
            else:
                released.append(request_id)
                statuses.append((request_id, "pending",
                                 f"not settled: {cause}; pending again, the next provisioning run "
                                 "tries it"))
                self._event(request_id, "released", {"error": str(stopped_by)})
        with self._lock:
            self._statuses.extend(statuses)
        self._commit()
        return released

    def _settle(self, outcome: Outcome, *, commit: bool = True) -> None:
        if outcome.request_id in self._admin_revokes and outcome.status in ("applied", "already_satisfied"):
            outcome.detail = f"{outcome.detail}; {ADMIN_ACCESS_REMAINS}"
        with self._lock:
            if not self.dry_run:
                self._event(outcome.request_id, "settled", {"status": outcome.status, "detail": outcome.detail})
                self._statuses.append((outcome.request_id, outcome.status, outcome.detail))
                self._governance(outcome)
                if commit:
                    self._commit()
            self.outcomes.append(outcome)
            self._log_lines.append(f"{outcome.status:<17} {outcome.request_id}  {outcome.detail}")

    def _governance(self, outcome: Outcome) -> None:
        """A settled request's part in access governance: an applied grant's prior role and end,
        and the notification its outcome raises. Buffered (the caller holds the lock)."""
        request = self._requests.get(outcome.request_id)
        if request is None:  # an ad-hoc dry-run change, never queued
            return
        at = self._now()
        parent = request.get("parent_request_id")
        if request["action"] == "grant" and not parent:
            if outcome.status == "applied":
                expires_at = queue.terms_of(request).expires_at(self._earlier_write_at(outcome.request_id) or at)
                self._grant_terms.append((outcome.request_id, self._prior_role_id(outcome.request_id), expires_at))
            elif outcome.status == "already_satisfied":
                # The member has the role already: a later grant's end undoes nothing of this one
                # (prior role = the role), and when a time-bound grant of the role gave it, this one
                # extends it (to its own end) and takes what that grant replaced when it ends.
                found = outcome.plan.workspace_identity_id if outcome.plan else None
                extends = expiry.extends_a_time_bound_grant(self.conn, request, found)
                expires_at = queue.terms_of(request).expires_at(at) if extends else None
                self._grant_terms.append((outcome.request_id, request["role_id"], expires_at))
        # Done (a plan with nothing to write settles applied when an earlier run had written for it).
        done = outcome.status in ("applied", "already_satisfied")
        taken_over = self._taken_over.pop(outcome.request_id, None)
        if taken_over is not None and done:
            later, prior_role_id = taken_over
            if later["action"] == "grant" and later["prior_role_id"] == request["role_id"]:
                self._grant_terms.append((later["request_id"], prior_role_id, later["expires_at"]))
        if outcome.request_id in self._access_goes_on and done:
            return
        fields = {"request_id": outcome.request_id, "user": request["user_email"] or request["user_id"],
                  "workspace": request["workspace_name"], "role": request["role_name"], "detail": outcome.detail}
        if parent and done:
            # The grant's access has ended (or had already been changed by someone): about the grant.
            fields.update(request_id=parent, detail=f"{outcome.detail} (revoke {outcome.request_id})")
            self._notices.append(("access.expired", at, fields))
        elif outcome.status == "applied":
            self._notices.append(("request.applied", at, fields))
        elif outcome.status in ("failed", "rejected"):
            self._notices.append(("request.failed", at, fields))

    def _prior_role_id(self, request_id: str) -> str | None:
        """The member's role before this grant's first write (None: not a member). A write sent
        by an earlier run that died is found in its ``planned`` events."""
        plan = self._first_write_plans.get(request_id)
        if plan is not None and request_id not in self._recovered:
            return plan.current_role_id
        for (detail,) in self.conn.execute(
            "SELECT detail FROM main.provisioning_events WHERE request_id = ? AND kind = 'planned' "
            'ORDER BY "at", event_id',
            [request_id],
        ).fetchall():
            planned = json.loads(detail)
            if planned.get("plan") in (ADD, CHANGE_ROLE):
                return planned.get("current_role_id")
        return plan.current_role_id if plan is not None else None

    def _commit(self, through: int | None = None) -> None:
        """Write the buffered events, status changes, observations, applied grants' terms and
        notifications in one transaction. ``through``: the caller needs only the events up to
        that sequence number written, and returns at once if another commit wrote them."""
        with self._lock:
            with self._events_lock:
                if through is not None and self._events_committed >= through:
                    return
                events, self._events = self._events, []
                added = self._events_added
            if self.dry_run or not (events or self._statuses or self._observations):
                return
            self.conn.execute("BEGIN")
            try:
                # A few statements per commit, whatever the number of rows (a batch of 500
                # requests commits ~5,000 events at once).
                queue.record_events(self.conn, events, run_id=self.run_id)
                queue.set_statuses(self.conn, self._statuses, self.run_id)
                if self._observations:
                    record_observations(self.conn, self._observations)
                queue.set_grant_terms(self.conn, self._grant_terms)
                for event, at, fields in self._notices:
                    self.notifier.notify(self.conn, event, at=at, **fields)
                self.conn.execute("COMMIT")
            except BaseException:
                try:
                    self.conn.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # a COMMIT that failed ended the transaction itself: its error is the one to raise
                with self._events_lock:
                    self._events[:0] = events  # still to be written
                raise
            with self._events_lock:
                self._events_committed = added
            self._statuses.clear()
            self._observations.clear()
            self._grant_terms.clear()
            self._notices.clear()

    def _org_listing_is_cheaper(self, requests: int) -> bool:
        """Two listings of the org (before and after) against three reads per request, sized
        from the latest sync's members and invites; only for batches of at least
        ``MIN_REQUESTS_FOR_ORG_LISTING``."""
        if requests < MIN_REQUESTS_FOR_ORG_LISTING:
            return False
        try:
            people = scalar(
                self.conn, "SELECT (SELECT count(*) FROM main.users) + (SELECT count(*) FROM main.pending_invites)"
            )
        except duckdb.Error:  # never synced: no idea of the org's size
            return False
        pages = max(1, math.ceil((people + 1) / PAGE_SIZE))
        return 2 * pages < READS_PER_REQUEST * requests

    # ------------------------------------------------------------------ steps

    def _process(self, request: dict) -> Outcome | _Written:
        request_id = request["request_id"]
        user_id, workspace_id = request["user_id"], request["workspace_id"]
        member = self._validate_live(request)
        # A write this request sent earlier (by a run that died) is settled from live state.
        earlier_writes = self._earlier_writes(request_id)
        if earlier_writes:
            with self._lock:
                self._recovered.add(request_id)

        snapshot = self.snapshot if (user_id, workspace_id) not in self._chained else None
        # The last write was refused (409/404) or surely never sent: a role that changed since the
        # read before it was changed by someone else, not by this request.
        last_write_refused, read_before = False, None
        # Whether a write of this request may have changed the membership: one whose answer was
        # lost, or an earlier run's. Refused or surely unsent writes changed nothing, so a member
        # found as asked after them was made so by someone else, not by this request.
        may_have_written = bool(earlier_writes)
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            if snapshot is not None and attempt == 1 and not earlier_writes:
                live = self._listed_live(snapshot, request_id, workspace_id, user_id)
            else:
                live = self._read_live(request_id, workspace_id, user_id)
            plan = self._plan(request, live)
            if plan.needs_write and plan.kind != ADD and plan.workspace_identity_id is None:
                # The listing has no workspace identity id, which this write needs: read it.
                live = self._read_live(request_id, workspace_id, user_id)
                plan = self._plan(request, live)
            self._event(request_id, "planned", {"plan": plan.kind, "explanation": plan.explanation,
                                                "current_role_id": plan.current_role_id, "attempt": attempt})
            if self.dry_run:
                return Outcome(request_id, "planned", plan.explanation, plan)
            if plan.needs_write and plan.target_role_id and plan.target_role_id not in self.directory.roles:
                # Only the end of a grant writes a role validation did not check (the one the grant
                # replaced): deleted since, LangSmith refuses it (404) however often it is sent.
                return Outcome(request_id, "failed", self._restore_role_gone(request, plan), plan)
            if plan.needs_write:
                with self._lock:
                    self._first_write_plans.setdefault(request_id, plan)
                if (attempt == 1 and not earlier_writes and self._recorded_role_differs(request, live)) or (
                        last_write_refused and _role_of(live) != _role_of(read_before)):
                    # Changed by hand since what grants shows (an Admin given, then this request
                    # changes or removes it), or between our read and our refused write: recorded
                    # before the write, so the history and drift show the hand change and not only
                    # what this request made of it.
                    self._observe(request, live, FOUND)
            if plan.needs_write and attempt == 1 and is_scim_provisioned(member):
                self._event(request_id, "scim_warning", {"detail": SCIM_WARNING})
            if not plan.needs_write:
                if may_have_written:
                    # Our own earlier write (whose answer was lost, or whose run died) is what made
                    # it so: said as that write's plan, not as a change someone else made.
                    self._observe(request, live)
                    explanation = self._own_write_explanation(request_id, live) or plan.explanation
                    return Outcome(request_id, "applied", f"verified: {explanation}", plan,
                                   writes=earlier_writes + attempt - 1)
                # Changed in LangSmith since what grants shows (by hand, by SCIM), before our read or
                # between it and our refused write: recorded, so grants and history show it now, and
                # drift lists it (nothing applied; a grant's end undoes none of it).
                self._observe_if_changed(request, live)
                detail = plan.explanation if attempt == 1 else f"{plan.explanation}: {SOMEONE_ELSE_MADE_IT_SO}"
                return Outcome(request_id, "already_satisfied", detail, plan, writes=attempt - 1)
            passed = self._until_passed(request)
            if passed is not None:  # an earlier run's write did not make it so: nothing more is sent
                raise passed
            try:
                identity_id = self._apply(request_id, workspace_id, member.id, plan)
            except (TransientError, UnexpectedResponseError) as error:
                # No usable answer (5xx, dropped, or a 2xx we cannot read): the write may have
                # been applied. Re-read and decide again; never resend blindly.
                maybe_applied = getattr(error, "maybe_applied", True)
                self._event(request_id, "write_uncertain", {"error": str(error), "maybe_applied": maybe_applied})
                last_write_refused, read_before = not maybe_applied, live
                may_have_written = may_have_written or maybe_applied
                if attempt == MAX_WRITE_ATTEMPTS:
                    if maybe_applied:
                        # The last write may have been applied all the same: read, never assumed failed.
                        done = self._done_after_last_write(request, plan, earlier_writes + attempt, ours=True)
                        if done is not None:
                            return done
                    raise
                continue  # re-read before anything else
            except (ConflictError, NotFoundError) as error:
                # Someone changed the membership between our read and our write: re-plan.
                self._event(request_id, "write_conflict", {"error": str(error)})
                last_write_refused, read_before = True, live
                if attempt == MAX_WRITE_ATTEMPTS:
                    # The change may be the one asked for, as on an earlier attempt: read, then decide.
                    done = self._done_after_last_write(request, plan, earlier_writes + attempt,
                                                       ours=may_have_written)
                    if done is not None:
                        return done
                    raise
                continue
            if snapshot is not None:
                return _Written(request, plan, earlier_writes + attempt, identity_id)  # verified by finish()
            verified = self._read_live(request_id, workspace_id, user_id, kind="verified")
            return self._verified_outcome(request, plan, earlier_writes + attempt, verified)
        raise AssertionError("unreachable")

    def _done_after_last_write(self, request: dict, plan: Plan, writes: int, *, ours: bool) -> Outcome | None:
        """After the last write got no usable answer, or a conflict: the request is done when a
        read shows the member as it asks (None: not so, the request fails): applied when a write
        of ours may have made it so, already satisfied (someone else's change, recorded as found)
        when every write was refused or surely never sent."""
        verified = self._read_live(request["request_id"], request["workspace_id"], request["user_id"], kind="verified")
        if (verified.role_id if verified else None) != self._wanted(request, plan):
            self._observe_if_changed(request, verified)
            return None
        if not ours:
            self._observe_if_changed(request, verified)
            return Outcome(request["request_id"], "already_satisfied",
                           f"{SOMEONE_ELSE_MADE_IT_SO} (it was to {plan.explanation})", plan, writes=writes)
        self._observe(request, verified)
        return Outcome(request["request_id"], "applied", f"verified: {plan.explanation}", plan, writes=writes)

    def _restore_role_gone(self, request: dict, plan: Plan) -> str:
        """Why the end of a grant cannot give back the role the grant replaced, and the fix."""
        gone = plan.target_role_id
        with self._lock:  # its name as the latest sync saw it, where there is one
            named = (first_row(self.conn, "SELECT display_name FROM main.roles WHERE role_id = ?", [gone])
                     if table_exists(self.conn, "main", "roles") else None)
        role = f"{named[0]} ({gone})" if named else gone
        granted = request["role_name"] or request["role_id"]
        return (f"cannot give back {role}, the role the grant of {granted} replaced: it no longer exists in "
                f"LangSmith (deleted since the grant), so the member still holds {granted}. Fix: in LangSmith, "
                "give the member the role they should hold now (or remove them from the workspace); this end is "
                "tried again later and settles once they no longer hold the granted role.")

    def _plan(self, request: dict, live: Live | None) -> Plan:
        current, identity = (live.role_id, live.id) if live else (None, None)
        if request.get("parent_request_id"):  # the revoke that ends a time-bound grant
            granted_identity = self._granted_identity_id(request) if identity else None
            readded = granted_identity is not None and granted_identity != identity
            taken_over = self._plan_taken_over(request, current, identity, readded=readded)
            if taken_over is not None:
                return taken_over
            restore = self._restore_role_id(request)
            if restore == request["role_id"]:
                # A grant that extended one of the same role, which is still in force: it ends later.
                with self._lock:
                    self._access_goes_on.add(request["request_id"])
            return plan_expiry(request["role_id"], restore, current, identity, self.directory.role_names,
                               granted_identity_id=granted_identity)
        return plan_change(request["action"], request["role_id"], current, identity, self.directory.role_names)

    def _plan_taken_over(self, revoke: dict, current: str | None, identity: str | None, *,
                         readded: bool = False) -> Plan | None:
        """The end of a grant that a later request took over (``expiry.successor``): nothing to
        write. A later grant built on the granted role (it replaced it, or found it there)
        inherits the role the ended grant replaced; a later revoke, or a grant over another role,
        already undid what it did. None: no later request, the grant's own end applies.

        ``readded``: the member holds the workspace through another identity than the grant
        left (someone removed and added them again by hand). A later grant built on the role
        then built on the hand-made membership, not on the grant: it inherits nothing (its own
        end gives back the hand-made role), and None lets the grant's own end leave it alone."""
        names = self.directory.role_names
        grant = self._parent_grant(revoke)
        if grant is None:
            return None
        with self._lock:
            later = expiry.successor(self.conn, grant)
            if later is None:
                return None
            if readded and later["action"] == "grant" and later["prior_role_id"] == grant["role_id"]:
                return None
            self._taken_over[revoke["request_id"]] = (later, grant["prior_role_id"])
            self._access_goes_on.add(revoke["request_id"])
        what = f"request {later['request_id']} ({later['action']} of {later['role_name'] or later['role_id']})"
        if later["action"] == "grant" and later["prior_role_id"] == grant["role_id"]:
            back = names.get(grant["prior_role_id"], grant["prior_role_id"]) if grant["prior_role_id"] else None
            then = f"gives back {back}" if back else "removes the member"
            ends = (f"when it ends ({queue.iso_minutes(later['expires_at'])}) it {then}"
                    if later["expires_at"] is not None else "it has no end")
            role = names.get(grant["role_id"], grant["role_id"])
            explanation = f"continued by {what}, which took over this grant's {role}: {ends}"
        else:
            explanation = f"{what} changed this membership since the grant; nothing to undo"
        return Plan(NOTHING, current, current, identity, explanation)

    def _parent_grant(self, revoke: dict) -> dict | None:
        """The grant an expiry revoke ends (None for any other request)."""
        if not revoke.get("parent_request_id"):
            return None
        with self._lock:
            if revoke["request_id"] not in self._parent_grants:
                found = queue.fetch_requests(self.conn, "request_id = ?", [revoke["parent_request_id"]])
                self._parent_grants[revoke["request_id"]] = found[0] if found else None
            return self._parent_grants[revoke["request_id"]]

    def _granted_identity_id(self, revoke: dict) -> str | None:
        """The workspace identity the ended grant's own write left (its latest verified
        observation; None when it wrote nothing, or the identity was not known)."""
        grant = self._parent_grant(revoke)
        if grant is None:
            return None
        with self._lock:
            found = first_row(
                self.conn,
                f"SELECT workspace_identity_id FROM {RAW_SCHEMA}.provisioning_observations "
                "WHERE request_id = ? AND role_id = ? AND coalesce(observed, 'verified') = 'verified' "
                "ORDER BY verified_at DESC LIMIT 1",
                [grant["request_id"], grant["role_id"]],
            )
        return found[0] if found else None

    def _restore_role_id(self, request: dict) -> str | None:
        """For the revoke that ends a grant: the role the grant replaced (None: it added them)."""
        grant = self._parent_grant(request)
        return grant["prior_role_id"] if grant else None

    def _wanted(self, request: dict, plan: Plan) -> str | None:
        """The live role that means this request is done (None: not a member)."""
        return desired_role(request["action"], request["role_id"], plan.current_role_id,
                            self._restore_role_id(request))

    def _verify(self, item: _Written, after: OrgSnapshot | None) -> Outcome:
        """Check one written request against the batch's second listing; one it does not
        confirm (a listing may lag a write) is read back on its own before it is called failed."""
        request = item.request
        request_id, user_id, workspace_id = request["request_id"], request["user_id"], request["workspace_id"]
        wanted = self._wanted(request, item.plan)
        listed = after.live(user_id, workspace_id) if after is not None else None
        # A membership listed without a role confirms nothing (read back on its own below).
        if after is not None and (listed is None or listed.role_id is not None) and _role_of(listed) == wanted:
            self._event(request_id, "verified", {
                "method": "GET", "path": ORG_LISTING_PATH, "status_code": READ_OK, "workspace_id": workspace_id,
                "member": listed is not None, "role_id": _role_of(listed),
            })
            verified = Live(wanted, item.identity_id) if wanted else None
        else:
            verified = self._read_live(request_id, workspace_id, user_id, kind="verified")
        return self._verified_outcome(request, item.plan, item.writes, verified)

    def _verified_outcome(self, request: dict, plan: Plan, writes: int, verified: Live | None) -> Outcome:
        wanted = self._wanted(request, plan)
        got = verified.role_id if verified else None
        if got != wanted:
            self._observe_if_changed(request, verified)
            names = self.directory.role_names
            return Outcome(
                request["request_id"], "failed",
                f"verification failed: after '{plan.explanation}' the live role is "
                f"{names.get(got, got) if got else 'none (not a member)'}. {VERIFICATION_FIX}",
                plan, writes=writes,
            )
        self._observe(request, verified)
        return Outcome(request["request_id"], "applied", plan.explanation, plan, writes=writes)

    def _validate_live(self, request: dict) -> EnrichedMember | OrgMember:
        """Everything checked at queue time, checked again against LangSmith now."""
        passed = self._until_passed(request)
        if passed is not None and not self._earlier_writes(request["request_id"]):
            # Approved or claimed too late: applying it now would grant access that is already over.
            # (A write an earlier run sent may have applied it: settled from live state, never resent.)
            raise passed
        role = self.directory.roles.get(request["role_id"])
        if role is None:
            raise Rejected(f"role {request['role_name'] or request['role_id']} no longer exists in LangSmith")
        if role.access_scope != "workspace":
            raise Rejected(f"{role.display_name!r} is an organization role: read-only here")
        workspace = _shared_workspace(request, self.directory.workspaces.get(request["workspace_id"]))
        member: EnrichedMember | OrgMember | None
        if self.snapshot is not None:
            member = self.snapshot.members.get(request["user_id"])
        else:
            self.client.take_retried_attempts()
            member = self.client.find_org_member(ls_user_id=request["user_id"])
        self._event(request["request_id"], "validated_live",
                    {"org_member": member is not None, "role": role.display_name,
                     "workspace": workspace.display_name,
                     "source": "org listing" if self.snapshot is not None else "member lookup",
                     "method": "GET", "status_code": READ_OK,
                     "path": ORG_LISTING_PATH if self.snapshot is not None else ORG_MEMBER_LOOKUP_PATH,
                     **(_retried(self.client) if self.snapshot is None else {})})
        if member is None:
            raise MemberGone(
                f"{request['user_email'] or request['user_id']} is not an active org member any more"
            )
        org_role = self.directory.roles.get(member.role_id or "")
        if request["action"] == "revoke" and org_role is not None and org_role.name == ORGANIZATION_ADMIN:
            with self._lock:
                self._admin_revokes.add(request["request_id"])
        return member

    @staticmethod
    def _until_passed(request: dict) -> Rejected | None:
        """For a grant whose ``--until`` has passed, the refusal to write it (None otherwise)."""
        until = request.get("access_until")
        if request["action"] != "grant" or until is None or until > queue.now_utc():
            return None
        return Rejected(f"its --until ({queue.iso_minutes(until)}) has passed: nothing applied; ask again "
                        "with a later --until")

    def _read_live(self, request_id: str, workspace_id: str, user_id: str, kind: str = "read_live") -> Live | None:
        self.client.take_retried_attempts()
        member = self.client.find_workspace_member(workspace_id, user_id)
        live = Live(member.role_id, member.id) if member else None
        self._event(request_id, kind, {
            "method": "GET", "path": WORKSPACE_MEMBERS_PATH, "status_code": READ_OK,
            "workspace_id": workspace_id, "member": live is not None,
            "role_id": live.role_id if live else None, **_retried(self.client),
        })
        return _role_told(live, WORKSPACE_MEMBERS_PATH, workspace_id)

    def _listed_live(self, snapshot: OrgSnapshot, request_id: str, workspace_id: str, user_id: str) -> Live | None:
        """The member's role in the workspace from the batch's org listing (no call)."""
        live = snapshot.live(user_id, workspace_id)
        self._event(request_id, "read_live", {
            "method": "GET", "path": ORG_LISTING_PATH, "status_code": READ_OK, "workspace_id": workspace_id,
            "member": live is not None, "role_id": live.role_id if live else None,
        })
        return _role_told(live, ORG_LISTING_PATH, workspace_id)

    def _apply(self, request_id: str, workspace_id: str, org_identity_id: str, plan: Plan) -> str | None:
        """Send the plan's one write. Returns the member's workspace identity id after it."""
        if plan.kind == ADD:
            role_id = plan.role_to_write()
            call = ("POST", "/api/v1/workspaces/current/members")
        elif plan.kind == CHANGE_ROLE:
            member_id, role_id = plan.member_to_write(), plan.role_to_write()
            call = ("PATCH", f"/api/v1/workspaces/current/members/{member_id}")
        elif plan.kind == REMOVE:
            member_id = plan.member_to_write()
            call = ("DELETE", f"/api/v1/workspaces/current/members/{member_id}")
        else:
            raise AssertionError(plan.kind)
        detail = {"method": call[0], "path": call[1], "workspace_id": workspace_id,
                  "plan": plan.kind, "role_id": plan.target_role_id}
        # Recorded (with everything before it) before the call: if we die now, the next run
        # knows a write may have gone out.
        sent = self._event(request_id, "write_sent", detail)
        with self._lock:  # held through a failed commit: no other thread's commit records it meanwhile
            self._writes_sent_now.add(request_id)
            try:
                self._commit(through=sent)
            except BaseException:
                # Not recorded, so not sent: taken back, or a later commit (another thread's, the
                # release of the batch) would record a write that never went out.
                self._writes_sent_now.discard(request_id)
                with self._events_lock:
                    self._events = [event for event in self._events if event[2] is not detail]
                raise
        identity_id: str | None
        self.client.take_retried_attempts()  # none of this call's: start its record clean
        try:
            if plan.kind == ADD:
                created = self.client.add_workspace_member(
                    workspace_id, org_identity_id=org_identity_id, role_id=role_id)
                identity_id = created.id
            elif plan.kind == CHANGE_ROLE:
                self.client.set_workspace_member_role(workspace_id, member_id, role_id)
                identity_id = member_id
            else:
                self.client.remove_workspace_member(workspace_id, member_id)
                identity_id = None
        except LangSmithError as error:
            self._event(request_id, "write_answered", {**detail, "status_code": error.status_code,
                                                        "error": type(error).__name__,
                                                        **_retried(self.client)})
            raise
        self._event(request_id, "write_answered", {**detail, "status_code": 200, **_retried(self.client)})
        return identity_id

    def _earlier_writes(self, request_id: str) -> int:
        with self._lock:
            if self._earlier_write_counts is not None and request_id in self._earlier_write_counts:
                # Read before this run sent anything; this run's own writes are not "earlier".
                return self._earlier_write_counts[request_id]
            return scalar(
                self.conn,
                "SELECT count(*) FROM main.provisioning_events WHERE request_id = ? AND kind = 'write_sent'",
                [request_id],
            )

    def _earlier_write_at(self, request_id: str) -> datetime | None:
        """When an earlier run (one that died) first sent a write for ``request_id``, or None.
        A time-bound grant it gave runs from then: the member held the role from that write,
        however long it took a run to settle it."""
        if not self._earlier_writes(request_id):
            return None
        with self._lock:
            return scalar(
                self.conn,
                'SELECT min("at") FROM main.provisioning_events WHERE request_id = ? AND kind = \'write_sent\'',
                [request_id],
            )

    def _own_write_explanation(self, request_id: str, live: Live | None) -> str | None:
        """The plan of the last write sent for ``request_id`` (this run's or a dead run's, from
        its ``planned`` and ``write_sent`` events) when the member's live role is the one that
        write leaves; None when it is not (someone changed it since) or nothing was sent."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT kind, detail FROM main.provisioning_events WHERE request_id = ? "
                "AND kind IN ('planned', 'write_sent') ORDER BY \"at\", event_id",
                [request_id],
            ).fetchall()
        planned, written = None, None
        for kind, detail in rows:
            event = json.loads(detail)
            if kind == "planned":
                planned = event
            elif planned is not None and planned.get("plan") == event.get("plan"):
                written = (planned.get("explanation"), event.get("role_id"))
        if written is None or written[1] != (live.role_id if live else None):
            return None
        return written[0]

    def _count_earlier_writes(self, request_ids: list[str]) -> dict[str, int]:
        """Writes sent for each of ``request_ids`` so far (0 for most), in one query."""
        with self._lock:
            sent = dict(self.conn.execute(
                "SELECT request_id, count(*) FROM main.provisioning_events "
                "WHERE kind = 'write_sent' AND request_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY request_id",
                [request_ids],
            ).fetchall())
        return {request_id: sent.get(request_id, 0) for request_id in request_ids}

    def _event(self, request_id: str, kind: str, detail: dict) -> int:
        """Buffer an event; returns its sequence number (for ``_commit(through=...)``)."""
        if self.dry_run:
            return 0
        at = self._now()
        with self._events_lock:
            self._events.append((request_id, kind, detail, at))
            self._events_added += 1
            return self._events_added

    def _now(self) -> datetime:
        """The time, strictly later than the last one taken: events are ordered by time, and so
        are two observations of one membership (the later one wins in ``grants``)."""
        with self._clock_lock:
            at = queue.now_utc()
            if self._last_at is not None and at <= self._last_at:
                at = self._last_at + timedelta(microseconds=1)
            self._last_at = at
            return at

    def _observe_if_changed(self, request: dict, live: Live | None) -> None:
        """The member's live role a request read without making it (found done, or read when the
        request failed): recorded as found where it is not what the database holds (someone
        else's change: the history and drift show it now)."""
        if self._recorded_role_differs(request, live):
            self._observe(request, live, FOUND)

    def _recorded_role_differs(self, request: dict, live: Live | None) -> bool:
        """The member's live role in the workspace (None: not a member) is not the one the
        database holds for them: the latest observation dbt has not built yet, else ``grants``.
        False before the first build (no ``grants``: nothing recorded to correct). (What this run
        observed before a write is committed with the write's ``write_sent``.)"""
        with self._lock:
            if not table_exists(self.conn, "main", "grants"):
                return False
            unbuilt = (f"SELECT role_id, verified_at FROM ({unbuilt_observations_query(self.conn)}) "
                       "WHERE ls_user_id = $user AND workspace_id = $workspace")
            recorded = self.conn.execute(
                f"""
                SELECT role_id FROM (
                    SELECT role_id, 1 AS newer, verified_at FROM ({unbuilt})
                    UNION ALL
                    SELECT role_id, 0, NULL FROM main.grants
                    WHERE user_id = $user AND workspace_id = $workspace
                        AND entitlement_type = 'workspace_role'
                )
                ORDER BY newer DESC, verified_at DESC NULLS LAST
                LIMIT 1
                """,
                {"user": request["user_id"], "workspace": request["workspace_id"]},
            ).fetchone()
        return (recorded[0] if recorded else None) != _role_of(live)

    def _observe(self, request: dict, live: Live | None, observed: str = VERIFIED) -> None:
        """Record the member's role in that workspace (or none), verified after the request's
        write or found without one, written with the request's status (or its write-ahead
        events); dbt lays it over the latest sync's listing in ``grants``."""
        with self._lock:
            self._observations.append(Observation(
                request["request_id"], self.run_id, self._now(), request["workspace_id"],
                request["user_id"], live.role_id if live else None, live.id if live else None,
                observed,
            ))


def _role_told(live: Live | None, path: str, workspace_id: str) -> Live | None:
    """``live`` when it says the member's role (or that they are not a member). A membership
    listed without a role (the schema lets ``role_id`` be null or absent) is a role this run cannot
    tell: never "not a member", which would settle a revoke with nothing removed and drop the
    member from ``grants``. The request fails on it instead, saying why."""
    if live is None or live.role_id is not None:
        return live
    error = UnexpectedResponseError(
        f"LangSmith lists the member in workspace {workspace_id} without a role: their role there "
        "cannot be told, so the request was neither planned nor verified on it",
        method="GET", path=path,
    )
    error.fix = ("check the member's role in that workspace in LangSmith (the request's events say "
                 "whether anything was written), and queue the request again if it is still needed")
    raise error


def _role_of(live: Live | None) -> str | None:
    """The live role (None: not a member)."""
    return live.role_id if live else None


def _shared_workspace(request: dict, workspace: Workspace | None) -> Workspace:
    """The request's workspace as LangSmith lists it now; ``Rejected`` when it is gone, deleted
    or personal."""
    if workspace is None:
        raise Rejected(f"workspace {request['workspace_id']} no longer exists in LangSmith")
    if not workspace.is_shared:
        kind = "deleted" if workspace.is_deleted else "personal"
        raise Rejected(f"workspace {workspace.display_name!r} is {kind} now")
    return workspace


def _retried(client: LangSmithClient) -> dict[str, Any]:
    """``{"retried": [...]}``: the attempts the call just made retried (a 429, a failed
    connection...), each with its status and wait, so the audit holds every call; {} when none."""
    retried = client.take_retried_attempts()
    return {"retried": retried} if retried else {}
