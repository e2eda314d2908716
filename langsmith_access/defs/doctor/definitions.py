"""The op job ``check_langsmith_connection``: the connection doctor, launched from the UI.

Thin wiring around ``langsmith_access.doctor`` (no run config); one org per run (its
partition). Its output metadata shows each check; the run fails when a check fails.
"""

import dagster as dg

from langsmith_access.defs.orgs import RunOrganization, deployment_orgs, org_run_config
from langsmith_access.doctor import run_checks
from langsmith_access.names import RUN_TIME_LIMIT_TAGS
from langsmith_access.provisioning.expiry import unlisted_org_warnings
from langsmith_access.settings import SettingsError
from langsmith_access.store.database import AccessDatabase, refusal_ahead

JOB_NAME = "check_langsmith_connection"


@dg.op(description="Run the nine connection checks (read-only calls) and report each.")
def check_connection(context: dg.OpExecutionContext, organization: RunOrganization) -> dg.Output:
    diagnosis = run_checks(org=organization.org)
    for check in diagnosis.checks:
        line = "\n".join(check.lines())
        if check.status == "fail":
            context.log.error(line)
        elif check.status == "warn":
            context.log.warning(line)
        else:
            context.log.info(line)
    # Beside the connection: a database that would refuse this org's runs, and an org folder the
    # orgs file no longer names that still holds work.
    refusal = refusal_ahead(AccessDatabase.of_org(organization.org))
    warnings = [refusal] if refusal is not None else []
    try:
        warnings += unlisted_org_warnings(deployment_orgs())
    except SettingsError:  # the orgs file broke since the definitions loaded: this run's org is checked
        pass
    for warning in warnings:
        context.log.warning(f"warning: {warning}")
    metadata: dict[str, dg.MetadataValue | str | bool] = {
        "ok": diagnosis.ok,
        "report": dg.MetadataValue.md(
            "| check | status | detail | fix |\n|---|---|---|---|\n"
            + "\n".join(
                f"| {c.name} | {c.status} | {_cell(c.detail)} | {_cell(c.fix or '')} |"
                for c in diagnosis.checks
            )
        ),
        **{f"check/{c.name}": f"{c.status}: {c.detail}" for c in diagnosis.checks},
        **({"warnings": dg.MetadataValue.md("\n".join(f"- {_cell(w)}" for w in warnings))} if warnings else {}),
    }
    if not diagnosis.ok:
        failed = [c for c in diagnosis.checks if c.status == "fail"]
        # The run page shows this first: what failed and what to do, each check's as the CLI says it.
        raise dg.Failure(
            description=f"connection checks failed: {', '.join(c.name for c in failed)}. "
            + " ".join(f"{c.name}: {c.detail.rstrip('.')}." + (f" Fix: {c.fix.rstrip('.')}." if c.fix else "")
                       for c in failed),
            metadata=metadata,
        )
    return dg.Output({**diagnosis.to_dict(), "warnings": warnings}, metadata=metadata)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dg.graph
def check_langsmith_connection():
    check_connection()


@dg.definitions
def doctor_definitions() -> dg.Definitions:
    job = check_langsmith_connection.to_job(
        name=JOB_NAME,
        config=org_run_config(),
        # One op: a step subprocess of its own only adds start-up (a run took 11 s, 8.7 s in-process).
        executor_def=dg.in_process_executor,
        tags=RUN_TIME_LIMIT_TAGS,
        description="Will langsmith-access work against one org's LangSmith (the partition)? "
        "Read-only checks.",
    )
    return dg.Definitions(jobs=[job])
