"""Helpers for the tests of the LangSmith client against the sandbox server (real HTTP).

- ``client_for(sandbox, ...)``: a ``LangSmithClient`` pointed at a sandbox, with short timeouts.
- ``RecordingSleep``: a ``sleep=`` for the client that records every wait asked for, can heal
  the sandbox's faults after N waits, and sleeps for real only when asked to.
- ``read_everything`` / ``project_read`` / ``expected_from_org``: one full read of an org by the
  client, and what it must equal according to the sandbox's ``OrgState``.
- ``expect_error``: ``pytest.raises`` that also checks no API key leaks into the exception.
- ``wrap_respond``: put a function in front of ``SandboxServer.respond`` (to misbehave, or to
  measure requests in flight); ``ids_in_capitals``: one such, spelling every UUID in capitals.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from dataclasses import replace
from typing import Callable

import pytest

from langsmith_access.langsmith import LangSmithClient
from langsmith_access.sandbox import OrgState, SandboxServer
from langsmith_access.sandbox.api import ApiRequest, ApiResponse
from langsmith_access.settings import ClientSettings, Secret

ROLES = "/api/v1/orgs/current/roles"
WORKSPACES = "/api/v1/workspaces"
ACTIVE = "/api/v1/orgs/current/members/active"
PENDING = "/api/v1/orgs/current/members/pending"
ENRICHED = "/api/v1/platform/orgs/current/members"  # platform routes are called under /api/v1
INFO = "/api/v1/orgs/current/info"
WS_ROUTES = "/api/v1/workspaces/current/"
WS_ACTIVE = "/api/v1/workspaces/current/members/active"
WS_MEMBERS = "/api/v1/workspaces/current/members"

# No test here wants the client-side limiter to wait unless it says so.
UNLIMITED_RPM = 60_000


def client_for(
    sandbox: SandboxServer,
    *,
    api_key: str | None = None,
    organization_id: str | None = None,
    sleep: Callable[[float], None] | None = None,
    requests_per_minute: int = UNLIMITED_RPM,
    max_concurrency: int = 4,
    read_timeout_seconds: float = 2.0,
    max_retries: int = 3,
    clock: Callable[[], float] | None = None,
) -> LangSmithClient:
    settings = ClientSettings(
        api_key=Secret(api_key or sandbox.api_key),
        organization_id=organization_id or sandbox.organization_id,
        endpoint=sandbox.url,
        requests_per_minute=requests_per_minute,
        max_concurrency=max_concurrency,
        connect_timeout_seconds=2.0,
        read_timeout_seconds=read_timeout_seconds,
        max_retries=max_retries,
    )
    paced: dict = {"sleep": sleep, "clock": clock}
    return LangSmithClient(settings, **{name: given for name, given in paced.items() if given is not None})


class RecordingSleep:
    """Records each wait the client asks for; ``heal`` runs with the count after each wait."""

    def __init__(self, *, real: bool = False, heal: Callable[[int], None] | None = None):
        self.waits: list[float] = []
        self.real = real
        self.heal = heal
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            count = len(self.waits)
        if self.heal is not None:
            self.heal(count)
        if self.real:
            time.sleep(seconds)


def heal_after(sandbox: SandboxServer, waits: int, **fault_values) -> RecordingSleep:
    """A fake sleep that sets the sandbox's fault fields to ``fault_values`` after ``waits``
    waits: the first requests get the fault, the retry after the last wait does not."""

    def heal(count: int) -> None:
        if count >= waits:
            for name, value in fault_values.items():
                setattr(sandbox.faults, name, value)

    return RecordingSleep(heal=heal)


def wrap_respond(sandbox: SandboxServer, wrapper) -> None:
    """``wrapper(original_respond, request)`` answers every request from now on."""
    original = sandbox.respond
    sandbox.respond = lambda request: wrapper(original, request)  # type: ignore[method-assign]


_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ids_in_capitals(sandbox: SandboxServer) -> None:
    """From now on the sandbox's answers spell every UUID in capitals (LangSmith's ids are UUIDs,
    and a UUID's spelling is no part of it); what it is sent, it reads as before."""

    def capitals(value):
        if isinstance(value, str):
            return value.upper() if _UUID_TEXT.fullmatch(value) else value
        if isinstance(value, list):
            return [capitals(item) for item in value]
        if isinstance(value, dict):
            return {key: capitals(item) for key, item in value.items()}
        return value

    def respond(original, request: ApiRequest) -> ApiResponse:
        response = original(request)
        return replace(response, body=capitals(response.body))

    wrap_respond(sandbox, respond)


def with_query(request: ApiRequest, **values) -> ApiRequest:
    return replace(request, query={**request.query, **{k: [str(v)] for k, v in values.items()}})


def query_int(request: ApiRequest, name: str, default: int) -> int:
    values = request.query.get(name)
    return int(values[-1]) if values else default


# ------------------------------------------------------------------ secrets in errors


