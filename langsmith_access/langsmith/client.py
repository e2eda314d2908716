"""The LangSmith API client: headers, paging, retries, pacing and typed records.

HTTP only, no model logic (that lives in the extract and provisioning modules). See
``../shared/langsmith-api.md`` for the behaviour this follows.

- ``X-API-Key`` and ``X-Organization-Id`` on every request, ``X-Tenant-Id`` on workspace routes.
- Paged listings read 500 rows a page, de-duplicate by id, stop on a short page, and are
  cross-checked against ``X-Pagination-Total`` when the server sends it; a listing that moved
  while being read is read again. Once the first page has told the total, the pages after it
  are read a few at a time, concurrently.
- A listing is either collected (``list_*``: a ``Listing`` of every row) or streamed
  (``stream_*``: each page handed to a ``ListingSink`` as it arrives, and only a
  ``ListingRead`` summary returned), so a caller that stores the rows never holds them all.
- Reads are retried on 429 (honouring ``Retry-After``), 408, 425, 5xx, timeouts and dropped
  connections, with bounded exponential backoff and jitter. Writes are retried only when the
  request surely did not take effect (429, 408, 425, connect timeout, no connection made: DNS,
  refused, an untrusted certificate); otherwise ``TransientError(maybe_applied=True)`` tells the
  caller to re-read before deciding anything.
- A shared limiter keeps the client under its requests-per-minute in every 60-second window;
  fan-out over workspaces and pages uses bounded thread pools.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import math
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypedDict, TypeVar, cast

import orjson
import requests

from langsmith_access import __version__
from langsmith_access.langsmith.access_records import (
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    WORKSPACE_SERVICE_KEY,
    AccessPolicy,
    AuditEvent,
    Credential,
    OrganizationInfo,
    ResourceTagging,
    ServiceAccount,
    SsoProvider,
    redact_short_key,
)
from langsmith_access.langsmith.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    EndpointRedirectError,
    IncompleteListingError,
    LangSmithError,
    NotFoundError,
    NotLangSmithAPIError,
    PermissionDeniedError,
    ProxyLoginError,
    ProxyRefusalError,
    RequestRejectedError,
    RouteNotAvailableError,
    SectionUnavailableError,
    TransientError,
    UnexpectedResponseError,
    WorkspaceGoneError,
    one_line,
)
from langsmith_access.langsmith.pacing import CallStats, RateLimiter, retry_after_seconds
from langsmith_access.langsmith.records import (
    EnrichedMember,
    OrgMember,
    PendingInvite,
    Role,
    Workspace,
    WorkspaceMember,
)
from langsmith_access.langsmith.refusals import MANAGE_MEMBERS, WORKSPACES_READ
from langsmith_access.langsmith.sections import SectionPlan, plan_sections, skip_reason
from langsmith_access.settings import (
    ClientSettings,
    check_api_key,
    check_endpoint,
    check_organization_id,
    mask_keys,
    without_runs_of,
)

T = TypeVar("T")


class _Record(Protocol):
    """A parsed listing row: listings de-duplicate rows by ``id``."""

    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Record)
R_contra = TypeVar("R_contra", bound=_Record, contravariant=True)

PAGE_SIZE = 500  # the API's maximum
MAX_SCANS = 3  # full re-reads of a listing that moved while being read
MAX_RETRY_AFTER_SECONDS = 120.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
ERROR_DETAIL_MAX_CHARS = 300
# Platform routes are always called under /api/v1/platform/: Cloud answers there and at
# /v1/platform/, a self-hosted install only there (its /v1/platform/ is the web UI).
ENRICHED_MEMBERS_PATH = "/api/v1/platform/orgs/current/members"
ORGANIZATION_INFO_PATH = "/api/v1/orgs/current/info"
# Says whether the enriched members route showed memberships of every workspace.
LISTS_ALL_WORKSPACES_HEADER = "X-Members-List-All-Workspaces"
# Says the answer was restricted by the organization's anonymity setting.
ANONYMITY_RESTRICTED_HEADER = "X-Members-Anonymity-Restricted"
LISTING_HEADERS = (LISTS_ALL_WORKSPACES_HEADER, ANONYMITY_RESTRICTED_HEADER)
# The access picture's routes (DESIGN.md section 9; langsmith-api.md).
PLATFORM_PATH_PREFIX = "/api/v1/platform/"
PLATFORM_ORGANIZATION_INFO_PATH = "/api/v1/platform/orgs/current/info"
ACCESS_POLICIES_PATH = "/api/v1/platform/orgs/current/access-policies"
SCIM_TOKENS_PATH = "/api/v1/platform/orgs/current/scim/tokens"
SERVICE_KEYS_PATH = "/api/v1/orgs/current/service-keys"
PERSONAL_ACCESS_TOKENS_PATH = "/api/v1/orgs/current/personal-access-tokens"
WORKSPACE_KEYS_PATH = "/api/v1/api-key"
TAGGINGS_PATH = "/api/v1/workspaces/current/taggings"
SERVICE_ACCOUNTS_PATH = "/api/v1/service-accounts"
SSO_SETTINGS_PATH = "/api/v1/orgs/current/sso-settings"
AUDIT_LOGS_PATH = "/api/v1/audit-logs"
AUDIT_PAGE_SIZE = 100  # the route's maximum


@dataclass(frozen=True)
class _Page(Generic[R]):
    """One page of a listing, parsed (the response itself is not kept: ~600 KB of JSON)."""

    total: int | None  # X-Pagination-Total
    records: list[R]
    size: int  # rows on the page, before de-duplication
    headers: dict[str, str]  # its informational headers (LISTING_HEADERS)
    # Read from one row before the previous page's end (a listing without a total; see _stream).
    overlaps_previous: bool = False

    @property
    def is_full(self) -> bool:
        return self.size >= PAGE_SIZE


@dataclass(frozen=True)
class Probe:
    """What one request answered: its status, content type and JSON body (None if not JSON)."""

    status_code: int
    content_type: str
    body: Any
    detail: str  # the server's error detail for a 4xx/5xx, key scrubbed
    # For a 429 or a 5xx: how long to wait before asking again, as the client's own retries
    # would (Retry-After, or for a 429 without it the rest of the fixed window); else None.
    retry_after: float | None = None

    @property
    def is_json(self) -> bool:
        return _is_json_type(self.content_type) and self.body is not None


@dataclass(frozen=True)
class AuditWindow:
    """The audit events of one time window, ``start`` to ``end``, both inclusive (as the route
    reads them), oldest first (``at``, then ``event_id``): the order is the client's, since
    LangSmith documents none. ``pages``: requests it took."""

    start: datetime
    end: datetime
    events: tuple[AuditEvent, ...]
    pages: int

    def __iter__(self):
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True)
class Listing(Generic[T]):
    """Every row of a paged listing, and what the completeness check needs to know about it."""

    items: list[T]
    pages: int  # pages read in the scan that was kept
    reported_total: int | None  # X-Pagination-Total, when the server sent it
    scans: int  # 1, or more when the listing moved while being read
    # Informational response headers of the last page (e.g. X-Members-List-All-Workspaces). A
    # decision that one page's headers can overturn (a page listing only some workspaces) reads
    # every page's, through a ListingSink's add_page, as the sync and OrgSnapshot.read do.
    headers: dict[str, str] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ListingRead:
    """What streaming a listing found out: everything a ``Listing`` says but its rows."""

    rows: int  # distinct rows of the scan that was kept
    pages: int  # pages read in that scan
    reported_total: int | None  # X-Pagination-Total, when the server sent it
    scans: int  # 1, or more when the listing moved while being read
    # Informational response headers of the last page (e.g. X-Members-List-All-Workspaces). A
    # decision that one page's headers can overturn (a page listing only some workspaces) reads
    # every page's, through a ListingSink's add_page, as the sync and OrgSnapshot.read do.
    headers: dict[str, str] = field(default_factory=dict)


class ListingSink(Protocol[R_contra]):
    """Where a streamed listing's pages go, in offset order, as they arrive.

    The rows a sink was given are the whole listing only once the ``stream_*`` call returns: a
    listing that moved while being read is read again from its first page, after another
    ``begin_scan``. An exception raised by the sink stops the reading and propagates.
    """

    def begin_scan(self) -> None:
        """A scan starts: forget every row an earlier scan of this listing delivered."""

    def add_page(self, records: Sequence[R_contra], headers: Mapping[str, str]) -> None:
        """The rows of one page not delivered earlier in this scan (de-duplicated by id), and
        the page's informational headers (those of ``LISTING_HEADERS`` it carried)."""


