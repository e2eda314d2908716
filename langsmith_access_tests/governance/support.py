"""What the governance tests share: the command line (run in this process), a policy over one workspace of the
session's synced org, who is who there, and reading the queue back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from langsmith_access.api import list_requests, request_grant
from langsmith_access_tests.helpers import cli_in_this_process, query
from langsmith_access_tests.synced import WRITES

WORKSPACE = "Search Relevance"  # the generated org's one workspace of that name

POLICY = f"""\
approval:
  required: ["Admin"]
  workspaces: ["{WORKSPACE}"]
  approvers: workspace_admins
  self_approval: false
  wait_at_most: 72h
duration:
  max: {{"Admin": 8h, "*": 90d}}
"""


def queued_before_admin_had_a_max(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, email: str, **asked):
    """A grant of Admin on WORKSPACE to ``email``, queued while the policy gave Admin no max (so
    with no end), awaiting approval; the governing policy (Admin: 8h at most) in force again."""
    governing = os.environ["LANGSMITH_ACCESS_POLICY"]
    no_max = tmp_path / "no-max.yaml"
    no_max.write_text(POLICY.replace('max: {"Admin": 8h, "*": 90d}', "max: {}"))
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(no_max))
    grant = request_grant(email, WORKSPACE, "Admin", **asked)
    assert grant.status == "awaiting_approval", grant
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", governing)
    return grant


def cli(*args: str) -> subprocess.CompletedProcess:
    """The command line, in this process (``cli_in_this_process``): exit code and output."""
    return cli_in_this_process(*args)


def writes(sandbox):
    return [r for r in sandbox.request_log.snapshot() if r.method in WRITES]


def request_row(database, request_id: str) -> dict:
    [row] = [r for r in list_requests(database=database.path) if r["request_id"] == request_id]
    return row


def events(database, request_id: str) -> list[tuple[str, dict]]:
    return [(kind, json.loads(detail)) for kind, detail in query(
        database.path, 'SELECT kind, detail FROM main.provisioning_events WHERE request_id = ? ORDER BY "at", kind',
        [request_id])]


class People:
    """Who is who in the workspace under the policy, from the generated org."""

    def __init__(self, org):
        self.workspace = next(w for w in org.shared_workspaces() if w.display_name == WORKSPACE)
        names = {r.id: r.name for r in org.roles.values()}
        self.roles = {r.display_name: r.id for r in org.roles_by_scope("workspace")}
        enabled = [m for m in org.active_members() if not m.is_disabled]
        role_here = {user: names[m.role_id] for user, m in self.workspace.memberships.items()}
        self.admin = next(m for m in enabled if role_here.get(m.ls_user_id) == "WORKSPACE_ADMIN")
        self.editors = [m for m in enabled if role_here.get(m.ls_user_id) == "WORKSPACE_USER"
                        and names[m.org_role_id] != "ORGANIZATION_ADMIN"]
        self.outsiders = [m for m in enabled if m.ls_user_id not in self.workspace.memberships]
        self.disabled = next(m for m in org.active_members() if m.is_disabled)
        self.invitee = org.pending_org_invites()[0].email
