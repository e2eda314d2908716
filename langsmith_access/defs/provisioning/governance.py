"""Access governance in Dagster: the op job ``decide_access_request`` (approve or deny from the
Launchpad), ``access_expiry_sensor`` (launches ``provision_workspace_roles`` when access is due to
end, an approval is overdue or an expiry warning is due) and ``notification_outbox_sensor``
(delivers due notifications on each tick).

Thin wiring around ``provisioning.approvals``, ``provisioning.expiry`` and
``governance.notifications``. Per org like the rest (``defs/orgs.py``): a decision run is one
org's partition; each sensor tick looks at every org.
"""


import re

import dagster as dg
import duckdb
from pydantic import Field

from langsmith_access import names
from langsmith_access.defs.orgs import TICK_BUDGET_SECONDS, deployment_orgs, org_run_config, skip_reasons
from langsmith_access.defs.provisioning.definitions import (
    launch_per_org,
    left_empty,
    other_org_holding,
    refuse_environment_references,
    run_launcher,
)
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, ProvisioningDatabase
from langsmith_access.governance.notifications import DELIVERY_BUDGET_SECONDS, Notifier, deliver_due_for_orgs
from langsmith_access.provisioning import approvals, expiry, queue
from langsmith_access.settings import Org, Orgs, Settings, mask_keys

# The verbs of `langsmith-access approve|deny`, and provisioning_approvals.decision's own words.
DECISIONS = {"approve": approvals.APPROVED, "deny": approvals.DENIED,
             approvals.APPROVED: approvals.APPROVED, approvals.DENIED: approvals.DENIED}


class DecisionConfig(dg.Config):
    """One decision on a request awaiting approval, as ``langsmith-access approve|deny`` takes it."""

    request_id: str = Field(description="The request awaiting approval (`langsmith-access requests "
                            "--status awaiting_approval` lists them).")
    # Or the table's words, 'approved' | 'denied'.
    decision: str = Field(description="approve or deny.")
    by: str = Field(description="The approver's email, checked against the policy's approvers (and, where "
                    "the run is tagged with its launcher, the launcher's).")
    comment: str | None = Field(default=None, description="Kept with the decision and its audit.")


def in_decision_terms(text: str) -> str:
    """A refusal written for ``langsmith-access approve|deny`` (``--by is empty``) naming the
    Launchpad's own fields instead (``by``, ``comment``), as the operator typed them."""
    return re.sub(r"--(by|comment)\b", r"\1", text)


@dg.op(name=names.DECIDE_OP, pool=DUCKDB_WRITER_POOL,
       description="Approve or deny a request awaiting approval; a refusal fails the run and is recorded.")
