"""The provisioning op job and the sensor that launches it, partitioned by org.

Thin wiring around ``langsmith_access.provisioning`` (queue, planner, executor). Each run
provisions one org (its partition key); the sensor looks at every org's queue on each tick.
"""

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Literal, TypedDict

import dagster as dg
import duckdb
from pydantic import Field

from langsmith_access import names
from langsmith_access.defs.orgs import (
    IN_FLIGHT,
    TICK_BUDGET_SECONDS,
    TICK_READ_TIMEOUT_SECONDS,
    deployment_orgs,
    environment_references,
    first_left,
    look_at_each_org,
    no_key_reason,
    not_looked_at,
    org_run_config,
    org_tags,
    skip_reasons,
    slug_tagged_on,
    starting_with,
    tick_deadline,
)
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, LangSmithAPI, ProvisioningDatabase
from langsmith_access.governance.drift import UnexplainedChange
from langsmith_access.governance.notifications import Notifier
from langsmith_access.governance.policy import PolicyError
from langsmith_access.langsmith import LangSmithError, ProvisioningInterruptedError
from langsmith_access.langsmith.errors import first_line
from langsmith_access.processes import has_ended
from langsmith_access.provisioning import approvals, expiry, queue
from langsmith_access.provisioning.executor import Provisioner
from langsmith_access.settings import Org, Orgs, Settings, mask_keys
from langsmith_access.store.database import (
    AccessDatabase,
    DatabaseBusyError,
    DatabaseNotReadyError,
    DatabaseUnusableError,
)
from langsmith_access.store.queries import as_uuid
from langsmith_access.store.sync_runs import OrganizationElsewhereError, database_elsewhere
from langsmith_access.transform.history import rebuild_history, unbuilt_observations

JOB_NAME = names.PROVISION_JOB


class AdhocChange(dg.Config):
    """One change typed in the Launchpad; it is queued and audited like any other request."""

    # A choice the Launchpad checks before the run starts (a typo there queued a rejected request).
    action: Literal["grant", "revoke"] = Field(description="grant or revoke.")
    user: str = Field(description="The member: their email or LangSmith user id (ls_user_id).")
    workspace: str = Field(description="The shared workspace: its name or id.")
    role: str = Field(description="A workspace role: its display name (Editor), name or id.")
    reason: str | None = Field(default=None, description="Why: kept with the request and its audit.")
    requested_by: str | None = Field(
        default=None, description="Who asks for it; left out: this run's launcher, else the run.")
    duration: str | None = Field(
        default=None, description="A time-bound grant: how long it lasts once applied, e.g. 8h or 3d.")
    until: str | None = Field(
        default=None, description="A time-bound grant: when it ends, e.g. 2026-12-01T18:00Z (not with duration).")


# A run that refused what it was given (a change the policy rejects, unknown or settled request
# ids, an {env: ...} field) carries this tag: the sensors' wait after failed runs does not count
# it, since a mistyped Launchpad run says nothing about LangSmith or the key.
REFUSED_INPUT_TAG = names.REFUSED_INPUT_TAG


def refused_input(context: dg.OpExecutionContext, description: str, **kwargs) -> dg.Failure:
    """The failure of a run refusing its input, the run tagged ``REFUSED_INPUT_TAG``."""
    context.instance.add_run_tags(context.run.run_id, {REFUSED_INPUT_TAG: "true"})
    return dg.Failure(description, **kwargs)


def left_empty(fields: list[str], then: str | None = None) -> str:
    """``fields`` of a Launchpad form left empty, said in one sentence: "by is empty: fill it in",
    "user, role are empty: fill them in" (``then``: what to do instead of filling them in)."""
    one = len(fields) == 1
    then = then or ("fill it in" if one else "fill them in")
    return f"{', '.join(fields)} {'is' if one else 'are'} empty: {then}"


def run_launcher(context: dg.OpExecutionContext) -> str | None:
    """Who launched the run, where Dagster tags runs with one (Dagster+ and some deployments do).
    ``dagster/user`` first: Dagster+ sets it from the signed-in user (``dagster/`` is its reserved
    prefix), while anyone may type a ``user`` tag in the Launchpad: read first, it would let a
    requester decide their own request as an approver. ``user`` counts only where there is no other."""
    return context.run.tags.get("dagster/user") or context.run.tags.get("user")


def refuse_environment_references(context: dg.OpExecutionContext, op_name: str) -> None:
    """Raise when the op's run config reads a field from the environment (``{env: VAR}``, which
    Dagster accepts for any text field): the run worker's variables hold the deployment's
    secrets (the webhook URL, the Postgres password), and a field's value is stored in the queue,
    its audit and the analysts' copy, and echoed in refusals. Checked before the value is read;
    the refusal names the fields, never a value."""
    given: object = context.run.run_config
    for key in ("ops", op_name, "config"):
        given = given.get(key) if isinstance(given, dict) else None
    read = sorted(environment_references(given))
    if read:
        raise refused_input(
            context,
            f"The run config reads {', '.join(read)} from the environment ({{env: ...}}): not accepted "
            "for a request or a decision (it could copy a secret of this deployment into the queue and "
            "its audit). Type the value itself. Nothing was queued or recorded."
        )


def in_org_and_launchpad_terms(org: Org, text: str) -> str:
    """A queueing refusal or notice as the Launchpad's operator acts on it: the commands it
    suggests carry the run's org (``--org``: with several orgs, one without it is refused), and
    it names the Launchpad's fields."""
    return org.in_its_own_terms(in_launchpad_terms(text))