class _CollectingSink(Generic[R]):
    """Keeps every row: how ``list_*`` build a ``Listing`` on the streaming reader."""

    def __init__(self) -> None:
        self.records: list[R] = []

    def begin_scan(self) -> None:
        self.records = []

    def add_page(self, records: Sequence[R], headers: Mapping[str, str]) -> None:
        self.records.extend(records)


class LangSmithClient:
    """One client per org and key. Thread-safe; use as a context manager or call ``close()``."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        # Refuse unusable keys and ids before any request is sent.
        self._api_key = settings.api_key.reveal()
        check_api_key(self._api_key)
        self.organization_id = check_organization_id(settings.organization_id)
        self.endpoint = check_endpoint(settings.endpoint)
        self.settings = settings
        self.stats = CallStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        # One clock for the limiter and the rate-limit window: a caller's clock paces both.
        self._limiter = RateLimiter(settings.requests_per_minute, clock=clock, sleep=sleep)
        self._timeout = (settings.connect_timeout_seconds, settings.read_timeout_seconds)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._organization_info: dict[str, Any] | None = None
        self._retried_lock = threading.Lock()

    def __enter__(self) -> LangSmithClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LangSmithClient(endpoint={self.endpoint!r}, organization_id={self.organization_id!r})"

    def take_retried_attempts(self) -> list[dict[str, Any]]:
        """The attempts this thread's requests retried since the last call (a 429, a 5xx on a
        read, a connection that failed), oldest first, each with its status (None: no answer),
        the problem and the wait before the next attempt; then forgets them. For an audit that
        records every call a request made, retries included."""
        retried = self._retried_here()
        with self._retried_lock:  # a page read ahead for this thread may be adding to it
            taken = list(retried)
            retried.clear()
        return taken

    def _retried_here(self) -> list[dict[str, Any]]:
        """This thread's record of retried attempts (see ``take_retried_attempts``)."""
        retried = getattr(self._local, "retried", None)
        if retried is None:
            retried = self._local.retried = []
        return retried

    def _retry_record(self) -> list[dict[str, Any]]:
        """Where this thread's retries are recorded: its own record, or, in a pool thread, the
        record of the thread it works for."""
        record = getattr(self._local, "retries_recorded_in", None)
        return self._retried_here() if record is None else record

    def _on_behalf_of_this_thread(self, read: Callable[..., T]) -> Callable[..., T]:
        """``read`` for a pool thread working for this one: its retries go to this thread's
        record, so the audit of the call that started the reads has every attempt they made."""
        record = self._retry_record()

        def read_for_the_caller(*args: Any) -> T:
            self._local.retries_recorded_in = record
            return read(*args)

        return read_for_the_caller

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    # ------------------------------------------------------------------ reads

    def get_organization_info(self) -> dict[str, Any]:
        return self._get_json(ORGANIZATION_INFO_PATH, expect=dict)

    def organization_info_once(self) -> dict[str, Any]:
        """``get_organization_info()``, read once per client (plan flags do not change mid-run)."""
        with self._sessions_lock:
            cached = self._organization_info
        if cached is None:
            cached = self.get_organization_info()
            with self._sessions_lock:
                self._organization_info = cached
        return cached

    def probe(self, path: str = ORGANIZATION_INFO_PATH) -> Probe:
        """One GET, sent once (no retries), answered whatever its status: what the connection
        doctor needs to tell an unreachable host, a web page and a LangSmith API apart.

        Raises ``TransientError`` when no answer came (refused, timed out, dropped), and
        ``EndpointRedirectError`` for a redirect (never followed).
        """
        self.stats.add(wait_seconds=self._limiter.acquire(), calls=1)
        sent_at = self._clock()
        try:
            response = self._session().get(
                self.endpoint + path, headers=self._headers(None), timeout=self._timeout,
                allow_redirects=False,  # see EndpointRedirectError
            )
        except requests.exceptions.RequestException as exc:  # a body cut short or undecodable too
            self.stats.add(connection_errors=1)
            cause, why = _connection_failure(exc, self._timeout)
            raise ConnectionFailedError(
                f"the connection to {self.endpoint} failed: {why}", cause=cause, method="GET", path=path
            ) from None
        if 300 <= response.status_code < 400:
            raise _redirected(response, "GET", path, self._api_key)
        detail = self._detail(response) if response.status_code >= 400 else ""
        content_type = _content_type(response, self._api_key)
        body = None
        if _is_json_type(content_type) or not content_type:
            # The body is kept (the doctor shows the org's name): a key the server echoed into it
            # is cut to its prefix, as in the client's errors.
            body = _json_or_none(_without_key(response, self._api_key, shown_as=mask_keys(self._api_key)))
        return Probe(
            status_code=response.status_code,
            content_type=content_type,
            body=body,
            detail=detail,
            retry_after=self._retry_wait(response, sent_at),
        )

    def list_roles(self) -> list[Role]:
        rows = self._get_json("/api/v1/orgs/current/roles", expect=list)
        path = "/api/v1/orgs/current/roles"
        return _unique_by_id([_parse_record(Role.from_api, row, "GET", path) for row in rows], path)

    def list_workspaces(self, *, include_deleted: bool = True) -> list[Workspace]:
        """Every workspace of the org, personal ones included, deleted ones on request."""
        rows = self._get_json(
            "/api/v1/workspaces",
            params={"include_deleted": "true" if include_deleted else "false"},
            expect=list,
        )
        path = "/api/v1/workspaces"
        return _unique_by_id([_parse_record(Workspace.from_api, row, "GET", path) for row in rows], path)

    def list_org_members(self) -> Listing[OrgMember]:
        """Active (accepted) org members, disabled ones included."""
        return self._paged("/api/v1/orgs/current/members/active", OrgMember.from_api)

    def list_pending_invites(self) -> Listing[PendingInvite]:
        return self._paged("/api/v1/orgs/current/members/pending", PendingInvite.from_api)

    def list_enriched_members(self, *, first_page_only: bool = False) -> Listing[EnrichedMember]:
        """Active members and pending invites with every workspace membership, in few calls.

        Raises ``RouteNotAvailableError`` (a ``NotFoundError``) where the install lacks this
        route: a 404, or an answer that is not JSON (a self-hosted install's web UI), which here
        means "not available", not "wrong endpoint". ``first_page_only``: one small page, to
        see the route's headers (the connection doctor).
        """
        with _enriched_route_errors():
            if first_page_only:
                return self._first_page(ENRICHED_MEMBERS_PATH, EnrichedMember.from_api)
            return self._paged(ENRICHED_MEMBERS_PATH, EnrichedMember.from_api)

    def stream_enriched_members(self, sink: ListingSink[EnrichedMember]) -> ListingRead:
        """``list_enriched_members``, each page handed to ``sink`` as it arrives."""
        with _enriched_route_errors():
            return self._stream(ENRICHED_MEMBERS_PATH, EnrichedMember.from_api, sink)

    def stream_org_members(self, sink: ListingSink[OrgMember]) -> ListingRead:
        """``list_org_members``, each page handed to ``sink`` as it arrives."""
        return self._stream("/api/v1/orgs/current/members/active", OrgMember.from_api, sink)

    def stream_pending_invites(self, sink: ListingSink[PendingInvite]) -> ListingRead:
        """``list_pending_invites``, each page handed to ``sink`` as it arrives."""
        return self._stream("/api/v1/orgs/current/members/pending", PendingInvite.from_api, sink)

    def first_page_of_org_members(self) -> Listing[OrgMember]:
        """One small page of active org members (and the total, when the server tells it)."""
        return self._first_page("/api/v1/orgs/current/members/active", OrgMember.from_api)

    def list_workspace_members(
        self, workspace_id: str, *, page_concurrency: int | None = None
    ) -> Listing[WorkspaceMember]:
        sink: _CollectingSink[WorkspaceMember] = _CollectingSink()
        read = self.stream_workspace_members(workspace_id, sink, page_concurrency=page_concurrency)
        return _listing(sink, read)

    def stream_workspace_members(
        self,
        workspace_id: str,
        sink: ListingSink[WorkspaceMember],
        *,
        page_concurrency: int | None = None,
    ) -> ListingRead:
        """``list_workspace_members``, each page handed to ``sink`` as it arrives."""
        workspace_id = _uuid(workspace_id, "workspace_id")
        return self._stream(
            "/api/v1/workspaces/current/members/active",
            lambda row: WorkspaceMember.from_api(row, workspace_id),
            sink,
            workspace_id=workspace_id,
            page_concurrency=page_concurrency,
        )

    def list_members_of_workspaces(
        self, workspace_ids: Iterable[str]
    ) -> dict[str, Listing[WorkspaceMember]]:
        """``list_workspace_members`` for many workspaces, at most ``max_concurrency`` at once.

        All or nothing: the first workspace that cannot be read stops the rest and its error
        (which names the workspace) is raised.
        """
        sinks: dict[str, _CollectingSink[WorkspaceMember]] = {}

        def sink_for(workspace_id: str) -> _CollectingSink[WorkspaceMember]:
            return sinks.setdefault(workspace_id, _CollectingSink())

        reads = self.stream_members_of_workspaces(workspace_ids, sink_for)
        return {w: _listing(sinks[w], read) for w, read in reads.items()}

    def stream_members_of_workspaces(
        self,
        workspace_ids: Iterable[str],
        sink_for: Callable[[str], ListingSink[WorkspaceMember]],
    ) -> dict[str, ListingRead]:
        """``stream_workspace_members`` for many workspaces, at most ``max_concurrency`` at once,
        each into ``sink_for(workspace_id)``. The sinks are called from the reading threads,
        several at a time: a sink shared by workspaces must be thread-safe.

        All or nothing: the first workspace that cannot be read stops the rest (those being
        read finish first) and its error (which names the workspace) is raised.
        """
        # One page at a time within a workspace: the workspaces are the fan-out, so at most
        # max_concurrency requests are in flight.
        return self._for_each_workspace(
            workspace_ids,
            lambda w: self.stream_workspace_members(w, sink_for(w), page_concurrency=1),
            "langsmith-workspaces",
        )

    def _for_each_workspace(
        self, workspace_ids: Iterable[str], read: Callable[[str], T], thread_name_prefix: str
    ) -> dict[str, T]:
        """``read(workspace_id)`` for each workspace (duplicates read once), at most
        ``max_concurrency`` at once, in the order given. All or nothing: the first error stops
        the reads not yet started (those under way finish first) and is raised."""
        ids = list(dict.fromkeys(_uuid(w, "workspace_id") for w in workspace_ids))
        if not ids:
            return {}
        read_for_the_caller = self._on_behalf_of_this_thread(read)
        # Set by the failing worker before it returns: a worker that is free again skips the
        # reads it picks up after that, even before this thread wakes to cancel them (on a
        # busy machine a lone worker read three more workspaces in that gap).
        failed = threading.Event()

        def read_unless_failed(workspace_id: str) -> T | None:
            if failed.is_set():
                return None
            try:
                return read_for_the_caller(workspace_id)
            except BaseException:
                failed.set()
                raise

        with self._pool(min(self.settings.max_concurrency, len(ids)), thread_name_prefix) as pool:
            futures = {pool.submit(read_unless_failed, w): w for w in ids}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
            # No error: no read was skipped or cancelled, every one is done and returned a T.
            results = {futures[f]: cast(T, f.result()) for f in done}
        return {w: results[w] for w in ids}

    def find_org_member(
        self, *, ls_user_id: str | None = None, email: str | None = None
    ) -> OrgMember | None:
        """The active org member with that user id or email (case-insensitive), or None."""
        if ls_user_id is not None and email is None:
            params = {"ls_user_ids": _uuid(ls_user_id, "ls_user_id")}
            matches = lambda m: m.ls_user_id == params["ls_user_ids"]  # noqa: E731
        elif email is not None and ls_user_id is None:
            wanted = email.lower()
            params = {"emails": email}
            matches = lambda m: (m.email or "").lower() == wanted  # noqa: E731
        else:
            raise ValueError("give exactly one of ls_user_id or email")
        return self._find_one(
            "/api/v1/orgs/current/members/active", params, OrgMember.from_api, matches
        )

    def find_workspace_member(self, workspace_id: str, ls_user_id: str) -> WorkspaceMember | None:
        """The user's live membership row in that workspace, or None when not a member."""
        workspace_id = _uuid(workspace_id, "workspace_id")
        ls_user_id = _uuid(ls_user_id, "ls_user_id")
        return self._find_one(
            "/api/v1/workspaces/current/members/active",
            {"ls_user_ids": ls_user_id},
            lambda row: WorkspaceMember.from_api(row, workspace_id),
            lambda m: m.ls_user_id == ls_user_id,
            workspace_id=workspace_id,
        )

    # ------------------------------------------------------- the access picture (section 9)
    #
    # One method per route. A section the org, key or install does not have raises
    # SectionUnavailableError (a skip, with its reason); every other failure stays an error.

    def organization_info(self) -> OrganizationInfo:
        """The org info, typed (read once per client): plan flags, the key's permissions and
        the org's security settings."""
        return _parse_record(OrganizationInfo.from_api, self.organization_info_once(), "GET", ORGANIZATION_INFO_PATH)

    def get_platform_organization_info(self) -> OrganizationInfo:
        """The platform twin of the org info (``orgs.OrganizationInfo``), read now."""
        return _parse_record(
            OrganizationInfo.from_api, self._get_json(PLATFORM_ORGANIZATION_INFO_PATH, expect=dict),
            "GET", PLATFORM_ORGANIZATION_INFO_PATH,
        )

    def section_plan(
        self, *, membership_route: str | None = None, membership_route_reason: str | None = None
    ) -> SectionPlan:
        """``plan_sections`` for this org and key (one request for the org info, once)."""
        return plan_sections(
            self.organization_info(),  # parsed here, so a bad answer names its route
            membership_route=membership_route,
            membership_route_reason=membership_route_reason,
        )

    def list_access_policies(self) -> list[AccessPolicy]:
        """Every ABAC access policy (``{"access_policies": [...]}``; no paging)."""

        def read() -> list[AccessPolicy]:
            body = self._get_json(ACCESS_POLICIES_PATH, expect=dict)
            rows = body.get("access_policies")
            if rows is None:
                rows = []
            if not isinstance(rows, list):
                raise UnexpectedResponseError(
                    "access_policies: expected a list", method="GET", path=ACCESS_POLICIES_PATH
                )
            return self._records(AccessPolicy.from_api, rows, ACCESS_POLICIES_PATH)

        return self._section("access_policies", read)

    def get_access_policy(self, policy_id: str) -> AccessPolicy:
        """One access policy; ``NotFoundError`` for an unknown id."""
        path = f"{ACCESS_POLICIES_PATH}/{_uuid(policy_id, 'policy_id')}"
        return self._get_one("access_policies", path, AccessPolicy.from_api)

    def list_service_keys(self) -> list[Credential]:
        """The org's service keys (org-wide, or reaching some workspaces)."""
        return self._section(
            "service_keys",
            lambda: self._credentials(SERVICE_KEYS_PATH, lambda row: Credential.from_api(row, SERVICE_KEY)),
        )

    def list_personal_access_tokens(self) -> list[Credential]:
        """The personal access tokens this key may see (LangSmith documents no listing of every
        member's tokens)."""
        return self._section(
            "personal_access_tokens",
            lambda: self._credentials(
                PERSONAL_ACCESS_TOKENS_PATH, lambda row: Credential.from_api(row, PERSONAL_ACCESS_TOKEN)
            ),
        )

    def list_workspace_service_keys(self, workspace_id: str) -> list[Credential]:
        """One workspace's service keys (one call, with ``X-Tenant-Id``)."""
        workspace_id = _uuid(workspace_id, "workspace_id")
        return self._workspace_section(
            "workspace_service_keys",
            workspace_id,
            lambda: self._credentials(
                WORKSPACE_KEYS_PATH,
                lambda row: Credential.from_api(row, WORKSPACE_SERVICE_KEY, workspace_id),
                workspace_id=workspace_id,
            ),
        )

    def list_resource_tags(self, workspace_id: str) -> list[ResourceTagging]:
        """One workspace's tagged resources (one call, with ``X-Tenant-Id``): every tag value on
        every resource, from ``/workspaces/current/taggings`` (``TaggingsResponse[]``, a tag
        value with its resources by type). A tag value on no resource gives no record."""
        workspace_id = _uuid(workspace_id, "workspace_id")

        def read() -> list[ResourceTagging]:
            rows = self._get_json(TAGGINGS_PATH, expect=list, workspace_id=workspace_id)
            taggings = [
                tagging
                for row in rows
                for tagging in _parse_record(
                    lambda data: ResourceTagging.from_taggings(data, workspace_id), row, "GET", TAGGINGS_PATH,
                    workspace_id,
                )
            ]
            return _unique_by_id(taggings, TAGGINGS_PATH)

        return self._workspace_section("resource_tags", workspace_id, read)

    def _workspace_section(self, section: str, workspace_id: str, read: Callable[[], T]) -> T:
        """``_section`` for a route read with a workspace's ``X-Tenant-Id``, which LangSmith may
        answer with a 404 or a 403 for a workspace deleted since it was listed: then
        ``WorkspaceGoneError``. For a workspace still listed, a 404 is an install without the
        route (``SectionUnavailableError``) and a 403 the key's refusal there."""
        try:
            return self._section(section, read, unknown_id_is_404=True)
        except ProxyRefusalError:
            raise
        except (NotFoundError, PermissionDeniedError) as error:
            if self._workspace_still_listed(workspace_id):
                if isinstance(error, NotFoundError):
                    raise _missing_route(section, error) from None
                raise
            raise WorkspaceGoneError(
                f"workspace {workspace_id} is gone (deleted since it was listed): {error.detail}",
                workspace_id=workspace_id,
                method=error.method,
                path=error.path,
                status_code=error.status_code,
                detail=error.detail,
            ) from None

    def list_service_keys_of_workspaces(
        self, workspace_ids: Iterable[str], *, skip_gone: bool = False
    ) -> dict[str, list[Credential]]:
        """``list_workspace_service_keys`` for many workspaces, at most ``max_concurrency`` at
        once; all or nothing, like ``list_members_of_workspaces``. With ``skip_gone``, a
        workspace deleted since it was listed (``WorkspaceGoneError``) is left out of the answer
        instead: its keys went with it."""
        return self._of_workspaces(workspace_ids, self.list_workspace_service_keys, skip_gone,
                                   "langsmith-workspace-keys")

    def list_resource_tags_of_workspaces(
        self, workspace_ids: Iterable[str], *, skip_gone: bool = False
    ) -> dict[str, list[ResourceTagging]]:
        """``list_resource_tags`` for many workspaces, as ``list_service_keys_of_workspaces``
        reads their keys (``skip_gone``: a workspace deleted since it was listed is left out)."""
        return self._of_workspaces(workspace_ids, self.list_resource_tags, skip_gone, "langsmith-workspace-tags")

    def _of_workspaces(
        self, workspace_ids: Iterable[str], read_one: Callable[[str], list[R]], skip_gone: bool, thread_name: str
    ) -> dict[str, list[R]]:
        """``read_one(workspace_id)`` for each workspace (``_for_each_workspace``); with
        ``skip_gone``, a workspace deleted since it was listed is left out of the answer."""

        def read(workspace_id: str) -> list[R] | None:
            try:
                return read_one(workspace_id)
            except WorkspaceGoneError:
                if skip_gone:
                    return None
                raise

        by_workspace = self._for_each_workspace(workspace_ids, read, thread_name)
        return {workspace_id: records for workspace_id, records in by_workspace.items() if records is not None}

    def list_scim_tokens(self) -> list[Credential]:
        """The org's SCIM bearer tokens (``short_token`` only), as credentials."""
        return self._section(
            "scim_tokens", lambda: self._credentials(SCIM_TOKENS_PATH, Credential.from_scim_token)
        )

    def get_scim_token(self, token_id: str) -> Credential:
        """One SCIM token; ``NotFoundError`` for an unknown id."""
        path = f"{SCIM_TOKENS_PATH}/{_uuid(token_id, 'token_id')}"
        return self._get_one("scim_tokens", path, Credential.from_scim_token)

    def list_service_accounts(self) -> list[ServiceAccount]:
        return self._section(
            "service_accounts",
            lambda: self._records(
                ServiceAccount.from_api, self._get_json(SERVICE_ACCOUNTS_PATH, expect=list),
                SERVICE_ACCOUNTS_PATH,
            ),
        )

    def list_sso_settings(self) -> list[SsoProvider]:
        """The org's SAML SSO configurations (``SSOProvider[]``)."""
        return self._section(
            "sso_settings",
            lambda: self._records(
                SsoProvider.from_api, self._get_json(SSO_SETTINGS_PATH, expect=list), SSO_SETTINGS_PATH
            ),
        )

    def list_audit_events(
        self,
        start: datetime,
        end: datetime,
        *,
        workspace_id: str | None = None,
        operations: Iterable[str] | None = None,
    ) -> AuditWindow:
        """Every audit event from ``start`` to ``end`` (aware datetimes; both ends inclusive, to
        the millisecond, as the route reads them), oldest first.

        Reads the route's pages (``limit`` 100, ``cursor`` sent back) until the cursor is null
        or a page is empty; one event is returned once even if pages repeat it. Overlapping
        windows and de-duplication across them (by ``event_id``), and where the next window
        starts, are the caller's. A server that repeats a cursor, or a page of events already
        seen with a cursor after it, raises ``IncompleteListingError`` instead of looping.
        """
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if start > end:
            raise ValueError(f"start ({start.isoformat()}) is after end ({end.isoformat()})")
        params: dict[str, Any] = {
            "start_time": _iso_millis(start),
            "end_time": _iso_millis(end),
            "limit": AUDIT_PAGE_SIZE,
        }
        if workspace_id is not None:
            params["workspace_id"] = _uuid(workspace_id, "workspace_id")
        if operations is not None:
            params["operations"] = list(operations)

        def read() -> AuditWindow:
            events: dict[str, AuditEvent] = {}
            seen_cursors: set[str] = set()
            cursor: str | None = None
            pages = 0
            while True:
                page_params = {**params, **({"cursor": cursor} if cursor else {})}
                body = self._get_json(AUDIT_LOGS_PATH, params=page_params, expect=dict)
                pages += 1
                items, cursor = _audit_page(body)
                before = len(events)
                for item in items:
                    event = _parse_record(AuditEvent.from_api, item, "GET", AUDIT_LOGS_PATH)
                    events.setdefault(event.event_id, event)
                if cursor is None or not items:
                    break
                if cursor in seen_cursors or len(events) == before:
                    raise IncompleteListingError(
                        f"the audit log's pages do not move on (page {pages} repeats a cursor or "
                        "only events already read): stopped instead of looping",
                        method="GET",
                        path=AUDIT_LOGS_PATH,
                    )
                seen_cursors.add(cursor)
            ordered = tuple(sorted(events.values(), key=lambda e: (e.at, e.event_id)))
            return AuditWindow(start, end, ordered, pages)

        return self._section("audit_events", read)

    def _get_one(self, section: str, path: str, parse: Callable[[Any], T]) -> T:
        """The record at ``path`` (a section's route ending in an id its caller checked as a
        UUID), parsed; a 404 there is an unknown id (``NotFoundError``), not a missing route."""
        return self._section(
            section,
            lambda: _parse_record(parse, self._get_json(path, expect=dict), "GET", path),
            unknown_id_is_404=True,
        )

    def _credentials(self, path: str, parse: Callable[[Any], Credential], *, workspace_id=None) -> list[Credential]:
        rows = self._get_json(path, expect=list, workspace_id=workspace_id)
        return self._records(parse, rows, path, workspace_id)

    @staticmethod
    def _records(parse: Callable[[Any], R], rows: list, path: str, workspace_id=None) -> list[R]:
        return _unique_by_id([_parse_record(parse, row, "GET", path, workspace_id) for row in rows], path)

    def _workspace_still_listed(self, workspace_id: str) -> bool:
        return any(
            w.id == workspace_id and not w.is_deleted for w in self.list_workspaces(include_deleted=True)
        )

    def _section(self, section: str, read: Callable[[], T], *, unknown_id_is_404: bool = False) -> T:
        """``read()``, with the refusals that mean "this org, key or install has no such
        section" turned into ``SectionUnavailableError``: a 404 (an older install; not for a
        route that takes an id, where 404 is an unknown id), or a 403 the org's plan flags or
        the key's permissions explain. Any other error, a proxy's 403 included, stays."""
        try:
            return read()
        except NotFoundError as error:
            if unknown_id_is_404:
                raise
            raise _missing_route(section, error) from None
        except ProxyRefusalError:
            raise
        except PermissionDeniedError as error:
            reason = self._refusal_explained(section)
            if reason is None:
                raise PermissionDeniedError(
                    f"LangSmith refused to let the API key read {section}, although the "
                    "organization's plan flags and the key's permissions say it may. "
                    f"Server said: {error.detail}",
                    method=error.method,
                    path=error.path,
                    status_code=error.status_code,
                    detail=error.detail,
                ) from None
            raise SectionUnavailableError(
                f"{error.method} {error.path} answered 403: {reason}",
                section=section,
                reason=f"{reason} (LangSmith answered 403: {error.detail})",
                method=error.method,
                path=error.path,
                status_code=error.status_code,
                detail=error.detail,
            ) from None

    def _refusal_explained(self, section: str) -> str | None:
        """Why the plan or the key rules the section out, from the org info (read once);
        None when they do not, or when the org info cannot be read either."""
        try:
            info = self.organization_info()
        except LangSmithError:
            return None
        return skip_reason(section, info)

    # ----------------------------------------------------------------- writes

    def add_workspace_member(
        self, workspace_id: str, *, org_identity_id: str, role_id: str
    ) -> WorkspaceMember:
        """Add an existing active org member to a workspace with a workspace role.

        Raises ``ConflictError`` when the user is already a member of that workspace.
        """
        workspace_id = _uuid(workspace_id, "workspace_id")
        body = {
            "org_identity_id": _uuid(org_identity_id, "org_identity_id"),
            # `role_id`, not the docs' `workspace_role_id`, which this route silently drops.
            "role_id": _uuid(role_id, "role_id"),
        }
        created = self._send(
            "POST", "/api/v1/workspaces/current/members", json_body=body, workspace_id=workspace_id
        )
        return _parse_record(
            lambda row: WorkspaceMember.from_api(row, workspace_id),
            created,
            "POST",
            "/api/v1/workspaces/current/members",
            workspace_id,
        )

    def set_workspace_member_role(
        self, workspace_id: str, workspace_identity_id: str, role_id: str
    ) -> None:
        """Replace the member's single role in that workspace."""
        workspace_id = _uuid(workspace_id, "workspace_id")
        identity = _uuid(workspace_identity_id, "workspace_identity_id")
        self._send(
            "PATCH",
            f"/api/v1/workspaces/current/members/{identity}",
            json_body={"role_id": _uuid(role_id, "role_id")},
            workspace_id=workspace_id,
        )

    def remove_workspace_member(self, workspace_id: str, workspace_identity_id: str) -> None:
        """Remove the member from that workspace only (their org membership stays)."""
        workspace_id = _uuid(workspace_id, "workspace_id")
        identity = _uuid(workspace_identity_id, "workspace_identity_id")
        self._send(
            "DELETE", f"/api/v1/workspaces/current/members/{identity}", workspace_id=workspace_id
        )

    # ---------------------------------------------------------------- helpers

    def _get_json(self, path: str, *, params=None, expect: type, workspace_id=None) -> Any:
        response = self._request("GET", path, params=params, workspace_id=workspace_id)
        body = _json_body(response, "GET", path)
        if expect is list and path.startswith(PLATFORM_PATH_PREFIX) and _is_null(response):
            # A Go platform route's empty list (an org without SCIM tokens yet): see _is_null.
            return []
        if not isinstance(body, expect):
            raise UnexpectedResponseError(
                f"expected a JSON {expect.__name__}, got {type(body).__name__}",
                method="GET",
                path=path,
            )
        return body

    def _first_page(self, path: str, parse: Callable[[Any], T], limit: int = 1) -> Listing[T]:
        response = self._request("GET", path, params={"limit": limit, "offset": 0})
        records = [_parse_record(parse, row, "GET", path) for row in _json_list(response, path)]
        return Listing(records, 1, _pagination_total(response, path, self._api_key), 1,
                       _listing_headers(response))

    def _find_one(self, path, params, parse, matches, *, workspace_id=None):
        response = self._request(
            "GET", path, params={**params, "limit": PAGE_SIZE, "offset": 0}, workspace_id=workspace_id
        )
        rows = _json_list(response, path)
        parsed = [_parse_record(parse, row, "GET", path, workspace_id) for row in rows]
        if any(not matches(row) for row in parsed):
            # The server ignored the filter: look through the whole listing instead of
            # trusting one page of it.
            parsed = self._paged(path, parse, workspace_id=workspace_id).items
        found = [row for row in parsed if matches(row)]
        return found[0] if found else None

    def _paged(
        self,
        path: str,
        parse: Callable[[Any], R],
        *,
        params: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        page_concurrency: int | None = None,
    ) -> Listing[R]:
        """Every row of a listing (``_stream`` into a sink that keeps them all)."""
        sink: _CollectingSink[R] = _CollectingSink()
        read = self._stream(
            path,
            parse,
            sink,
            params=params,
            workspace_id=workspace_id,
            page_concurrency=page_concurrency,
        )
        return _listing(sink, read)

    def _stream(
        self,
        path: str,
        parse: Callable[[Any], R],
        sink: ListingSink[R],
        *,
        params: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        page_concurrency: int | None = None,
    ) -> ListingRead:
        """Read every page of a listing into ``sink``, consistently, or raise
        ``IncompleteListingError``.

        The API orders rows by ``created_at`` descending, so rows added while we page shift
        later rows to higher offsets: de-duplicate by id (only the ids of a scan are kept, not
        its rows), and when the server reports a total, accept a scan only if every page
        reported the same total and it matches what was read; otherwise the sink is told to
        forget the scan (``begin_scan``) and the listing is read again.

        Rows removed while we page shift later rows to lower offsets, so one can slip past
        between two pages. With a total, that shows as a total that changed or does not match.
        Without one (LangSmith documents the header only on the enriched members route), each
        page is read from one row before the previous page's end: its first row must be that
        page's last row (or a row seen before, when rows were added); any other row means rows
        went away mid-scan, and the listing is read again.

        A scan reads the first page alone. When the server reports a total, the pages it implies
        (up to the one at ``offset == total``, which confirms the end) are then read up to
        ``page_concurrency`` at a time (default ``max_concurrency``), in a sliding window, and
        handed to the sink in offset order; without a total, one overlapping page at a time.
        Either way the scan stops at the first short page, and continues one page at a time
        past the total if the listing turns out longer.
        """
        concurrency = page_concurrency or self.settings.max_concurrency
        for scan in range(1, MAX_SCANS + 1):
            sink.begin_scan()
            seen: set[str] = set()
            totals: list[int | None] = []
            headers: dict[str, str] = {}
            rows_went_away = stalled = False
            previous_size = 0
            for page in self._scan_pages(path, parse, params, workspace_id, concurrency):
                totals.append(page.total)
                # An overlapping page must start at a row already read: the previous page's last
                # (which is among them), or an earlier one when rows were added meanwhile.
                if page.overlaps_previous and not (page.records and page.records[0].id in seen):
                    rows_went_away = True
                new = [record for record in page.records if record.id not in seen]
                seen.update(record.id for record in new)
                headers = page.headers
                sink.add_page(new, headers)
                if page.is_full and not new and page.size >= previous_size:
                    # A full page of rows already read, no shorter than the one before: the
                    # server is not moving through the listing (it ignores the offset: reading
                    # on would never end), or a page of rows was added meanwhile. (A server
                    # that ignores only the limit sends ever shorter pages from the offset on.)
                    # Only a total that matches what was read says nothing is missing.
                    stalled = True
                    break
                previous_size = page.size
            first_total, last_total = totals[0], totals[-1]
            consistent = all(t == first_total for t in totals) and first_total in (None, len(seen))
            if consistent and not rows_went_away and not (stalled and first_total is None):
                return ListingRead(len(seen), len(totals), last_total, scan, headers)
        where = f" (workspace {workspace_id})" if workspace_id else ""
        if rows_went_away:
            said = ("rows went away between its pages (a page did not start where the one before "
                    "it ended)")
        elif stalled:
            said = ("a full page held only rows already read (the server ignores the offset "
                    "parameter, or a proxy drops it)")
        else:
            said = (f"the server reported {first_total} then {last_total} (X-Pagination-Total) "
                    f"for {len(seen)} distinct rows read")
        raise IncompleteListingError(
            f"{said}, in each of {MAX_SCANS} scans{where}: the listing kept changing or the "
            "server pages inconsistently",
            method="GET",
            path=path,
        )

    def _scan_pages(
        self,
        path: str,
        parse: Callable[[Any], R],
        params: dict[str, Any] | None,
        workspace_id: str | None,
        concurrency: int,
    ) -> Iterator[_Page[R]]:
        """One scan of a listing: its pages in offset order, up to and including the first
        short page (see ``_stream``)."""

        def read(offset: int, overlapping: bool = False) -> _Page[R]:
            response = self._request(
                "GET",
                path,
                params={**(params or {}), "limit": PAGE_SIZE, "offset": offset},
                workspace_id=workspace_id,
            )
            page = _json_list(response, path)
            records = [_parse_record(parse, item, "GET", path, workspace_id) for item in page]
            return _Page(
                _pagination_total(response, path, self._api_key), records, len(page), _listing_headers(response),
                overlapping,
            )

        page = read(0)
        yield page
        if page.is_full and page.total is None:
            # Nothing to check the scan against: overlap each page with the one before by a row.
            offset = PAGE_SIZE - 1
            while page.is_full:
                page = read(offset, overlapping=True)
                yield page
                offset += PAGE_SIZE - 1
            return
        offset = PAGE_SIZE
        if page.is_full and page.total is not None and concurrency > 1:
            # The pages the total implies, read ahead in a sliding window.
            planned_end = page.total  # the page at this offset should be short (or empty)
            with self._pool(concurrency, "langsmith-pages") as pool:
                in_flight: collections.deque = collections.deque()
                read_for_the_caller = self._on_behalf_of_this_thread(read)
                try:
                    while True:
                        while len(in_flight) < concurrency and offset <= planned_end:
                            in_flight.append(pool.submit(read_for_the_caller, offset))
                            offset += PAGE_SIZE
                        if not in_flight:
                            break
                        page = in_flight.popleft().result()
                        yield page
                        if not page.is_full:
                            return
                finally:
                    for future in in_flight:
                        future.cancel()
        while page.is_full:
            page = read(offset)
            yield page
            offset += PAGE_SIZE

    def _send(self, method, path, *, params=None, json_body=None, workspace_id=None) -> Any:
        response = self._request(
            method, path, params=params, json_body=json_body, workspace_id=workspace_id
        )
        return _json_body(response, method, path)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"langsmith-access/{__version__}"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
                pool_sessions = getattr(self._local, "pool_sessions", None)
                if pool_sessions is not None:
                    pool_sessions.append(session)
        return session

    @contextlib.contextmanager
    def _pool(self, max_workers: int, thread_name_prefix: str) -> Iterator[ThreadPoolExecutor]:
        """A thread pool whose threads' sessions (and their kept-alive connections) are closed
        when it ends. Its threads end with it and a new pool's threads open new sessions, so
        otherwise every fan-out left up to ``max_workers`` connections open until ``close()``."""
        pool_sessions: list[requests.Session] = []

        def register() -> None:
            self._local.pool_sessions = pool_sessions

        try:
            with ThreadPoolExecutor(
                max_workers=max_workers, thread_name_prefix=thread_name_prefix, initializer=register
            ) as pool:
                yield pool
        finally:  # the pool's threads are done: nothing uses these sessions any more
            with self._sessions_lock:
                for session in pool_sessions:
                    session.close()
                    self._sessions.remove(session)

    def _headers(self, workspace_id: str | None) -> dict[str, str]:
        headers = {
            "X-API-Key": self._api_key,
            "X-Organization-Id": self.organization_id,
            "Accept": "application/json",
        }
        if workspace_id is not None:
            headers["X-Tenant-Id"] = workspace_id
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        workspace_id: str | None = None,
    ) -> requests.Response:
        is_write = method != "GET"
        url = self.endpoint + path
        context = {"method": method, "path": path}
        where = f" (workspace {workspace_id})" if workspace_id else ""
        attempt = 0
        while True:
            self.stats.add(wait_seconds=self._limiter.acquire())
            retry_after: float | None = None
            status: int | None = None  # None: the attempt got no answer
            self.stats.add(calls=1)
            sent_at = self._clock()
            try:
                response = self._session().request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=self._headers(workspace_id),
                    timeout=self._timeout,
                    allow_redirects=False,  # see EndpointRedirectError
                )
            except requests.exceptions.ConnectTimeout:
                self.stats.add(connection_errors=1)
                problem, maybe_applied = f"connection timed out{where}", False
            except requests.exceptions.RequestException as exc:
                # Any answer that did not arrive whole (ChunkedEncodingError, ContentDecodingError
                # included: a proxy cut or garbled it) is one to retry, never a crash.
                self.stats.add(connection_errors=1)
                kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "dropped"
                # Why, where the connection tells (DNS, refused, TLS, proxy): the fix differs.
                cause, why = _connection_failure(exc, self._timeout)
                # A write that never left this machine is sent again, as after a connect timeout.
                maybe_applied = is_write and cause not in NOT_SENT_CAUSES
                problem = f"the connection {kind}{where}"
                if cause == "not-http" and not maybe_applied:  # it answered: not "no connection"
                    problem = f"{problem}: {why}"
                elif cause not in ("dropped", "read-timeout", "broken", "not-http") and not maybe_applied:
                    problem = f"no connection{where}: {why}"
                if maybe_applied:
                    if cause not in ("dropped", "read-timeout"):  # a proxy or TLS to look at, too
                        problem = f"{problem}: {why}"
                    raise TransientError(
                        f"{problem}; the write may or may not have been applied: re-read "
                        "before retrying",
                        maybe_applied=True,
                        **context,
                    ) from None
            else:
                status = response.status_code
                if 300 <= status < 400:
                    raise _redirected(response, method, path, self._api_key)
                if status < 400:
                    return _without_key(response, self._api_key)
                retry_after = self._retry_wait(response, sent_at)
                if status == 429:
                    self.stats.add(rate_limited=1)
                    problem, maybe_applied = f"rate limited (429){where}", False
                elif status in (408, 425):
                    # 408: the server gave up waiting for the request ("Client took too long to
                    # send request", LangSmith's Python SDK); 425 Too Early: it refused to
                    # process a request that might be replayed. Either way nothing was applied,
                    # and LangChain's Python and JS clients send it again, any method.
                    problem, maybe_applied = f"request not taken ({status}){where}", False
                elif status >= 500:
                    self.stats.add(server_errors=1)
                    problem = f"server error {status}{where}: {self._detail(response)}"
                    maybe_applied = is_write
                    if is_write:
                        raise TransientError(
                            f"{problem}; the write may or may not have been applied: re-read "
                            "before retrying",
                            maybe_applied=True,
                            status_code=status,
                            **context,
                        )
                else:
                    raise self._client_error(response, workspace_id)
            if attempt >= self.settings.max_retries:
                raise TransientError(
                    f"{problem}; gave up after {attempt + 1} attempt{'s' if attempt else ''}",
                    maybe_applied=maybe_applied,
                    status_code=status,  # the last answer's (None: it got none)
                    **context,
                )
            attempt += 1
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            self.stats.add(retries=1, wait_seconds=delay)
            with self._retried_lock:
                self._retry_record().append({
                    "method": method, "path": path, "status_code": status,
                    "problem": problem, "waited_seconds": round(delay, 3),
                })
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, capped. (The exponent is
        capped too: past 2**1023 the float product overflowed, and a LANGSMITH_ACCESS_MAX_RETRIES
        above 1024 ended a long outage's retries in an OverflowError.)"""
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt - 1, 64))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _retry_wait(self, response: requests.Response, sent_at: float) -> float | None:
        """How long to wait before asking again after a 429 or a 5xx sent at ``sent_at``; None
        for any other answer, or a 5xx that says nothing (the backoff decides)."""
        status = response.status_code
        if status != 429 and status < 500:
            return None
        retry_after = _server_retry_hint(response)  # a 503 may say when to come back, too
        if retry_after is None and status == 429:
            # The limit is a fixed window per key, and this request fell in it, so the window
            # began before it was sent: it has surely ended one window length after the send.
            # A shorter backoff would retry inside it.
            retry_after = max(0.0, sent_at + self.settings.rate_limit_window_seconds - self._clock())
        return retry_after

    def _detail(self, response: requests.Response) -> str:
        """The server's error detail, shortened, with the key scrubbed in case it was echoed."""
        try:
            body = response.json()
        except ValueError:
            text = _html_page_said(response) or response.text.strip() or "(empty body)"
        else:
            # FastAPI's `detail`, the platform routes' `error`, RFC 7807's `title` (its `detail`
            # is the first): langsmith-api.md, "accept all three".
            detail = (next((body[key] for key in ("detail", "error", "title", "message") if body.get(key)), body)
                      if isinstance(body, dict) else body)
            if isinstance(detail, list):
                # 422: [{"loc": [...], "msg": ..., "type": ...}]
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
                    if isinstance(item, dict)
                    else str(item)
                    for item in detail
                )
            text = detail if isinstance(detail, str) else json.dumps(detail)
        text = one_line(text).strip() or "(empty body)"
        # The key, or any piece of it (its secret quoted without its prefix escapes mask_keys).
        text = without_runs_of(self._api_key, text)
        if len(text) > ERROR_DETAIL_MAX_CHARS:
            text = text[:ERROR_DETAIL_MAX_CHARS] + "…"
        return text

    def _client_error(self, response: requests.Response, workspace_id: str | None) -> LangSmithError:
        method = response.request.method or "?"
        path = _path_of(response)
        status = response.status_code
        detail = self._detail(response)
        where = f" (workspace {workspace_id})" if workspace_id else ""
        context = _RequestContext(method=method, path=path, status_code=status, detail=detail)
        if status == 401:
            if not isinstance(_json_or_none(response), dict):
                # LangSmith refuses a key with JSON; a page is a gateway's login (as the doctor reads it).
                return ProxyLoginError(
                    "refused with no JSON body: a proxy or single sign-on gateway between here and "
                    "LangSmith asks for its own login; LangSmith never judged the API key",
                    **context,
                )
            return AuthenticationError(
                "LangSmith refused the API key: check that LANGSMITH_API_KEY is a valid, "
                "unexpired service key for LANGSMITH_ENDPOINT",
                **context,
            )
        if status == 403:
            body = _json_or_none(response)
            if not isinstance(body, dict):
                return ProxyRefusalError(
                    "refused with no JSON body: a proxy or firewall between here and LangSmith "
                    "blocked the request, not LangSmith itself",
                    **context,
                )
            if body.get("error") == "org_scoped_key_requires_workspace":
                return PermissionDeniedError(
                    f"this workspace route needs an X-Tenant-Id header{where}: {detail}", **context
                )
            if workspace_id is None:
                return PermissionDeniedError(
                    "the API key has no organization scope (a workspace-scoped key is refused on "
                    "organization routes), the org id does not match the key, or the key is of "
                    f"another region or install than {self.endpoint} (an EU org's key works only "
                    "at https://eu.api.smith.langchain.com): use an organization-scoped service "
                    # Worded so that an org of the orgs file can name its own entry's fields.
                    f"key for LANGSMITH_ORGANIZATION_ID ({self.organization_id}), with "
                    f"LANGSMITH_ENDPOINT set to its org's region or install. Server said: {detail}",
                    **context,
                )
            needed = WORKSPACES_READ if method == "GET" else MANAGE_MEMBERS
            # LangSmith answers a deleted workspace, or one of another org, with 403 or 404
            # (langsmith-api.md): the key's permission is only one of the causes.
            return PermissionDeniedError(
                f"refused in workspace {workspace_id}: the API key may lack {needed} there, or the "
                "workspace was deleted or belongs to another organization (sync again to see the "
                f"current workspaces). Server said: {detail}",
                **context,
            )
        if status == 404:
            return NotFoundError(f"not found{where}: {detail}", **context)
        if status == 409:
            return ConflictError(f"already exists{where}: {detail}", **context)
        return RequestRejectedError(f"request rejected{where}: {detail}", **context)


