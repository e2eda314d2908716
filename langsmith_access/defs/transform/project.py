"""The dbt project as Dagster sees it: the manifest ``@dbt_assets`` reads, a ``DbtProject`` for
its metadata, the translator, and the turning of dbt's node results into Dagster events.

How dbt is found, pointed at a database and run lives in ``langsmith_access.transform``; this
module only wires its results into Dagster.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_shared.record import replace

from langsmith_access.transform import (
    DBT_FAILURES_METADATA,
    DBT_PROJECT_DIR,
    DbtInvocation,
    NodeResult,
    describe_test,
    prepare_manifest,
)
from langsmith_access.transform.project import PROFILE_TEMPLATE

REPORTS_GROUP = "reports"
TRANSFORM_GROUP = "transform"


# The project's files and the manifest directory (in the cache, keyed by the project's hash).
dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=PROFILE_TEMPLATE.parent,
    target_path=prepare_manifest().parent,
)


class AccessDbtTranslator(DagsterDbtTranslator):
    """The access-review models (``models/reports/``) go to group ``reports``, every other dbt
    node to group ``transform``; sources keep dagster-dbt's default keys (``raw/<table>``),
    which are exactly the extract assets' keys."""

    def get_group_name(self, dbt_resource_props) -> str:
        # fqn of a model: [project, <folders under models/>..., name]
        fqn = dbt_resource_props.get("fqn") or []
        if dbt_resource_props.get("resource_type") == "model" and REPORTS_GROUP in fqn[1:-1]:
            return REPORTS_GROUP
        return TRANSFORM_GROUP

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        # dagster-dbt describes a check only from its test's meta.description: say what each checks.
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return replace(spec, description=describe_test(manifest["nodes"][unique_id]))


translator = AccessDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
)


def dagster_events(
    result: NodeResult, manifest: Mapping[str, Any], context: dg.AssetExecutionContext
) -> Iterator[Any]:
    """The Dagster events of one dbt node result (an ``Output`` for a model or snapshot, an
    ``AssetCheckResult`` for a test), exactly as dagster-dbt makes them from dbt's event."""
    message = DbtCoreCliEventMessage(raw_event=dict(result.event), event_history_metadata={})
    yield from message.to_default_asset_events(
        manifest=manifest, dagster_dbt_translator=translator, context=context, project=dbt_project
    )


def build_failure(invocation: DbtInvocation) -> dg.Failure:
    """The step failure of a build that did not pass: what failed in one line, and the failed
    nodes with their messages as structured metadata (the CLI prints one line per node)."""
    return dg.Failure(
        description=invocation.failure_message().splitlines()[0],
        metadata={
            DBT_FAILURES_METADATA: dg.MetadataValue.json(
                [result.as_dict() for result in invocation.failed_nodes]
                + [{"unique_id": None, "status": "error", "message": message}
                   for message in invocation.errors if message]
            )
        },
    )
