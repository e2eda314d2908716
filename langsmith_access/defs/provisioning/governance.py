"""Access governance in Dagster: the op job ``decide_access_request`` (approve or deny from the
Launchpad), ``access_expiry_sensor`` (launches ``provision_workspace_roles`` when access is due to
end, an approval is overdue or an expiry warning is due) and ``notification_outbox_sensor``
(delivers due notifications on each tick).

Thin wiring around ``provisioning.approvals``, ``provisioning.expiry`` and
``governance.notifications``.
"""

import hashlib
import json

import dagster as dg
import duckdb

from langsmith_access import names
from langsmith_access.defs.provisioning.definitions import provision_workspace_roles, provisioning_run_in_flight
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, ProvisioningDatabase
from langsmith_access.governance.notifications import Notifier, Webhook, deliver_due
from langsmith_access.provisioning import approvals, expiry, queue
from langsmith_access.settings import DEFAULT_ORG_SLUG, Settings
from langsmith_access.store.database import AccessDatabase, DatabaseBusyError, DatabaseNotReadyError


class DecisionConfig(dg.Config):
    """One decision on a request awaiting approval, as ``langsmith-access approve|deny`` takes it."""

    request_id: str
    decision: str  # 'approve' | 'deny'
    by: str  # the approver's email, checked against the policy's approvers
    comment: str | None = None


@dg.op(name=names.DECIDE_OP, pool=DUCKDB_WRITER_POOL,
       description="Approve or deny a request awaiting approval; a refusal fails the run and is recorded.")
def decide_request(
    context: dg.OpExecutionContext, config: DecisionConfig, provisioning_database: ProvisioningDatabase
) -> dict:
    decision = {"approve": approvals.APPROVED, "deny": approvals.DENIED}.get(config.decision)
    if decision is None:
        raise dg.Failure(f"decision must be 'approve' or 'deny', got {config.decision!r}.")
    settings = Settings.from_env()
    with provisioning_database.connect() as conn:
        conn.execute("BEGIN")
        try:
            result = approvals.decide_on(
                conn, config.request_id, decision, config.by, config.comment, policy_path=settings.policy_path,
                notifier=Notifier.from_settings(settings, DEFAULT_ORG_SLUG),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    metadata = {"request_id": result.request_id, "status": str(result.status), "message": result.message}
    if not result.recorded:  # the refusal is recorded (decision_refused); the run says why
        raise dg.Failure(f"Refused: {result.message}", metadata=metadata)
    context.log.info(result.message)
    context.add_output_metadata(metadata)
    return {"request_id": result.request_id, "decision": result.decision, "status": result.status}


@dg.job(name=names.DECIDE_JOB, executor_def=dg.in_process_executor,
        description="Approve or deny a request awaiting approval, as an approver the policy names.")
def decide_access_request():
    decide_request()


def evaluate_expiries(context: dg.SensorEvaluationContext, database: AccessDatabase, settings: Settings):
    """One tick: a provisioning run when access is due to end, an approval is overdue or an
    expiry warning is due (the run does each before taking the queue), else why not."""
    if provisioning_run_in_flight(context.instance):
        return dg.SkipReason("A provisioning run is in progress; it handles what is due.")
    warning = settings.expiry_warning if settings.webhook_url is not None else None
    try:
        # The analysts' copy: runs never hold it, so this cannot block on a sync.
        with database.read_published(timeout_seconds=2) as conn:
            due = expiry.expiry_work_due(conn, queue.now_utc(), warning)
    except DatabaseNotReadyError:
        return dg.SkipReason("No analysts' database yet: nothing has been synced or queued.")
    except (DatabaseBusyError, duckdb.Error) as error:
        return dg.SkipReason(f"Database busy, trying again next tick: {error}")
    if not due:
        return dg.SkipReason("No access due to end, approval overdue or expiry warning due.")
    cursor = json.loads(context.cursor) if context.cursor else {"launches": 0}
    cursor["launches"] += 1
    digest = hashlib.sha256("\n".join(sorted(due)).encode()).hexdigest()[:12]
    context.update_cursor(json.dumps(cursor))
    return dg.RunRequest(
        run_key=f"expiry-{cursor['launches']}-{digest}",
        run_config={},  # the run queues the due revokes first, then takes every pending request
        tags={"langsmith_access/due": str(len(due))},
    )


def evaluate_outbox(database: AccessDatabase, settings: Settings) -> dg.SkipReason:
    """One tick: POST the notifications that are due (never raises; failures wait for a later
    tick, with backoff)."""
    webhook = Webhook.from_settings(settings)
    if webhook is None:
        return dg.SkipReason("LANGSMITH_ACCESS_WEBHOOK_URL is not set: no notifications to deliver.")
    report = deliver_due(database, webhook, lease_timeout_seconds=2.0)
    if report.problem:
        return dg.SkipReason(report.problem)
    if not report.attempted:
        return dg.SkipReason("No notification due.")
    failed = f"; {len(report.failed)} not delivered ({'; '.join(sorted(set(report.failed.values())))}), " \
             "retried later" if report.failed else ""
    return dg.SkipReason(f"Delivered {len(report.delivered)} notification(s){failed}.")


@dg.definitions
def governance_definitions() -> dg.Definitions:
    settings = Settings.from_env()

    @dg.sensor(
        name=names.EXPIRY_SENSOR,
        job=provision_workspace_roles,
        minimum_interval_seconds=settings.provisioning_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches provision_workspace_roles when time-bound access is due to end, an approval is "
                    "overdue or an expiry warning is due.",
    )
    def access_expiry_sensor(context: dg.SensorEvaluationContext):
        current = Settings.from_env()
        return evaluate_expiries(context, AccessDatabase(current.duckdb_path), current)

    @dg.sensor(
        name=names.OUTBOX_SENSOR,
        minimum_interval_seconds=settings.provisioning_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Delivers due notifications to LANGSMITH_ACCESS_WEBHOOK_URL, with backoff; launches no run.",
    )
    def notification_outbox_sensor(context: dg.SensorEvaluationContext):
        current = Settings.from_env()
        return evaluate_outbox(AccessDatabase(current.duckdb_path), current)

    return dg.Definitions(jobs=[decide_access_request], sensors=[access_expiry_sensor, notification_outbox_sensor])