class _RequestContext(TypedDict):
    """Which request an error is about: the keyword arguments of ``LangSmithError``."""

    method: str
    path: str
    status_code: int
    detail: str


def _missing_route(section: str, error: NotFoundError) -> SectionUnavailableError:
    """A section route that answered 404: this install does not have it."""
    return SectionUnavailableError(
        f"{error.method} {error.path} answered 404: this install does not have the route",
        section=section,
        reason=(
            f"not available here: {error.method} {error.path} answered 404 (a LangSmith version "
            "without it, such as an older self-hosted install)"
        ),
        method=error.method,
        path=error.path,
        status_code=error.status_code,
        detail=error.detail,
    )


def _iso_millis(moment: datetime) -> str:
    """``2026-11-29T10:00:00.000Z``: UTC, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _audit_page(body: dict) -> tuple[list, str | None]:
    """``{"items": [...], "cursor": ...}``: the page's items and the cursor to send back."""
    items, cursor = body.get("items"), body.get("cursor")
    if not isinstance(items, list):
        raise UnexpectedResponseError(
            f"ListAuditLogsOCSFResponse.items: expected a list, got {type(items).__name__}",
            method="GET",
            path=AUDIT_LOGS_PATH,
        )
    if cursor is not None and not isinstance(cursor, str):
        raise UnexpectedResponseError(
            f"ListAuditLogsOCSFResponse.cursor: expected a string or null, got {type(cursor).__name__}",
            method="GET",
            path=AUDIT_LOGS_PATH,
        )
    return items, cursor or None


