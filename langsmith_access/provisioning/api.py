"""The Python API for notebooks and review scripts: the same operations as the CLI.

    from langsmith_access.provisioning.api import request_grant, request_revoke, list_requests, provision
    request_grant("ada@example.com", "Platform", "Editor", reason="on-call", requested_by="sec-team")
    provision()          # or provision(dry_run=True)
"""

from __future__ import annotations

from pathlib import Path

from langsmith_access.provisioning.queue import ChangeRequest, QueueResult, list_requests as _list
from langsmith_access.provisioning.queue import submit
from langsmith_access.settings import Settings
from langsmith_access.store.database import AccessDatabase

PROVISION_JOB = "provision_workspace_roles"


def _database(path: str | Path | None) -> AccessDatabase:
    return AccessDatabase(Path(path) if path else Settings.from_env().duckdb_path)


def request_grant(user: str, workspace: str, role: str, *, reason: str | None = None,
                  requested_by: str | None = None, database: str | Path | None = None) -> QueueResult:
    """Queue a workspace-role grant; a rejected one is recorded and returned with its reason."""
    return submit(_database(database), ChangeRequest("grant", user, workspace, role, reason, requested_by))


def request_revoke(user: str, workspace: str, role: str, *, reason: str | None = None,
                   requested_by: str | None = None, database: str | Path | None = None) -> QueueResult:
    return submit(_database(database), ChangeRequest("revoke", user, workspace, role, reason, requested_by))


def list_requests(status: str | None = None, *, database: str | Path | None = None) -> list[dict]:
    return _list(_database(database), status)


def provision(*, dry_run: bool = False, request_ids: list[str] | None = None):
    """Run ``provision_workspace_roles`` now, in this process. Returns the runner's outcome;
    ``outcome.outputs['apply_requests']['outcomes']`` lists what happened to each request."""
    from langsmith_access import runner

    config: dict = {"dry_run": dry_run}
    if request_ids:
        config["request_ids"] = list(request_ids)
    return runner.run_job(PROVISION_JOB, {"ops": {"select_requests": {"config": config}}})