def in_launchpad_terms(text: str) -> str:
    """A refusal written for the CLI (``--duration 9h is longer than ...``) naming the Launchpad's
    own fields instead (``change.duration``), as the operator typed them."""
    return re.sub(r"--(duration|until)\b", r"change.\1", text)


class ProvisionConfig(dg.Config):
    """Leave both empty to apply every pending request (what the sensor does)."""

    request_ids: list[str] = Field(
        default=[],  # pydantic copies it
        description="Apply these queued requests (`langsmith-access requests` lists them) of the "
        "partition's org; empty with no change: every pending request.")
    change: AdhocChange | None = Field(
        default=None, description="One change to queue and apply now (not with request_ids).")
    dry_run: bool = Field(
        default=False,
        description="Plan against live LangSmith and report; no writes, statuses unchanged.")


class _OutcomeRow(TypedDict):
    """One request's outcome in the op's output and metadata."""

    request_id: str
    status: str
    detail: str
    plan: str | None
    writes: int


@dg.op(
    name=names.SELECT_REQUESTS_OP,
    pool=DUCKDB_WRITER_POOL,
    description="Pick the requests to apply; queue an ad-hoc change.",
)
def select_requests(
    context: dg.OpExecutionContext, config: ProvisionConfig, provisioning_database: ProvisioningDatabase
) -> dict:
    refuse_environment_references(context, names.SELECT_REQUESTS_OP)
    if config.change is not None and config.request_ids:
        raise refused_input(context, "Give either request_ids or one change in the run config, not both.")
    if config.change is not None:
        # Left empty in the form: named at once, and no rejected request queued for it.
        blank = [f"change.{name}" for name in ("user", "workspace", "role")
                 if not getattr(config.change, name).strip()]
        if blank:
            raise refused_input(
                context, f"{left_empty(blank)} (user: an email or user id; workspace: a name or id; "
                "role: a workspace role's name or id). Nothing was queued.")
    org = provisioning_database.org
    with provisioning_database.connect() as conn:
        if config.change is not None:
            change = queue.ChangeRequest(**config.change.model_dump())
            if not (change.requested_by or "").strip():
                # As the CLI names the account that ran it: the run it came from (its launcher,
                # where Dagster tags runs with one), so a Launchpad request is never anonymous.
                change = replace(change, requested_by=run_launcher(context) or f"dagster run {context.run.run_id}")
            if config.dry_run:
                # Every check the real run's queueing makes (the policy's included), nothing queued.
                try:
                    checked = queue.check_change(conn, change, policy_path=org.policy_path,
                                                 launched_by=run_launcher(context), notifier=Notifier.of_org(org))
                except queue.RequestRejected as rejection:
                    raise refused_input(context, in_org_and_launchpad_terms(
                        org, f"The change would be rejected: {rejection}")) from None
                # The real run folds a change already queued into that request, in submit_on's words.
                queued = checked.folded if checked.queued_as else None
                if checked.needs_approval:  # the real run queues it and applies nothing until approved
                    said = approvals.PolicyChange(
                        "(ad-hoc)", queue.AWAITING_APPROVAL,
                        f"{queued or f'would await approval by {checked.approvers} ({checked.terms})'}: "
                        "nothing is applied until it is approved")
                    context.log.warning(org.in_its_own_terms(f"(ad-hoc): {said.detail}"))
                    return {"request_ids": [], "dry_run": True, "policy_changes": [asdict(said)],
                            "policy_error": None}
                if queued:
                    context.log.info(org.in_its_own_terms(
                        f"(ad-hoc): {queued}: the run would apply that request, not queue another"))
                return {"request_ids": [], "adhoc": checked.resolved.__dict__, "dry_run": True}
            result = queue.submit_on(conn, change, policy_path=org.policy_path, notifier=Notifier.of_org(org),
                                     run_id=context.run.run_id, launched_by=run_launcher(context))
            if not result.accepted:
                raise refused_input(
                    context, in_org_and_launchpad_terms(org, f"Request {result.request_id} rejected: {result.message}"),
                    metadata={"request_id": result.request_id},
                )
            queued_said = f"Queued {result.request_id}: {result.message}"
            if result.status == queue.AWAITING_APPROVAL:  # applied once approved
                context.log.info(org.in_its_own_terms(
                    f"{queued_said} From the Dagster UI: launch {names.DECIDE_JOB} for partition {org.slug!r}."))
                return {"request_ids": [], "dry_run": False}
            context.log.info(org.in_its_own_terms(queued_said))
            # Pending, or folded into a request a dead run left in progress: this run takes it.
            return {"request_ids": [result.request_id], "dry_run": False}
        if config.request_ids:
            request_ids = _typed_request_ids(context, config.request_ids)
            unknown = queue.unknown_request_ids(conn, request_ids)
            if unknown:
                # Launched for the wrong partition: say whose they are, as the decision job does.
                holders = {r: other_org_holding(org, r) for r in unknown}
                whose = "".join(f" {r} is a request of org {holder!r}: launch {JOB_NAME} for partition {holder!r}."
                                for r, holder in holders.items() if holder is not None)
                raise refused_input(context, org.in_its_own_terms(
                    f"Unknown request ids in the queue of org {org.slug!r} (this run's partition): "
                    # Quoted with escapes: a pasted newline or terminal escape is shown, not obeyed.
                    f"{', '.join(repr(mask_keys(r)) for r in unknown)}. List them with `langsmith-access requests`; "
                    f"a request of another org runs in that org's partition.{whose}"))
            governed = _govern_pending_grants(context, org, conn, request_ids, config.dry_run)
            # Those the policy now rejects or sends for approval are said by the run's policy_changes.
            runnable = _runnable(context, org, conn, [r for r in request_ids if r not in governed.settled])
            return {"request_ids": runnable, "dry_run": config.dry_run, **governed.said()}
        if not config.dry_run:
            # Before taking every pending request: end approvals left too long, warn of access
            # about to end, and queue the revokes of time-bound grants that are due.
            now, notifier = queue.now_utc(), Notifier.of_org(org)
            expired = approvals.expire_overdue(conn, now, notifier)
            warned = expiry.warn_expiring(conn, now, org.settings.expiry_warning, notifier)
            revokes = expiry.queue_due_expiries(conn, now)
            for count, what in ((len(expired), "request(s) past their approval deadline or --until: approval_expired"),
                                (len(warned), "time-bound grant(s) end soon: access.expiring queued for the webhook"),
                                (len(revokes), "time-bound grant(s) expired: revoke(s) queued")):
                if count:
                    context.log.info(f"{count} {what}")
            governed = _govern_pending_grants(context, org, conn, None, dry_run=False)
            # Said by `provision` too: a run that only expired approvals had work, not "no requests".
            done_first = {"approvals_expired": expired, "expiry_warnings_sent": warned,
                          "expiry_revokes_queued": revokes}
            return {"request_ids": _pending_except(conn, governed.settled), "dry_run": False, "done_first": done_first,
                    **governed.said()}
        else:
            # What the real run would do before taking the queue, said, not done.
            now = queue.now_utc()
            ahead = {
                "expiries_due": [r["request_id"] for r in expiry.due_grants(conn, now)],
                "approvals_overdue": [r["request_id"] for r in approvals.overdue_requests(conn, now)],
                # access.expiring goes out only through a webhook: without one, nothing to warn.
                "expiry_warnings_due": [r["request_id"] for r in expiry.to_warn(conn, now, org.settings.expiry_warning)]
                if org.notifies else [],
            }
            governed = _govern_pending_grants(context, org, conn, None, dry_run=True)
            return {"request_ids": _pending_except(conn, governed.settled), "dry_run": True, "ahead": ahead,
                    **governed.said()}
    return {"request_ids": None, "dry_run": config.dry_run}