def _uuid(value: str, what: str) -> str:
    """Canonical UUID text, so no caller-supplied id can reshape a URL path."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{what} must be a UUID, got {str(value)[:64]!r}") from None


def _parse_record(parse: Callable[[Any], T], data: Any, method: str, path: str, workspace_id=None) -> T:
    """``parse(data)``; a record that does not fit the schema is reported with the request that
    returned it (method, path and workspace), so the error says where the bad answer came from."""
    try:
        return parse(data)
    except UnexpectedResponseError as error:
        if error.path is not None:
            raise
        where = f" (workspace {workspace_id})" if workspace_id else ""
        raise UnexpectedResponseError(f"{error}{where}", method=method, path=path) from None


def _listing(sink: _CollectingSink[R], read: ListingRead) -> Listing[R]:
    return Listing(sink.records, read.pages, read.reported_total, read.scans, read.headers)


def _listing_headers(response: requests.Response) -> dict[str, str]:
    """The informational headers of one page (``LISTING_HEADERS`` it carries)."""
    return {name: response.headers[name] for name in LISTING_HEADERS if name in response.headers}


@contextlib.contextmanager
def _enriched_route_errors() -> Iterator[None]:
    """On the enriched members route, a 404 or an answer that is not JSON (or does not parse)
    means the install lacks the route: ``RouteNotAvailableError`` (a ``NotFoundError``), saying
    which. A garbled page after good ones says the same: the caller discards what it read."""
    try:
        yield
    except RouteNotAvailableError:
        raise
    except NotLangSmithAPIError as error:
        raise RouteNotAvailableError(
            str(error),
            reason=f"the enriched members route answered {error.status_code} with "
            f"{error.answer}: not available here (a self-hosted install without that route "
            "serves its web page there)",
            method=error.method,
            path=error.path,
            status_code=error.status_code,
        ) from None
    except NotFoundError as error:
        raise RouteNotAvailableError(
            str(error),
            reason="the enriched members route answered 404: this install does not have it",
            method=error.method,
            path=error.path,
            status_code=error.status_code,
            detail=error.detail,
        ) from None


def _unique_by_id(records: list[R], path: str) -> list[R]:
    seen: dict[str, R] = {}
    for record in records:
        seen.setdefault(record.id, record)
    return list(seen.values())


# Connection failures before a byte of the request was sent: the host name did not resolve,
# nothing listened, or this machine refused the server's certificate in the handshake. (Another
# TLS failure, or a proxy's, may come after the request went out.)
NOT_SENT_CAUSES = frozenset({"dns", "refused", "tls-untrusted"})


def _connection_failure(exc: requests.exceptions.RequestException,
                        timeout: tuple[float, float]) -> tuple[str, str]:
    """Why a request got no answer (``ConnectionFailedError.cause``) and how to say it: DNS, a
    closed port, TLS and a proxy each need a different fix, not just "check the endpoint". The
    proxy's own address is never quoted (it may carry a user and password)."""
    # requests wraps urllib3's MaxRetryError, whose ``reason`` is the error itself.
    chain: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(chain) < 20:
        item = pending.pop()
        if isinstance(item, BaseException) and item not in chain:
            chain.append(item)
            pending.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect-timeout", f"no connection within {timeout[0]:g} s (a firewall dropping it, or a wrong host)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "read-timeout", f"connected, but no answer within {timeout[1]:g} s"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy", "the proxy this machine is set to use (HTTPS_PROXY / HTTP_PROXY) failed"
    untrusted = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if untrusted is not None:
        return "tls-untrusted", ("TLS: its certificate is not trusted here "
                                 f"({untrusted.verify_message or 'certificate verify failed'})")
    if isinstance(exc, requests.exceptions.SSLError):
        tls = next((e for e in chain if isinstance(e, ssl.SSLError) and e.reason), None)
        return "tls", f"the TLS handshake failed ({tls.reason if tls is not None else 'no reason given'})"
    if any(type(e).__name__ == "NameResolutionError" or isinstance(e, socket.gaierror) for e in chain):
        return "dns", "its host name does not resolve (DNS)"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused", "connection refused: nothing listens at that host and port"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "broken", "the answer broke off or could not be decoded (a proxy on the way?)"
    # Bytes came back, but no HTTP status line: another service listens there. (A connection
    # closed unanswered is a BadStatusLine too, RemoteDisconnected: that is "dropped".) The bytes
    # are not quoted: they are whatever that service says.
    if any(isinstance(e, http.client.BadStatusLine) and not isinstance(e, http.client.RemoteDisconnected)
           for e in chain):
        return "not-http", "what answered is not HTTP (another service listens at that host and port)"
    return "dropped", "the connection closed without an answer"