def decide_request(
    context: dg.OpExecutionContext, config: DecisionConfig, provisioning_database: ProvisioningDatabase
) -> dict:
    refuse_environment_references(context, names.DECIDE_OP)
    # The Launchpad scaffolds the required fields as empty text: name every one left so at once.
    blank = [name for name in ("request_id", "decision", "by") if not getattr(config, name).strip()]
    if blank:
        raise dg.Failure(provisioning_database.org.in_its_own_terms(
            f"{left_empty(blank)} (request_id: `langsmith-access requests --status awaiting_approval` lists "
            "them; decision: approve or deny; by: the approver's email). Nothing was recorded."))
    decision = DECISIONS.get(config.decision.strip().lower())
    if decision is None:
        raise dg.Failure(f"decision must be 'approve' or 'deny', got {mask_keys(config.decision)!r}.")
    org = provisioning_database.org
    with provisioning_database.connect() as conn:
        conn.execute("BEGIN")
        try:
            result = approvals.decide_on(
                conn, config.request_id, decision, config.by, config.comment, policy_path=org.policy_path,
                notifier=Notifier.of_org(org), run_id=context.run.run_id,
                launched_by=run_launcher(context), holder_of=lambda unknown: other_org_holding(org, unknown),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    # The commands it suggests carry this org's --org (several orgs: none works without it), in
    # the failure and its metadata alike.
    message = org.in_its_own_terms(in_decision_terms(result.message))
    if not result.recorded and result.message.startswith(approvals.UNKNOWN_REQUEST):
        holder = result.held_by
        if holder is not None:  # launched for the wrong partition: say whose it is, as the CLI does
            message += f" It is a request of org {holder!r}: launch {names.DECIDE_JOB} for partition {holder!r}."
    # No such request has no status: said so, not as the text "None".
    metadata = {"request_id": result.request_id, "status": result.status or "no such request", "message": message}
    if not result.recorded:  # the refusal is recorded (decision_refused); the run says why
        raise dg.Failure(f"Refused: {message}", metadata=metadata)
    context.log.info(message)
    context.add_output_metadata(metadata)
    return {"request_id": result.request_id, "decision": result.decision, "status": result.status}


@dg.graph(description="Approve or deny a request awaiting approval, as an approver the policy names.")
def decide_access_request_graph():
    decide_request()


def decide_job(orgs: Orgs) -> dg.JobDefinition:
    return decide_access_request_graph.to_job(
        name=names.DECIDE_JOB,
        executor_def=dg.in_process_executor,
        tags=names.RUN_TIME_LIMIT_TAGS,
        config=org_run_config(orgs=orgs),
        description="Approve or deny a request awaiting approval in one org (the partition), as an "
        "approver its policy names.",
    )


def expiry_due(org: Org, conn: duckdb.DuckDBPyConnection) -> list[str]:
    """What is due in one org (access to end, approvals overdue, expiry warnings): warnings only
    where it has a webhook to send them to."""
    settings = org.settings
    warning = settings.expiry_warning if org.notifies else None
    return expiry.expiry_work_due(conn, queue.now_utc(), warning)


def evaluate_expiries(context: dg.SensorEvaluationContext, orgs: Orgs, *,
                      budget_seconds: float = TICK_BUDGET_SECONDS):
    """One tick: a provisioning run for each org where access is due to end, an approval is
    overdue or an expiry warning is due (the run does each before taking the queue), else why
    not."""
    return launch_per_org(
        context, orgs,
        in_flight_reason="A provisioning run is in progress; it handles what is due.",
        read_due=expiry_due,
        nothing_due="No access due to end, approval overdue or expiry warning due.",
        run_key_prefix="expiry", count_tag="langsmith_access/due", budget_seconds=budget_seconds,
    )


def evaluate_outbox(orgs: Orgs, *, budget_seconds: float = DELIVERY_BUDGET_SECONDS) -> dg.SkipReason:
    """One tick: POST each org's notifications that are due to its webhook (never raises;
    failures wait for a later tick, with backoff). The orgs are delivered side by side, so a slow
    receiver costs the tick one delivery's budget, not one per org."""
    said: dict[str, str] = {}
    reports = deliver_due_for_orgs(orgs, lease_timeout_seconds=2.0, budget_seconds=budget_seconds)
    for slug, report in reports.items():
        if report is None:
            said[slug] = "LANGSMITH_ACCESS_WEBHOOK_URL is not set: no notifications to deliver."
        elif report.problem:
            said[slug] = report.problem
        elif not report.attempted:
            said[slug] = "No notification due."
        else:
            failed = f"; {len(report.failed)} not delivered ({'; '.join(sorted(set(report.failed.values())))}), " \
                     "retried later" if report.failed else ""
            said[slug] = f"Delivered {len(report.delivered)} notification(s){failed}."
    return dg.SkipReason(skip_reasons(list(said.items())))  # in the orgs' order


@dg.definitions
def governance_definitions() -> dg.Definitions:
    settings = Settings.from_env()
    orgs = deployment_orgs()

    @dg.sensor(
        name=names.EXPIRY_SENSOR,
        job_name=names.PROVISION_JOB,
        minimum_interval_seconds=settings.provisioning_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches provision_workspace_roles for each org where time-bound access is due to end, "
                    "an approval is overdue or an expiry warning is due.",
    )
    def access_expiry_sensor(context: dg.SensorEvaluationContext):
        # The orgs of the definitions' load: a changed orgs file takes a code server reload.
        return evaluate_expiries(context, orgs)

    @dg.sensor(
        name=names.OUTBOX_SENSOR,
        minimum_interval_seconds=settings.provisioning_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Delivers each org's due notifications to its webhook (LANGSMITH_ACCESS_WEBHOOK_URL), "
                    "with backoff; launches no run.",
    )
    def notification_outbox_sensor(context: dg.SensorEvaluationContext):
        return evaluate_outbox(orgs)

    return dg.Definitions(jobs=[decide_job(orgs)], sensors=[access_expiry_sensor, notification_outbox_sensor])
