"""The Python API for notebooks and review scripts: the same operations as the CLI.

    from langsmith_access.api import approve, list_requests, provision, request_grant, request_revoke
    request_grant("ada@example.com", "Platform", "Editor", reason="on-call", requested_by="sec-team")
    request_grant("ada@example.com", "Platform", "Admin", duration="8h")   # time-bound
    approve(request_id, by="grace@example.com")   # or deny(...), for a request awaiting approval
    provision()          # or provision(dry_run=True)

Every function takes ``org=``: an org's slug from the orgs file (``LANGSMITH_ACCESS_ORGS_FILE``),
or an ``Org`` built by hand; without it, the only org configured (with several, an error naming
them). It sits above the domain packages: queueing and listing call ``provisioning.queue``
directly; ``provision`` runs the Dagster job through ``runner``, like the CLI and the sensor's runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from langsmith_access.governance.notifications import DeliveryReport, Notifier, Webhook, deliver_due
from langsmith_access.names import PROVISION_JOB, SELECT_REQUESTS_OP
from langsmith_access.provisioning.approvals import APPROVED, DENIED, DecisionResult, decide
from langsmith_access.provisioning.queue import ChangeRequest, QueueResult, org_holding_request, submit
from langsmith_access.provisioning.queue import list_requests as _list
from langsmith_access.quoting import named
from langsmith_access.settings import Org, SettingsError, load_orgs
from langsmith_access.store.database import AccessDatabase, DatabaseNotReadyError

__all__ = [
    "PROVISION_JOB", "approve", "deliver_notifications", "deny", "list_requests", "provision", "request_grant",
    "request_revoke", "resolve_org",
]


def resolve_org(org: str | Org | None = None) -> Org:
    """The org ``org`` names: an ``Org`` as it is, a slug of the configured orgs, or (None) the
    only one. Reads and checks the orgs file first (``settings.load_orgs``): a bad file, or an
    unknown slug, raises ``SettingsError`` naming the known ones before anything is done. An
    org whose key variable is unset is still returned (queueing and listing need no key);
    what needs the API asks ``Org.client()``, which raises naming the variable. What is neither
    a slug nor an ``Org`` (``org=5``) raises ``TypeError`` saying so."""
    if isinstance(org, Org):
        return org
    orgs = load_orgs(refuse_unusable_keys=False)
    if org is not None and not isinstance(org, str):  # org=5: said here, not deep inside
        raise TypeError(f"org= takes an org's slug (text) or an Org, got {type(org).__name__}: pass "
                        f"org={orgs.slugs[0]!r} (the orgs configured: {', '.join(orgs.slugs)})")
    return orgs.get(org)


def _database(path: str | Path | None, org: str | Org | None) -> AccessDatabase:
    """The org's database (or the file ``path`` names), refusing to write for the org a file that
    holds another org's data."""
    if path and org is None:
        return AccessDatabase(Path(path))
    the_org = resolve_org(org)
    if path:
        return AccessDatabase(Path(path), the_org.settings.organization_id)
    return AccessDatabase.of_org(the_org)


def request_grant(user: str, workspace: str, role: str, *, reason: str | None = None,
                  requested_by: str | None = None, duration: str | timedelta | None = None,
                  until: str | datetime | None = None, database: str | Path | None = None,
                  org: str | Org | None = None) -> QueueResult:
    """Queue a workspace-role grant in ``org``'s queue; a rejected one is recorded and returned
    with its reason. ``duration`` (``"8h"``, from when it is applied) or ``until``
    (``"2026-12-01T18:00Z"``) makes it time-bound. Under the org's access policy it may await
    approval (``result.status``)."""
    the_org = resolve_org(org)
    change = ChangeRequest("grant", user, workspace, role, reason, requested_by, duration=duration, until=until)
    return submit(_database(database, the_org), change, policy_path=the_org.policy_path,
                  notifier=Notifier.of_org(the_org))


def request_revoke(user: str, workspace: str, role: str, *, reason: str | None = None,
                   requested_by: str | None = None, duration: str | timedelta | None = None,
                   until: str | datetime | None = None, database: str | Path | None = None,
                   org: str | Org | None = None) -> QueueResult:
    """Queue a workspace-role revoke in ``org``'s queue; a rejected one is recorded and returned
    with its reason. A revoke takes effect when applied: ``duration`` or ``until`` (as typed on
    the command line) gets it rejected, and recorded as such."""
    # The org resolved even with ``database`` given: a file of another org's data is refused, as for a grant.
    the_org = resolve_org(org)
    change = ChangeRequest("revoke", user, workspace, role, reason, requested_by, duration=duration, until=until)
    # The notifier for what it hides: the org's webhook URL pasted into the reason is never stored.
    return submit(_database(database, the_org), change, notifier=Notifier.of_org(the_org))


def approve(request_id: str, *, by: str, comment: str | None = None,
            database: str | Path | None = None, org: str | Org | None = None) -> DecisionResult:
    """Approve a request awaiting approval as ``by`` (an email). ``result.recorded`` is False
    when refused (not an approver, self-approval, not awaiting); ``result.message`` says why,
    and the refusal is recorded too."""
    return _decide(request_id, APPROVED, by, comment, database, org)