def _without_key(response: requests.Response, api_key: str, *, shown_as: str | None = None) -> requests.Response:
    """``response`` with the key cut from its body, should the server have echoed it into its
    data (a name, an id): nothing read from an answer may carry it to a table, a log or Dagster's
    metadata. One scan of the body's bytes; the body is read here, as every caller reads it.
    ``shown_as``: what stands in its place (by default as LangSmith shows a key). Its
    ``Content-Type`` is cut too (``_content_type``): an answer that is not JSON is quoted by it."""
    key = api_key.encode()
    if b"\\u" in response.content:
        # JSON may spell any character as \uXXXX: the key spelt so decodes whole, and no scan of
        # the bytes finds it. Those of a key's characters (none needs escaping) are written plainly
        # first, which changes nothing a JSON reader reads.
        response._content = _ESCAPED_KEY_CHARACTER.sub(_plainly, response.content)
    if key and key in response.content:
        # As LangSmith shows a key (its prefix and last four): a listing that names this key
        # (the service keys) reads as it would have, had the server not leaked it.
        shown = redact_short_key(api_key)[0] if shown_as is None else shown_as
        response._content = response.content.replace(key, shown.encode())
    if api_key and response.content:
        # And any long piece of it (its secret echoed without its prefix, which no whole-key scan
        # finds), as in the client's errors. Latin-1 maps each byte to one character and back, and
        # the key's characters are ASCII, which UTF-8 never uses inside another character.
        text = response.content.decode("latin-1")
        cut = without_runs_of(api_key, text)
        if cut != text:
            response._content = cut.encode("latin-1")
    if "Content-Type" in response.headers:
        response.headers["Content-Type"] = _content_type(response, api_key)
    return response