def assert_no_key_in(exc: BaseException, *keys: str) -> None:
    """No key in str/repr/args/detail of the exception or anything chained to it, nor in its
    formatted traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts.append(repr(getattr(current, "detail", None)))
        current = current.__cause__ or current.__context__
    for key in keys:
        assert key, "an empty key would prove nothing"
        for text in texts:
            assert key not in text


def expect_error(error_type, call, *, keys, contains=()):
    """Run ``call``; it must raise ``error_type``, mention every ``contains`` and leak no key."""
    with pytest.raises(error_type) as info:
        call()
    error = info.value
    assert type(error) is error_type or isinstance(error, error_type)
    for text in contains:
        assert text in str(error), f"{text!r} not in {str(error)!r}"
    assert_no_key_in(error, *keys)
    return error


# ------------------------------------------------------------------ one full read


def read_everything(client: LangSmithClient) -> dict:
    """Everything the client can read about the org, as sorted lists of records."""
    workspaces = client.list_workspaces(include_deleted=True)
    readable = [w.id for w in workspaces if not w.is_deleted]
    by_workspace = client.list_members_of_workspaces(readable)
    return {
        "info_id": client.get_organization_info()["id"],
        "roles": sorted(client.list_roles(), key=lambda r: r.id),
        "workspaces": sorted(workspaces, key=lambda w: w.id),
        "members": sorted(client.list_org_members(), key=lambda m: m.id),
        "pending": sorted(client.list_pending_invites(), key=lambda p: p.id),
        "enriched": sorted(
            (
                replace(e, workspace_memberships=tuple(sorted(e.workspace_memberships, key=lambda x: x.workspace_id)))
                for e in client.list_enriched_members()
            ),
            key=lambda e: e.id,
        ),
        "workspace_members": {
            w: sorted(listing.items, key=lambda m: m.id) for w, listing in sorted(by_workspace.items())
        },
    }


def project_read(read: dict) -> dict:
    """The fields of a client read that the sandbox's ``OrgState`` can be compared with."""
    return {
        "info_id": read["info_id"],
        "roles": {
            r.id: (r.name, r.display_name, r.description, r.access_scope, tuple(r.permissions), r.organization_id)
            for r in read["roles"]
        },
        "workspaces": {
            w.id: (w.display_name, w.is_personal, w.is_deleted, w.tenant_handle, w.organization_id)
            for w in read["workspaces"]
        },
        "members": {
            m.id: (m.ls_user_id, m.user_id, m.email, m.full_name, m.display_name, m.is_disabled, m.role_id, m.role_name)
            for m in read["members"]
        },
        "pending": {
            p.id: (p.email, p.role_id, p.workspace_ids, p.workspace_role_id) for p in read["pending"]
        },
        "enriched": {
            e.id: (
                e.ls_user_id,
                e.email,
                e.is_pending,
                e.is_disabled,
                e.role_id,
                frozenset((m.workspace_id, m.role_id, m.role_name) for m in e.workspace_memberships),
            )
            for e in read["enriched"]
        },
        "workspace_members": {
            w: {m.id: (m.ls_user_id, m.email, m.role_id, m.role_name, m.org_role_id, m.is_disabled) for m in rows}
            for w, rows in read["workspace_members"].items()
        },
    }


def expected_from_org(org: OrgState) -> dict:
    """What ``project_read`` must give for this org, computed from the sandbox's own state."""
    with org.lock:
        roles = org.roles
        role_name = lambda role_id: roles[role_id].display_name  # noqa: E731
        return {
            "info_id": org.organization_id,
            "roles": {
                r.id: (r.name, r.display_name, r.description, r.access_scope, tuple(r.permissions), r.organization_id)
                for r in roles.values()
            },
            "workspaces": {
                w.id: (w.display_name, w.is_personal, w.is_deleted, w.tenant_handle, org.organization_id)
                for w in org.all_workspaces()
            },
            "members": {
                m.id: (
                    m.ls_user_id, m.user_id, m.email, m.full_name, m.display_name, m.is_disabled,
                    m.org_role_id, role_name(m.org_role_id),
                )
                for m in org.active_members()
            },
            "pending": {
                i.id: (i.email, i.org_role_id, tuple(i.workspace_ids or ()), i.workspace_role_id)
                for i in org.pending_org_invites()
            },
            "enriched": {
                **{
                    m.id: (
                        m.ls_user_id, m.email, False, m.is_disabled, m.org_role_id,
                        frozenset(
                            (ms.workspace_id, ms.role_id, role_name(ms.role_id))
                            for ms in org.memberships_of(m.ls_user_id)
                        ),
                    )
                    for m in org.active_members()
                },
                **{
                    i.id: (None, i.email, True, False, i.org_role_id, frozenset())
                    for i in org.pending_org_invites()
                },
            },
            "workspace_members": {
                w.id: {
                    ms.id: (
                        ms.ls_user_id,
                        org.members[ms.ls_user_id].email,
                        ms.role_id,
                        role_name(ms.role_id),
                        org.members[ms.ls_user_id].org_role_id,
                        org.members[ms.ls_user_id].is_disabled,
                    )
                    for ms in w.memberships.values()
                }
                for w in sorted(org.all_workspaces(), key=lambda w: w.id)
                if not w.is_deleted
            },
        }


def no_duplicates(records) -> bool:
    ids = [r.id for r in records]
    return len(ids) == len(set(ids))


__all__ = [
    "ACTIVE",
    "ApiResponse",
    "ENRICHED",
    "INFO",
    "PENDING",
    "ROLES",
    "RecordingSleep",
    "WORKSPACES",
    "WS_ACTIVE",
    "WS_MEMBERS",
    "WS_ROUTES",
    "assert_no_key_in",
    "client_for",
    "expect_error",
    "expected_from_org",
    "heal_after",
    "no_duplicates",
    "project_read",
    "query_int",
    "read_everything",
    "with_query",
    "wrap_respond",
]