def deny(request_id: str, *, by: str, comment: str | None = None,
         database: str | Path | None = None, org: str | Org | None = None) -> DecisionResult:
    """Deny a request awaiting approval as ``by`` (an email); refused like ``approve``."""
    return _decide(request_id, DENIED, by, comment, database, org)


def _decide(request_id: str, decision: str, by: str, comment: str | None,
            database: str | Path | None, org: str | Org | None) -> DecisionResult:
    the_org = resolve_org(org)
    return decide(_database(database, the_org), request_id, decision, by, comment,
                  policy_path=the_org.policy_path, notifier=Notifier.of_org(the_org),
                  holder_of=lambda unknown: _other_org_holding(unknown, the_org))


def _other_org_holding(request_id: str, org: Org) -> str | None:
    """The slug of another configured org whose queue holds ``request_id`` (None: none does, or
    the orgs cannot be read now: an ``Org`` passed in need not be of this environment's)."""
    try:
        orgs = load_orgs(refuse_unusable_keys=False)
    except SettingsError:
        return None
    return org_holding_request(orgs, request_id, besides=org.slug)


def deliver_notifications(*, database: str | Path | None = None, lease_timeout_seconds: float = 5.0,
                          org: str | Org | None = None) -> DeliveryReport:
    """POST ``org``'s notifications that are due to its webhook (its orgs-file entry's
    ``webhook_url_env``, else ``LANGSMITH_ACCESS_WEBHOOK_URL``; nothing when neither is set). Never
    raises: what could not be delivered is retried later, with backoff."""
    the_org = resolve_org(org)
    if the_org.webhook_problem:
        return DeliveryReport(problem=the_org.webhook_problem)
    return deliver_due(_database(database, the_org), Webhook.from_settings(the_org.settings),
                       lease_timeout_seconds=lease_timeout_seconds)


def list_requests(status: str | None = None, *, database: str | Path | None = None,
                  org: str | Org | None = None) -> list[dict]:
    """``org``'s provisioning requests (all, or those with ``status``), from its analysts' copy."""
    return _list(_database(database, org), status)


def provision(*, dry_run: bool = False, request_ids: list[str] | None = None,
              log_dir: str | Path | None = None, verbose: bool = False, org: str | Org | None = None):
    """Run ``provision_workspace_roles`` for ``org`` now, in this process. Returns the runner's
    outcome; ``outcome.outputs['apply_requests']['outcomes']`` lists what happened to each
    request. A failed run's details go to ``log_dir`` (``outcome.log_path``), and to the
    terminal when ``verbose``.

    ``request_ids=None`` (the default) applies every pending request; a list applies only those.
    An empty list names no request and raises ``ValueError`` before anything runs: it is never
    taken for "every pending request" (a selection that came out empty must not apply the
    whole queue). One id as a plain string raises ``ValueError`` too (it is no list of ids), as
    does a number, or a list holding what is no id (``None``, ``''``, bytes).

    A run whose publish of the analysts' copy failed as it ended (a full disk) raises
    ``PublishFailedError``, its ``result`` the outcome: what it did is recorded in the working
    file, and the next writer publishes it."""
    if isinstance(request_ids, str):
        raise ValueError(f"provision(request_ids={request_ids!r}) is a string, not a list of request ids: "
                         f"pass request_ids=[{request_ids!r}]")
    try:
        ids = list(request_ids) if request_ids is not None else None
    except TypeError:  # request_ids=5
        raise ValueError(f"provision(request_ids={named(repr(request_ids))}) is not a list of request ids: "
                         "pass request_ids=['<request id>', ...]") from None
    for request_id in ids or ():
        # None, '' or bytes: refused here, not by Dagster's run config (or taken for no id).
        if not isinstance(request_id, str) or not request_id.strip():
            raise ValueError(f"provision(request_ids={named(repr(ids))}): request ids are text, got "
                             f"{named(repr(request_id))}: pass the ids list_requests() gives (its 'request_id')")
    if ids is not None and not ids:
        raise ValueError("provision(request_ids=[]) names no request, so nothing was run: pass the ids "
                         "to apply, or leave request_ids out to apply every pending request")
    the_org = resolve_org(org)
    the_org.client()  # a missing or unusable key: SettingsError naming it, before anything starts
    database = AccessDatabase.of_org(the_org)
    if dry_run and not database.working_path.exists() and not database.path.exists():
        # A dry run writes nothing: a run would create the database (and its folder) just to
        # find no queue in it.
        raise DatabaseNotReadyError(f"{database.path} does not exist yet: run `langsmith-access sync` first.")
    # Deferred on purpose: the runner loads Dagster (seconds); queueing and listing need none of it.
    from langsmith_access import runner

    config: dict = {"dry_run": dry_run}
    if ids:
        config["request_ids"] = ids
    outcome = runner.run_job(
        PROVISION_JOB, {"ops": {SELECT_REQUESTS_OP: {"config": config}}}, org=the_org,
        log_dir=Path(log_dir) if log_dir is not None else None, verbose=verbose,
    )
    if outcome.unpublished is not None:  # recorded, not published (a full disk): as request_grant says it
        outcome.unpublished.result = outcome
        raise outcome.unpublished
    return outcome