def _typed_request_ids(context: dg.OpExecutionContext, typed: list[str]) -> list[str]:
    """The Launchpad's request ids as the queue writes them (``as_uuid``, the rule the decision
    job and every typed id follow: capitals, braces, spaces around it), each once; a blank one
    refuses the run, naming its place, before anything is claimed."""
    blank = [f"request_ids[{i}]" for i, request_id in enumerate(typed) if not request_id.strip()]
    if blank:
        raise refused_input(
            context, f"{left_empty(blank, 'give a request id')} "
            "(`langsmith-access requests` lists them), or leave request_ids empty to apply every pending "
            "request. Nothing was claimed.")
    return list(dict.fromkeys(as_uuid(request_id.strip()) or request_id.strip() for request_id in typed))


def other_org_holding(org: Org, request_id: str) -> str | None:
    """The slug of another org this deployment serves whose queue holds ``request_id``."""
    return queue.org_holding_request(deployment_orgs(), request_id, besides=org.slug)


@dataclass(frozen=True)
class _Governed:
    """What the access policy, as it is now, made of the pending grants before the run takes them."""

    changes: list[approvals.PolicyChange]
    held: list[str]  # grants left as they are (pending or in_progress) because the policy cannot be read
    policy_error: str | None

    @property
    def settled(self) -> set[str]:
        """The grants this run does not take: rejected, awaiting approval (or would be), or held."""
        return set(self.held) | {change.request_id for change in self.changes}

    def said(self) -> dict:
        return {"policy_changes": [asdict(change) for change in self.changes], "policy_error": self.policy_error}


def _pending_except(conn: duckdb.DuckDBPyConnection, settled: set[str]) -> list[str] | None:
    """The requests a run takes when it names none (None: every pending one, as ``queue.claim``
    takes them), without ``settled``."""
    if not settled:
        return None
    pending = conn.execute("SELECT request_id FROM main.provisioning_requests "
                           "WHERE status IN ('pending', 'in_progress') ORDER BY request_seq").fetchall()
    return [r for (r,) in pending if r not in settled]


def _govern_pending_grants(context: dg.OpExecutionContext, org: Org, conn: duckdb.DuckDBPyConnection,
                           request_ids: list[str] | None, dry_run: bool) -> _Governed:
    """The pending grants against the access policy as it is now (``approvals.govern_pending_grants``).
    A policy that cannot be read applies no grant: each stays as it is (pending, or in_progress
    where a run that died claimed it before sending its write), the revokes go ahead, and the run
    fails once it has applied them (``refresh_access_history``), saying why."""
    try:
        changes = approvals.govern_pending_grants(conn, queue.now_utc(), org.policy_path, Notifier.of_org(org),
                                                  request_ids=request_ids, dry_run=dry_run,
                                                  run_id=context.run.run_id)
    except PolicyError as error:
        grants = approvals.pending_grants(conn, request_ids)
        held = [r["request_id"] for r in grants]
        claimed = sum(r["status"] == "in_progress" for r in grants)
        left = [f"{len(held) - claimed} left pending"] if len(held) > claimed else []
        if claimed:
            left.append(f"{claimed} left in_progress (claimed by a run that died before sending its write)")
        message = org.in_its_own_terms(
            f"{len(held)} grant(s) not applied ({', '.join(left)}): the access policy cannot be read "
            f"({mask_keys(str(error))}). Fix the policy file; the next run applies them."
        )
        if held:
            context.log.error(message)
        return _Governed([], held, message if held else None)
    for change in changes:
        context.log.warning(f"{change.request_id}: {'would be ' if dry_run else ''}{change.status}: {change.detail}")
    return _Governed(changes, [], None)


