"""Carry out claimed requests against LangSmith: validate live, read, plan, apply, verify, audit.

Plain Python (no Dagster). Every decision and every API call is recorded in
``provisioning_events`` as it happens, so a run killed at any point leaves a trail the next run
settles from live state:

- ``write_sent`` is recorded *before* a write goes out; a request found ``in_progress`` with a
  ``write_sent`` and no answer is settled by reading live state, never by blindly re-sending.
- A write whose answer was lost (5xx, dropped connection) is verified by a read before any retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import duckdb

from langsmith_access.langsmith import (
    ConflictError,
    LangSmithClient,
    LangSmithError,
    NotFoundError,
    Role,
    TransientError,
    UnexpectedResponseError,
    Workspace,
    WorkspaceMember,
)
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.planner import ADD, CHANGE_ROLE, NOTHING, REMOVE, Plan, desired_role, plan_change

MAX_WRITE_ATTEMPTS = 3


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
    def read(cls, client: LangSmithClient) -> "LiveDirectory":
        return cls(
            roles={r.id: r for r in client.list_roles()},
            workspaces={w.id: w for w in client.list_workspaces(include_deleted=True)},
        )

    @property
    def role_names(self) -> dict[str, str]:
        return {role_id: role.display_name for role_id, role in self.roles.items()}


class Rejected(Exception):
    """Live validation refused the request (the message says why)."""


@dataclass
class Provisioner:
    client: LangSmithClient
    conn: duckdb.DuckDBPyConnection  # the working database; the caller holds the writer lease
    run_id: str
    dry_run: bool = False
    log: Callable[[str], None] = lambda line: None
    directory: LiveDirectory | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def process(self, request: dict) -> Outcome:
        if self.directory is None:
            self.directory = LiveDirectory.read(self.client)
        request_id = request["request_id"]
        try:
            outcome = self._process(request)
        except Rejected as rejection:
            outcome = Outcome(request_id, "rejected", str(rejection))
        except LangSmithError as error:
            outcome = Outcome(request_id, "failed", str(error))
        if not self.dry_run:
            self._event(request_id, "settled", {"status": outcome.status, "detail": outcome.detail})
            queue.set_status(self.conn, request_id, outcome.status, outcome.detail, self.run_id)
        self.outcomes.append(outcome)
        self.log(f"{outcome.status:<17} {request_id}  {outcome.detail}")
        return outcome

    # ------------------------------------------------------------------ steps

    def _process(self, request: dict) -> Outcome:
        request_id = request["request_id"]
        action, user_id = request["action"], request["user_id"]
        workspace_id, role_id = request["workspace_id"], request["role_id"]
        member = self._validate_live(request)
        # A write this request sent earlier (by a run that died) is settled from live state.
        earlier_writes = self._earlier_writes(request_id)

        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            live = self._read_live(request_id, workspace_id, user_id)
            plan = plan_change(
                action, role_id, live.role_id if live else None, live.id if live else None,
                self.directory.role_names,
            )
            self._event(request_id, "planned", {"plan": plan.kind, "explanation": plan.explanation,
                                                "current_role_id": plan.current_role_id, "attempt": attempt})
            if self.dry_run:
                return Outcome(request_id, "planned", plan.explanation, plan)
            if not plan.needs_write:
                if earlier_writes or attempt > 1:
                    # Our own earlier write (whose answer was lost) is what made it so.
                    self._update_grants(request, live)
                    return Outcome(request_id, "applied", f"verified: {plan.explanation}", plan,
                                   writes=earlier_writes + attempt - 1)
                return Outcome(request_id, "already_satisfied", plan.explanation, plan)
            try:
                self._apply(request_id, workspace_id, member.id, plan)
            except (TransientError, UnexpectedResponseError) as error:
                # No usable answer (5xx, dropped, or a 2xx we cannot read): the write may have
                # been applied. Re-read and decide again; never resend blindly.
                maybe_applied = getattr(error, "maybe_applied", True)
                self._event(request_id, "write_uncertain", {"error": str(error), "maybe_applied": maybe_applied})
                if attempt == MAX_WRITE_ATTEMPTS:
                    raise
                continue  # re-read before anything else
            except (ConflictError, NotFoundError) as error:
                # Someone changed the membership between our read and our write: re-plan.
                self._event(request_id, "write_conflict", {"error": str(error)})
                if attempt == MAX_WRITE_ATTEMPTS:
                    raise
                continue
            verified = self._read_live(request_id, workspace_id, user_id, kind="verified")
            wanted = desired_role(action, role_id, plan.current_role_id)
            got = verified.role_id if verified else None
            if got != wanted:
                names = self.directory.role_names
                return Outcome(
                    request_id, "failed",
                    f"verification failed: after '{plan.explanation}' the live role is "
                    f"{names.get(got, got) if got else 'none (not a member)'}",
                    plan, writes=attempt,
                )
            self._update_grants(request, verified)
            return Outcome(request_id, "applied", plan.explanation, plan, writes=attempt)
        raise AssertionError("unreachable")

    def _validate_live(self, request: dict):
        """Everything checked at queue time, checked again against LangSmith now."""
        role = self.directory.roles.get(request["role_id"])
        if role is None:
            raise Rejected(f"role {request['role_name'] or request['role_id']} no longer exists in LangSmith")
        if role.access_scope != "workspace":
            raise Rejected(f"{role.display_name!r} is an organization role: read-only here")
        workspace = self.directory.workspaces.get(request["workspace_id"])
        if workspace is None:
            raise Rejected(f"workspace {request['workspace_id']} no longer exists in LangSmith")
        if not workspace.is_shared:
            kind = "deleted" if workspace.is_deleted else "personal"
            raise Rejected(f"workspace {workspace.display_name!r} is {kind} now")
        member = self.client.find_org_member(ls_user_id=request["user_id"])
        self._event(request["request_id"], "validated_live",
                    {"org_member": member is not None, "role": role.display_name,
                     "workspace": workspace.display_name})
        if member is None:
            raise Rejected(
                f"{request['user_email'] or request['user_id']} is not an active org member any more"
            )
        return member

    def _read_live(self, request_id: str, workspace_id: str, user_id: str, kind: str = "read_live") -> WorkspaceMember | None:
        live = self.client.find_workspace_member(workspace_id, user_id)
        self._event(request_id, kind, {
            "method": "GET", "path": "/api/v1/workspaces/current/members/active",
            "workspace_id": workspace_id, "member": live is not None,
            "role_id": live.role_id if live else None,
        })
        return live

    def _apply(self, request_id: str, workspace_id: str, org_identity_id: str, plan: Plan) -> None:
        if plan.kind == ADD:
            call = ("POST", "/api/v1/workspaces/current/members")
        elif plan.kind == CHANGE_ROLE:
            call = ("PATCH", f"/api/v1/workspaces/current/members/{plan.workspace_identity_id}")
        elif plan.kind == REMOVE:
            call = ("DELETE", f"/api/v1/workspaces/current/members/{plan.workspace_identity_id}")
        else:
            raise AssertionError(plan.kind)
        detail = {"method": call[0], "path": call[1], "workspace_id": workspace_id,
                  "plan": plan.kind, "role_id": plan.target_role_id}
        # Recorded before the call: if we die now, the next run knows a write may have gone out.
        self._event(request_id, "write_sent", detail)
        try:
            if plan.kind == ADD:
                self.client.add_workspace_member(workspace_id, org_identity_id=org_identity_id, role_id=plan.target_role_id)
            elif plan.kind == CHANGE_ROLE:
                self.client.set_workspace_member_role(workspace_id, plan.workspace_identity_id, plan.target_role_id)
            else:
                self.client.remove_workspace_member(workspace_id, plan.workspace_identity_id)
        except LangSmithError as error:
            self._event(request_id, "write_answered", {**detail, "status_code": error.status_code,
                                                        "error": type(error).__name__})
            raise
        self._event(request_id, "write_answered", {**detail, "status_code": 200})

    def _earlier_writes(self, request_id: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM main.provisioning_events WHERE request_id = ? AND kind = 'write_sent'",
            [request_id],
        ).fetchone()[0]

    def _event(self, request_id: str, kind: str, detail: dict) -> None:
        if not self.dry_run:
            queue.record_event(self.conn, request_id, kind, detail, run_id=self.run_id)

    def _update_grants(self, request: dict, live: WorkspaceMember | None) -> None:
        """Make ``grants`` show the member's live role in that workspace, at once."""
        update_workspace_grant(self.conn, request["user_id"], request["workspace_id"], live,
                               self.directory.role_names)