# ``\u00XX`` spelling a key's character ('-', digits, letters, '_') in JSON, with the run of
# backslashes before it (group 1): an escape only when that run is odd (an even one is that many
# escaped backslashes, and "u00XX" after it is text). A literal first: a page is scanned fast.
_ESCAPED_KEY_CHARACTER = re.compile(rb"(\\+)u00(2[dD]|3[0-9]|4[1-9a-fA-F]|5[0-9aAfF]|6[1-9a-fA-F]|7[0-9aA])")


def _plainly(match: re.Match[bytes]) -> bytes:
    backslashes, code = match.group(1), match.group(2)
    return backslashes[:-1] + bytes([int(code, 16)]) if len(backslashes) % 2 else match.group(0)


def _content_type(response: requests.Response, api_key: str) -> str:
    """The answer's ``Content-Type`` ("" when none), any key or piece of ours in it cut: the
    client's errors and the doctor quote it when an answer is not JSON."""
    return _keys_cut(api_key, response.headers.get("Content-Type") or "")


def _path_of(response: requests.Response) -> str:
    url = response.request.path_url if response.request is not None else ""
    return url.split("?", 1)[0]


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_body(response: requests.Response, method: str, path: str) -> Any:
    """Decode a 2xx body; ``None`` for 204 or an empty body (DELETE may answer either).

    A body that is not JSON, or does not parse although it says it is, is never data:
    ``NotLangSmithAPIError`` (langsmith-api.md, "Deployments and base URLs", rule 3). Nor is an
    empty 2xx that says it is something else (``text/html``, a proxy's or a web UI's empty page):
    a write answered so never reached LangSmith's API, and must not read as applied.
    """
    if response.status_code == 204:
        return None
    content_type = response.headers.get("Content-Type")
    if content_type and not _is_json_type(content_type):
        raise _not_langsmith(
            response, method, path,
            f"a body that is not JSON (content-type {content_type!r}, {len(response.content)} bytes)",
        )
    if not response.content:
        return None
    try:
        # orjson: a 500-member page (~600 KB) decodes in a third of the standard library's time.
        return orjson.loads(response.content)
    except ValueError:
        # Declared JSON (or undeclared) but cut short or garbled: whatever answered is not
        # LangSmith's API as configured, or a proxy on the way mangles its answers.
        raise _not_langsmith(
            response, method, path,
            f"a body that does not parse as JSON (content-type {content_type!r}, "
            f"{len(response.content)} bytes; a proxy cutting answers short looks the same)",
        ) from None


