"""The Python API for notebooks and review scripts: the same operations as the CLI.

    from langsmith_access.api import request_grant, request_revoke, list_requests, provision
    request_grant("ada@example.com", "Platform", "Editor", reason="on-call", requested_by="sec-team")
    provision()          # or provision(dry_run=True)

Every function takes ``org=``: an org's slug from the orgs file (``LANGSMITH_ACCESS_ORGS_FILE``),
or an ``Org`` built by hand; without it, the only org configured (with several, an error naming
them). It sits above the domain packages: queueing and listing call ``provisioning.queue``
directly; ``provision`` runs the Dagster job through ``runner``, like the CLI and the sensor's runs.
"""

from __future__ import annotations

from pathlib import Path

from langsmith_access.names import PROVISION_JOB, SELECT_REQUESTS_OP
from langsmith_access.provisioning.queue import ChangeRequest, QueueResult, submit
from langsmith_access.provisioning.queue import list_requests as _list
from langsmith_access.settings import Org, load_orgs
from langsmith_access.store.database import AccessDatabase

__all__ = ["PROVISION_JOB", "list_requests", "provision", "request_grant", "request_revoke", "resolve_org"]


def resolve_org(org: str | Org | None = None) -> Org:
    """The org ``org`` names: an ``Org`` as it is, a slug of the configured orgs, or (None) the
    only one. Reads and checks the orgs file first (``settings.load_orgs``): a bad file, or an
    unknown slug, raises ``SettingsError`` naming the known ones before anything is done."""
    if isinstance(org, Org):
        return org
    return load_orgs().get(org)


def _database(path: str | Path | None, org: str | Org | None) -> AccessDatabase:
    return AccessDatabase(Path(path) if path else resolve_org(org).duckdb_path)


def request_grant(user: str, workspace: str, role: str, *, reason: str | None = None,
                  requested_by: str | None = None, database: str | Path | None = None,
                  org: str | Org | None = None) -> QueueResult:
    """Queue a workspace-role grant in ``org``'s queue; a rejected one is recorded and returned
    with its reason."""
    return submit(_database(database, org), ChangeRequest("grant", user, workspace, role, reason, requested_by))


def request_revoke(user: str, workspace: str, role: str, *, reason: str | None = None,
                   requested_by: str | None = None, database: str | Path | None = None,
                   org: str | Org | None = None) -> QueueResult:
    """Queue a workspace-role revoke in ``org``'s queue; a rejected one is recorded and returned
    with its reason."""
    return submit(_database(database, org), ChangeRequest("revoke", user, workspace, role, reason, requested_by))


def list_requests(status: str | None = None, *, database: str | Path | None = None,
                  org: str | Org | None = None) -> list[dict]:
    """``org``'s provisioning requests (all, or those with ``status``), from its analysts' copy."""
    return _list(_database(database, org), status)


def provision(*, dry_run: bool = False, request_ids: list[str] | None = None,
              log_dir: str | Path | None = None, verbose: bool = False, org: str | Org | None = None):
    """Run ``provision_workspace_roles`` for ``org`` now, in this process. Returns the runner's
    outcome; ``outcome.outputs['apply_requests']['outcomes']`` lists what happened to each
    request. A failed run's details go to ``log_dir`` (``outcome.log_path``), and to the
    terminal when ``verbose``."""
    the_org = resolve_org(org)
    # Deferred on purpose: the runner loads Dagster (seconds); queueing and listing need none of it.
    from langsmith_access import runner

    config: dict = {"dry_run": dry_run}
    if request_ids:
        config["request_ids"] = list(request_ids)
    return runner.run_job(
        PROVISION_JOB, {"ops": {SELECT_REQUESTS_OP: {"config": config}}}, org=the_org,
        log_dir=Path(log_dir) if log_dir is not None else None, verbose=verbose,
    )