def update_workspace_grant(
    conn: duckdb.DuckDBPyConnection,
    user_id: str,
    workspace_id: str,
    live: WorkspaceMember | None,
    role_names: dict[str, str],
) -> None:
    """Replace the user's workspace-role grant in one workspace by the live one (or none).

    Ids follow the dbt models: entitlement ``workspace_role:<workspace>:<role>`` and grant
    ``<entitlement>:<user>``.
    """
    conn.execute("BEGIN")
    try:
        conn.execute(
            "DELETE FROM main.grants WHERE entitlement_type = 'workspace_role' "
            "AND user_id = ? AND workspace_id = ?",
            [user_id, workspace_id],
        )
        if live is not None and live.role_id:
            entitlement_id = f"workspace_role:{workspace_id}:{live.role_id}"
            conn.execute(
                "INSERT INTO main.grants (grant_id, entitlement_id, entitlement_type, user_id, email, "
                "workspace_id, role_id, role_name, is_provisionable, workspace_identity_id) "
                "SELECT ?, ?, 'workspace_role', ?, (SELECT email FROM main.users WHERE user_id = ?), "
                "?, ?, ?, true, ?",
                [f"{entitlement_id}:{user_id}", entitlement_id, user_id, user_id, workspace_id,
                 live.role_id, role_names.get(live.role_id), live.id],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