def _is_json_type(content_type: str) -> bool:
    """``application/json``, ``application/problem+json`` and the like, any parameters."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _not_langsmith(
    response: requests.Response, method: str, path: str, answer: str
) -> NotLangSmithAPIError:
    """``answer`` says what came back (never the body: it may echo what was sent)."""
    return NotLangSmithAPIError(
        f"not a LangSmith API: check LANGSMITH_ENDPOINT; it answered {response.status_code} "
        f"with {answer}",
        answer=answer,
        method=method,
        path=path,
        status_code=response.status_code,
    )


def _shown_location(base: str, location: str) -> str:
    """Where a redirect points, as scheme, host (IPv6 in brackets), port and path."""
    target = urllib.parse.urlsplit(urllib.parse.urljoin(base, location))
    try:
        port = f":{target.port}" if target.port else ""
    except ValueError:  # a port that is no port: show the rest
        port = ""
    host = target.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{target.scheme}://{host}{port}{target.path}"


def _keys_cut(api_key: str, header: str) -> str:
    """A response header quoted in an error: any key in it cut to ``lsv2_***`` as elsewhere, and
    any piece of our key (its secret without its prefix) to ``***``."""
    return without_runs_of(api_key, mask_keys(header))


def _redirected(response: requests.Response, method: str, path: str, api_key: str) -> EndpointRedirectError:
    """A 3xx answer, never followed. Where it points is shown as scheme, host and path: a query
    or user name in a ``Location`` is nobody's business in a log, nor any piece of the key."""
    location = _shown_location(response.url, response.headers.get("Location", ""))
    location = _keys_cut(api_key, location)
    return EndpointRedirectError(
        f"LANGSMITH_ENDPOINT answered with a redirect to {location}: requests are never followed "
        "to another address (a write would arrive as a read, and the key would go along)",
        location=location,
        method=method,
        path=path,
        status_code=response.status_code,
    )


