"""The Python API for notebooks and review scripts: the same operations as the CLI.

    from langsmith_access.api import request_grant, request_revoke, list_requests, provision
    request_grant("ada@example.com", "Platform", "Editor", reason="on-call", requested_by="sec-team")
    provision()          # or provision(dry_run=True)

It sits above the domain packages: queueing and listing call ``provisioning.queue`` directly;
``provision`` runs the Dagster job through ``runner``, like the CLI and the sensor's runs.
"""

from __future__ import annotations

from pathlib import Path

from langsmith_access.names import PROVISION_JOB, SELECT_REQUESTS_OP
from langsmith_access.provisioning.queue import ChangeRequest, QueueResult, submit
from langsmith_access.provisioning.queue import list_requests as _list
from langsmith_access.settings import Settings
from langsmith_access.store.database import AccessDatabase

__all__ = ["PROVISION_JOB", "list_requests", "provision", "request_grant", "request_revoke"]


def _database(path: str | Path | None) -> AccessDatabase:
    return AccessDatabase(Path(path) if path else Settings.from_env().duckdb_path)


def request_grant(user: str, workspace: str, role: str, *, reason: str | None = None,
                  requested_by: str | None = None, database: str | Path | None = None) -> QueueResult:
    """Queue a workspace-role grant; a rejected one is recorded and returned with its reason."""
    return submit(_database(database), ChangeRequest("grant", user, workspace, role, reason, requested_by))


def request_revoke(user: str, workspace: str, role: str, *, reason: str | None = None,
                   requested_by: str | None = None, database: str | Path | None = None) -> QueueResult:
    """Queue a workspace-role revoke; a rejected one is recorded and returned with its reason."""
    return submit(_database(database), ChangeRequest("revoke", user, workspace, role, reason, requested_by))


def list_requests(status: str | None = None, *, database: str | Path | None = None) -> list[dict]:
    """The provisioning requests (all, or those with ``status``), from the analysts' copy."""
    return _list(_database(database), status)


def provision(*, dry_run: bool = False, request_ids: list[str] | None = None,
              log_dir: str | Path | None = None, verbose: bool = False):
    """Run ``provision_workspace_roles`` now, in this process. Returns the runner's outcome;
    ``outcome.outputs['apply_requests']['outcomes']`` lists what happened to each request.
    A failed run's details go to ``log_dir`` (``outcome.log_path``), and to the terminal when
    ``verbose``."""
    # Deferred on purpose: the runner loads Dagster (seconds); queueing and listing need none of it.
    from langsmith_access import runner

    config: dict = {"dry_run": dry_run}
    if request_ids:
        config["request_ids"] = list(request_ids)
    return runner.run_job(
        PROVISION_JOB, {"ops": {SELECT_REQUESTS_OP: {"config": config}}},
        log_dir=Path(log_dir) if log_dir is not None else None, verbose=verbose,
    )