def _runnable(context: dg.OpExecutionContext, org: Org, conn: duckdb.DuckDBPyConnection,
              request_ids: list[str]) -> list[str]:
    """The named requests a run takes (pending, or in progress where a run died); the others
    are named with their status and what to do instead: a warning, or the run's failure when
    none is left."""
    statuses = dict(conn.execute(
        f"SELECT request_id, status FROM main.provisioning_requests WHERE request_id IN "
        f"({', '.join('?' for _ in request_ids)})", request_ids).fetchall())
    runnable = [r for r in request_ids if statuses[r] in ("pending", "in_progress")]
    left = [f"{r} is {statuses[r]}" + (
        " (decide it first: decide_access_request, or `langsmith-access approve`)"
        if statuses[r] == "awaiting_approval" else " (final: queue a new request to change it again)")
        for r in request_ids if r not in runnable]
    if left and not runnable:
        raise refused_input(context, org.in_its_own_terms(
            f"Nothing to apply: {'; '.join(left)}. Only pending requests are applied."))
    if left:
        context.log.warning(org.in_its_own_terms(f"Left as they are: {'; '.join(left)}."))
    return runnable


@dg.op(
    name=names.APPLY_REQUESTS_OP,
    pool=DUCKDB_WRITER_POOL,
    description="Validate live, read, plan, apply, verify and audit each request.",
)
def apply_requests(
    context: dg.OpExecutionContext,
    selection: dict,
    langsmith: LangSmithAPI,
    provisioning_database: ProvisioningDatabase,
) -> dict:
    run_id = context.run.run_id
    dry_run = selection["dry_run"]
    org, notifier = provisioning_database.org, Notifier.of_org(provisioning_database.org)
    with langsmith.failures_in_its_orgs_terms(), provisioning_database.connect() as conn:
        provisioner = Provisioner(langsmith.client, conn, run_id, dry_run=dry_run, log=context.log.info,
                                  notifier=notifier)
        if selection.get("adhoc"):
            adhoc = selection["adhoc"]
            requests = [{"request_id": "(ad-hoc)", **adhoc}]
        elif dry_run:
            ids = selection["request_ids"]
            requests = (
                queue.fetch_requests(conn, "list_contains(?, request_id)", [ids])
                if ids is not None else queue.fetch_requests(conn, "status IN ('pending', 'in_progress')")
            )
        elif selection["request_ids"] == []:  # an ad-hoc change that awaits approval
            requests = []
        else:
            requests = queue.claim(conn, run_id, selection["request_ids"])
        try:
            provisioner.process_all(requests)
        except LangSmithError as error:
            # Not an outage (those stop the batch and are handled below) but an answer no run
            # can use (no LangSmith API there, a redirect): the claimed requests go back to
            # pending saying why, rather than waiting in_progress with no word of it.
            if not dry_run:
                provisioner.release_unsettled(requests, failure=error)
            raise
        interrupted = None
        if provisioner.unreachable is not None:
            released = [] if dry_run else provisioner.release_unsettled(requests)
            # Neither settled nor released: a write went out for it, and LangSmith's state decides.
            written = 0 if dry_run else len(requests) - len(provisioner.outcomes) - len(released)
            interrupted = (f"LangSmith stopped answering after {len(provisioner.outcomes)} of "
                           f"{len(requests)} request(s) ({provisioner.unreachable}); "
                           f"{len(released)} request(s) are pending again"
                           + (f", {written} in progress (a write went out: the next run settles it from "
                              "LangSmith's state)" if written else ""))
            context.log.warning(interrupted)
        if not dry_run:
            # A grant applied inside its warning window (shorter than it) is due its warning now:
            # left to the next run, none may come before its end. Grants warned already are not.
            warned = expiry.warn_expiring(conn, queue.now_utc(), org.settings.expiry_warning, notifier)
            if warned:
                context.log.info(f"{len(warned)} grant(s) applied end within the warning window: "
                                 "access.expiring queued for the webhook")
        # This run's changes, and any an earlier run recorded but died before rebuilding: counted
        # on this connection (the lease holds the file until the refresh), not on one of its own.
        unbuilt = 0 if dry_run else unbuilt_observations(conn)
    outcomes = [
        _OutcomeRow(request_id=o.request_id, status=o.status, detail=o.detail,
                    plan=o.plan.kind if o.plan else None, writes=o.writes)
        for o in provisioner.outcomes
    ]
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    table = ["| request | status | plan | detail |", "|---|---|---|---|"] + [
        f"| {o['request_id']} | {o['status']} | {o['plan']} | {o['detail'].replace('|', '/')} |"
        for o in outcomes[:200]
    ]
    context.add_output_metadata(
        {"requests": len(outcomes), **counts, "writes": sum(o["writes"] for o in outcomes),
         "api_calls": langsmith.client.stats.calls, "outcomes": dg.MetadataValue.md("\n".join(table))}
    )
    # An interrupted run still rebuilds what it changed (refresh_access_history), then fails.
    return {"dry_run": dry_run, "outcomes": outcomes, "interrupted": interrupted, "unbuilt_observations": unbuilt,
            "ahead": selection.get("ahead"), "done_first": selection.get("done_first"),
            "policy_changes": selection.get("policy_changes", []),
            "policy_error": selection.get("policy_error"), "run_id": run_id}