_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _html_page_said(response: requests.Response) -> str | None:
    """An error answered with a web page (a proxy's or a frontend's 404 or 502) said by its
    title, not its markup: the page's text would fill the error, the sync_runs row and the
    notification with HTML. None when the answer is no HTML page."""
    text = response.text.lstrip()
    if "html" not in response.headers.get("Content-Type", "").lower() and not text[:15].lower().startswith(
            ("<!doctype html", "<html")):
        return None
    title = _HTML_TITLE.search(text)
    named = f" titled {one_line(title.group(1)).strip()!r}" if title and title.group(1).strip() else ""
    return f"an HTML page{named}, not LangSmith's JSON (a proxy or web frontend answered)"


def _is_null(response: requests.Response) -> bool:
    """Whether a 2xx answered the JSON ``null``: how Go, the platform routes' language, encodes
    a list it never appended to (LangChain's own Go CLI did so: langsmith-cli pull request 90)."""
    return response.status_code != 204 and response.content.strip() == b"null"


def _json_list(response: requests.Response, path: str) -> list[Any]:
    body = _json_body(response, "GET", path)
    if _is_null(response):
        # A page past the end (read at offset == X-Pagination-Total) may come so. An empty page;
        # one in the middle of a listing still fails the scan's total and overlap checks.
        return []
    if not isinstance(body, list):
        raise UnexpectedResponseError(
            f"expected a JSON array page, got {type(body).__name__}", method="GET", path=path
        )
    return body


def _pagination_total(response: requests.Response, path: str, api_key: str) -> int | None:
    raw = response.headers.get("X-Pagination-Total")
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise UnexpectedResponseError(
            f"X-Pagination-Total is not a number: {_keys_cut(api_key, raw[:40])!r}",
            method="GET",
            path=path,
        ) from None


def _server_retry_hint(response: requests.Response) -> float | None:
    """How long the server asked us to wait: ``Retry-After-Ms`` (milliseconds, LangChain's Go
    SDK reads it first), else ``Retry-After``; None when it asked nothing usable."""
    raw_ms = (response.headers.get("Retry-After-Ms") or "").strip()
    try:
        milliseconds = float(raw_ms)
    except ValueError:
        milliseconds = -1.0
    if milliseconds >= 0 and math.isfinite(milliseconds):
        return min(milliseconds / 1000.0, MAX_RETRY_AFTER_SECONDS)
    return retry_after_seconds(response.headers.get("Retry-After"), longest=MAX_RETRY_AFTER_SECONDS)