@dg.op(name=names.REFRESH_OP, pool=DUCKDB_WRITER_POOL,
       description="Rebuild grants, the reports and grant_history (dbt) after changes.")
def refresh_access_history(
    context: dg.OpExecutionContext, result: dict, provisioning_database: ProvisioningDatabase
) -> dict:
    steps = context.run.step_keys_to_execute  # None: every step
    unbuilt = result["unbuilt_observations"]
    if not result["dry_run"] and steps is not None and names.APPLY_REQUESTS_OP not in steps:
        # Re-executed from failure: the count is the first run's, whose own refresh may have
        # built them already (it failed after, on the policy or an outage): counted again, so
        # nothing is rebuilt twice nor said to be.
        with provisioning_database.connect() as conn:
            unbuilt = unbuilt_observations(conn)
    drift = [] if result["dry_run"] else _rebuild(context, provisioning_database, unbuilt)
    failed_to_apply = result.get("interrupted") or result.get("policy_error")
    if failed_to_apply and steps is not None and names.APPLY_REQUESTS_OP not in steps:
        # Re-executed from failure in the UI: this run starts at this step, from the outputs of
        # the run that took the requests, so it takes none itself. Its failure again would say
        # "LangSmith stopped answering" of a LangSmith that answers now, and count as one more
        # failure in the sensors' wait. (The run id is absent from an older version's output.)
        taken_by = result.get("run_id") or context.run.parent_run_id or "(unknown)"
        raise refused_input(context, _reexecuted_from_failure(taken_by, failed_to_apply))
    if result.get("interrupted"):
        with provisioning_database.failures_in_its_orgs_terms():
            raise ProvisioningInterruptedError(result["interrupted"])
    if result.get("policy_error"):  # its grants wait (pending) until the policy can be read
        raise dg.Failure(description=result["policy_error"])
    return {"unexplained_changes": len(drift),
            "privileged_unexplained_changes": sum(change.is_privileged for change in drift)}


def _reexecuted_from_failure(taken_by: str, failure: str) -> str:
    """The failure of a run re-executed from the failure of run ``taken_by``, which took its
    requests and did not apply them all (``failure``, as that run said it)."""
    return (
        f"Re-executed from the failure of run {taken_by}, this run took no request: only {names.REFRESH_OP} ran, "
        f"from that run's {names.APPLY_REQUESTS_OP}, which ended: {failure.rstrip('.')}. Nothing was applied or "
        "recorded again. "
        f"To try its requests again, re-execute it with all steps, or launch {JOB_NAME} from the Launchpad "
        "(the provisioning sensor, while running, takes them on its own)."
    )


def _rebuild(context: dg.OpExecutionContext, provisioning_database: ProvisioningDatabase,
             unbuilt: int) -> list[UnexplainedChange]:
    if not unbuilt:
        context.log.info("No grant changed: nothing to rebuild.")
        return []
    # Each settled request recorded what it verified (raw.provisioning_observations), and what
    # it found changed by hand where that contradicts grants (before its write, or instead of
    # one when already satisfied); dbt lays those over the latest sync in grants and rebuilds
    # everything downstream, history included. It builds a scratch copy that replaces the
    # working file only if every model and test passed, and the same file name as a sync's, so
    # it reuses the sync's parse of the project.
    database, notifier = provisioning_database.database, Notifier.of_org(provisioning_database.org)
    scratch = database.begin_scratch()
    try:
        drift = rebuild_history(scratch, database.dbt_target_path,
                                unused_days=provisioning_database.org.settings.unused_days,
                                notifier=notifier)
        database.commit_scratch(scratch)
    except BaseException:
        database.discard_scratch(scratch)
        raise
    context.log.info(f"grants, reports and grant_history rebuilt with {unbuilt} verified change(s).")
    if drift:
        context.log.warning(
            f"{len(drift)} change(s) made outside langsmith-access, found by this run's requests: "
            "listed in main.report_unexplained_changes"
            + ("; change.unexplained queued for the webhook" if notifier.enabled else "")
        )
    return drift


@dg.graph(description="Apply queued workspace-role grants and revokes: validate, apply, verify, audit.")
def provision_workspace_roles_graph():
    refresh_access_history(apply_requests(select_requests()))


def provision_job(orgs: Orgs) -> dg.JobDefinition:
    return provision_workspace_roles_graph.to_job(
        name=JOB_NAME,
        executor_def=dg.in_process_executor,
        config=org_run_config(orgs=orgs),
        tags=names.RUN_TIME_LIMIT_TAGS,
        description="Apply one org's (the partition's) queued workspace-role grants and revokes: "
        "validate, apply, verify, audit.",
    )


def orgs_with_provisioning_run_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """The slugs of the orgs with a provisioning run queued or running (one at a time per org: a
    second would only find the first one's requests claimed). One query for a tick's every org,
    after failing the runs whose command-line process was killed (``fail_runs_of_ended_processes``)."""
    fail_runs_of_ended_processes(instance)
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT))
    return {slug for run in runs if (slug := slug_tagged_on(run))}


# A run the command line executes goes from NOT_STARTED to STARTED in its own process.
_OWN_PROCESS_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED]


def fail_runs_of_ended_processes(instance: dg.DagsterInstance) -> list[str]:
    """Record as failed each run of any job a command-line process executed on this host and
    ended without finishing (SIGKILL, the OOM killer): it stayed STARTED, holding its org's run
    slot, and the sensors took its org's provisioning as in flight until run monitoring's hour
    was up. Its requests are settled by the next run, as after any interrupted one. Returns the
    run ids it failed."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_OWN_PROCESS_STATUSES)):
        process = run.tags.get(names.PROCESS_TAG)
        if process is None or not has_ended(process) or _inherited(instance, run, process):
            continue
        instance.report_run_failed(run, message=(
            f"The langsmith-access process that ran it ({process}, host:pid:start) ended without finishing it "
            "(killed, or its machine stopped): recorded as failed. Nothing to do by hand: the next "
            "provisioning run settles the requests it left in progress, the next sync builds anew."))
        failed.append(run.run_id)
    return failed


def _inherited(instance: dg.DagsterInstance, run: dg.DagsterRun, process: str) -> bool:
    """Whether ``run``'s process tag is its parent run's, copied by a re-execution from the UI
    (Dagster copies the parent's tags) before its worker tagged it with its own: it says nothing
    of the process running this run."""
    parent = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    return parent is not None and parent.tags.get(names.PROCESS_TAG) == process


# After a failed provisioning run of an org, the sensors wait before launching the next one:
# 30 s, doubling with each failure in a row, at most 30 minutes. A run fails when LangSmith
# stops answering (its requests go back to pending) or refuses the key: relaunching every tick
# would only add failed runs and audit events until someone fixes it.
BACKOFF_FIRST_SECONDS = 30
BACKOFF_MAX_SECONDS = 30 * 60
_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def failed_runs_backoff(instance: dg.DagsterInstance, slug: str, now: float | None = None) -> str | None:
    """Why not to launch org ``slug``'s next provisioning run yet (its last runs failed and the
    wait after them is not over), or None."""
    failures = _failures_in_a_row(instance, slug)
    if not failures:
        return None
    failed = len(failures)
    wait = min(BACKOFF_FIRST_SECONDS * 2 ** (failed - 1), BACKOFF_MAX_SECONDS)
    last = failures[0]
    ended = last.end_time or last.update_timestamp.timestamp()
    resume = ended + wait
    if (time.time() if now is None else now) >= resume:
        return None
    return (f"The last {failed} provisioning run(s) of this org failed (the latest: {last.dagster_run.run_id}); "
            f"the next is launched from {datetime.fromtimestamp(resume, UTC):%H:%M:%S} UTC (the wait doubles "
            f"with each failure, {BACKOFF_MAX_SECONDS // 60} minutes at most). Fix what the run's failure "
            "names, or launch provision_workspace_roles from the Launchpad to try now.")


# The failures in a row a wait counts (the longest wait is reached from the 7th).
_FAILURES_COUNTED = 12


def _failures_in_a_row(instance: dg.DagsterInstance, slug: str) -> list[dg.RunRecord]:
    """Org ``slug``'s provisioning runs that failed since its last success or cancel, newest
    first, at most _FAILURES_COUNTED; runs that refused their input are passed over, however
    many (a dozen mistyped Launchpad forms must not hide the failure before them)."""
    failures: list[dg.RunRecord] = []
    cursor = None
    while True:
        records = instance.get_run_records(
            filters=dg.RunsFilter(job_name=JOB_NAME, statuses=_FINISHED, tags=org_tags(slug)),
            limit=_FAILURES_COUNTED, cursor=cursor,
        )
        for record in records:  # newest first
            run = record.dagster_run
            if run.status != dg.DagsterRunStatus.FAILURE:
                return failures
            if REFUSED_INPUT_TAG not in run.tags:
                failures.append(record)
                if len(failures) == _FAILURES_COUNTED:
                    return failures
        if len(records) < _FAILURES_COUNTED:
            return failures
        cursor = records[-1].dagster_run.run_id


def failed_runs_backoffs(
    instance: dg.DagsterInstance, slugs: list[str], now: float | None = None
) -> dict[str, str | None]:
    """``failed_runs_backoff`` of each org, by slug, with one query for the orgs that cannot be
    waiting: a wait ends at most BACKOFF_MAX_SECONDS after the failed run that began it ended, so
    an org with no run failed since then waits for nothing. Only the orgs with one are looked at
    one by one (a query an org: a tick's cost grew with the orgs and their runs' history). Failed
    runs only: a busy org's successes would be read every tick, and the backoff bounds an org's
    failures in the window."""
    now = time.time() if now is None else now
    # The minute beyond: a run's end time and its record's update time are two clock readings.
    since = datetime.fromtimestamp(now - BACKOFF_MAX_SECONDS - 60, UTC)
    failed = instance.get_runs(filters=dg.RunsFilter(
        job_name=JOB_NAME, statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since))
    failed_lately = {slug_tagged_on(run) for run in failed}
    return {slug: failed_runs_backoff(instance, slug, now) if slug in failed_lately else None for slug in slugs}


def runs_launched_before(instance: dg.DagsterInstance, slug: str) -> int:
    """How many provisioning runs org ``slug`` has had: where a sensor's launch count starts when
    its cursor has none (a cleared cursor), so no run key it makes was used before (Dagster
    launches nothing for a used key)."""
    return instance.get_runs_count(dg.RunsFilter(job_name=JOB_NAME, tags=org_tags(slug)))


def pending_request_ids(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """What a provisioning run of the org would take: pending requests, and those in progress
    where a run died."""
    return queue.request_ids_with_status(conn, "pending") + queue.request_ids_with_status(conn, "in_progress")


def unpublished_changes(org: Org) -> list[str]:
    """A command that queued or decided requests, or a provisioning run that settled them, died
    or failed before publishing them (``AccessDatabase.publish_pending``): the analysts' copy
    shows none of them. A run publishes them when it starts and takes what is pending, so they
    are not left until some other command or sync publishes."""
    return ["unpublished changes"] if AccessDatabase(org.duckdb_path).unfinished_publish_path.exists() else []


NO_DATABASE_YET = "No analysts' database yet: nothing has been synced or queued."


def read_for_tick(
    database: AccessDatabase, read: Callable[[duckdb.DuckDBPyConnection], list[str]],
    missing: Callable[[], str] = lambda: NO_DATABASE_YET,
) -> list[str] | str:
    """``read`` of an org's analysts' copy for one sensor tick, or why it cannot be read now
    (this org's skip reason: the other orgs' ticks go on). The copy, for two seconds at most:
    runs never hold it, so this cannot block on a sync, and a tick never holds the database.
    ``missing``: the reason when there is no copy yet."""
    try:
        with database.read_published(timeout_seconds=TICK_READ_TIMEOUT_SECONDS) as conn:
            return read(conn)
    except DatabaseNotReadyError:
        return missing()
    except DatabaseBusyError as error:
        # The org's folder is the tick's to say (it names the org): the file's name is enough here.
        said = str(error).replace(str(database.path), database.path.name)
        return f"Database busy, trying again next tick: {_briefly(said)}"
    except duckdb.Error as error:
        # Not a lock (that is DatabaseBusyError): a copy that would not open or be read (a file
        # of a newer DuckDB, a queue without a column), which waiting alone does not mend.
        return f"Database unreadable, trying again next tick: {first_line(str(error))}"
    except DatabaseUnusableError as error:
        return f"Database unusable, trying again next tick: {error}: {error.fix}."
    except OSError as error:  # its folder cannot even be looked at (no permission, a stale NFS handle)
        return f"Database unreadable, trying again next tick: {error}."


def _briefly(busy: str) -> str:
    """DuckDB's lock message without its documentation link and with the file's name for its
    path: a tick's skip reason names every held org's (600 held: over 100 KB), and the holder's
    PID and program are what an operator acts on."""
    busy = re.sub(r"\s*See also https?://\S+", "", busy)
    return re.sub(r'lock on file "([^"]*)"', lambda m: f'lock on file "{PurePath(m.group(1)).name}"', busy)


def no_database_reason(org: Org, listed: Collection[str]) -> str:
    """Why an org of the orgs file has no analysts' copy: nothing synced yet, or, when a folder
    no entry lists (``listed``: the slugs of the orgs file) holds this organization's database,
    a slug renamed in the file, whose runs are refused until its files move (said as the CLI
    says it; "nothing has been synced" would send the operator looking for a failed sync)."""
    if org.orgs_root is None or not org.organization_id:
        return NO_DATABASE_YET
    path = org.duckdb_path
    try:
        found = database_elsewhere(path, org.orgs_root, org.organization_id, leave_out=listed)
    except OSError:  # the orgs' folder cannot be looked at: the org's run says why
        return NO_DATABASE_YET
    if found is None:
        return NO_DATABASE_YET
    fix = OrganizationElsewhereError(path, *found).fix
    return (f"No analysts' database yet, but {found[0]} holds this organization's data (a slug renamed in the "
            f"orgs file): its runs are refused until that folder is moved. Fix: {fix}.")


def read_each_for_tick(
    orgs: list[Org], read: Callable[[Org, duckdb.DuckDBPyConnection], list[str]], *, deadline: float | None = None,
    listed: Collection[str] = (),
) -> dict[str, list[str] | str]:
    """``read_for_tick`` of each org's analysts' copy, side by side (``look_at_each_org``), by slug;
    without the orgs it could not read by ``deadline``. ``listed``: every slug of the orgs file
    (``no_database_reason``)."""
    return look_at_each_org(
        orgs, lambda org: read_for_tick(AccessDatabase(org.duckdb_path), lambda conn: read(org, conn),
                                        missing=lambda: no_database_reason(org, listed)),
        deadline=deadline)


def launch_per_org(
    context: dg.SensorEvaluationContext,
    orgs: Orgs,
    *,
    in_flight_reason: str,
    read_due: Callable[[Org, duckdb.DuckDBPyConnection], list[str]],
    nothing_due: str,
    run_key_prefix: str,
    count_tag: str,
    budget_seconds: float = TICK_BUDGET_SECONDS,
):
    """One tick of a sensor that launches ``provision_workspace_roles`` per org: for each org,
    ``read_due`` of its analysts' copy gives the ids of what is to do (a run for that org's
    partition, its count in the tag ``count_tag``), unless the org waits (no usable key, the
    wait after failed runs, its provisioning run in flight: ``in_flight_reason``). A skip reason
    says why nothing is launched for an org (``nothing_due`` when nothing is due). One org's
    trouble (a busy, missing or damaged database, no usable key) never holds another's work back.

    The tick ends within ``budget_seconds`` whatever the number of orgs: those it did not get to
    (their copies not read, or their runs not counted, by then) are named and left to the next
    tick, which starts with them (the cursor's ``start``), so held copies cannot starve an org."""
    # The cursor counts each org's launches (at least its runs); it never filters work (a run
    # takes everything due when it starts), so it cannot skip any. The run key makes a
    # re-evaluated tick launch nothing twice. After failed runs the org waits (failed_runs_backoff).
    deadline = tick_deadline(budget_seconds)
    launches, start = _launches_of(context.cursor), _start_of(context.cursor)
    order = starting_with(list(orgs), start)
    in_flight = orgs_with_provisioning_run_in_flight(context.instance)
    backoffs = failed_runs_backoffs(context.instance, list(orgs.slugs))
    waiting = {org.slug: reason for org in orgs
               if (reason := no_key_reason(org) or backoffs[org.slug]
                   or (in_flight_reason if org.slug in in_flight else None))}
    due = read_each_for_tick([org for org in order if org.slug not in waiting], read_due, deadline=deadline,
                             listed=orgs.slugs)
    left = {org.slug for org in orgs if org.slug not in waiting and org.slug not in due}
    run_requests, skipped = [], []
    for org in order:
        if org.slug in left:
            continue
        work = waiting.get(org.slug) or due[org.slug] or nothing_due
        if isinstance(work, str):
            skipped.append((org.slug, work))
            continue
        if time.monotonic() > deadline:  # its launch count is one query more: the next tick's
            left.add(org.slug)
            continue
        # Never below the org's runs: a count lowered by hand in the UI would reuse run keys,
        # and Dagster launches nothing for a used one.
        launches[org.slug] = max(launches.get(org.slug, 0), runs_launched_before(context.instance, org.slug)) + 1
        digest = hashlib.sha256("\n".join(sorted(work)).encode()).hexdigest()[:12]
        run_requests.append(dg.RunRequest(
            run_key=f"{run_key_prefix}-{org.slug}-{launches[org.slug]}-{digest}",
            run_config={},  # no ids: the run takes everything due in its org when it starts
            partition_key=org.slug,
            tags={**org_tags(org.slug), count_tag: str(len(work))},
        ))
    next_start = first_left(order, left)
    if run_requests or next_start != start:
        context.update_cursor(json.dumps({"launches": launches} | ({"start": next_start} if next_start else {})))
    position = {slug: index for index, slug in enumerate(orgs.slugs)}  # said in the orgs' order
    skipped.sort(key=lambda said: position[said[0]])
    run_requests.sort(key=lambda request: position[str(request.partition_key)])
    left_said = not_looked_at([org.slug for org in order if org.slug in left], budget_seconds,
                              "the next tick starts with them") if left else None
    if run_requests:
        for slug, reason in skipped:
            context.log.info(f"{slug}: {reason}")
        if left_said:
            context.log.warning(left_said)
        return run_requests
    if not left_said:
        return dg.SkipReason(skip_reasons(skipped))
    # Each reason led by its org's slug, even a single one: other orgs are named after it.
    return dg.SkipReason(" ".join([skip_reasons(skipped, named=True), left_said] if skipped else [left_said]))


def _cursor_field(cursor: str | None, name: str) -> object:
    """Field ``name`` of the sensor's cursor, or None where the cursor cannot be read: the Dagster
    UI lets an operator set a cursor to anything ("0" to reset it)."""
    try:
        return json.loads(cursor).get(name) if cursor else None
    except (ValueError, AttributeError):
        return None


def _launches_of(cursor: str | None) -> dict[str, int]:
    """Each org's launch count in the cursor; none (as after a cleared cursor) where it cannot
    be read."""
    launches = _cursor_field(cursor, "launches")
    if not isinstance(launches, dict):
        return {}
    return {slug: count for slug, count in launches.items() if isinstance(count, int)}


def _start_of(cursor: str | None) -> str | None:
    """The org the last tick left first, to start this one with; None (the orgs' order) where
    the cursor names none or cannot be read."""
    start = _cursor_field(cursor, "start")
    return start if isinstance(start, str) else None


def evaluate_queue(context: dg.SensorEvaluationContext, orgs: Orgs, *,
                   budget_seconds: float = TICK_BUDGET_SECONDS):
    """One tick: for each org, a run for every pending request (or for the changes a command
    committed and died before publishing: ``unpublished_changes``), or a reason to wait."""
    return launch_per_org(
        context, orgs,
        in_flight_reason="A provisioning run is in progress; the next tick takes what is left.",
        read_due=lambda org, conn: pending_request_ids(conn) or unpublished_changes(org),
        nothing_due="No pending requests.",
        run_key_prefix="provision", count_tag="langsmith_access/requests", budget_seconds=budget_seconds,
    )


@dg.definitions
def provisioning_definitions() -> dg.Definitions:
    settings = Settings.from_env()
    orgs = deployment_orgs()
    job = provision_job(orgs)

    @dg.sensor(
        name=names.PROVISIONING_SENSOR,
        job=job,
        minimum_interval_seconds=settings.provisioning_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches provision_workspace_roles for each org with pending requests (or with "
        "changes a command committed but did not publish): one run per org per tick, for all of them.",
    )
    def provisioning_queue_sensor(context: dg.SensorEvaluationContext):
        # The orgs of the definitions' load: a changed orgs file takes a code server reload.
        return evaluate_queue(context, orgs)

    return dg.Definitions(jobs=[job], sensors=[provisioning_queue_sensor])
