"""Dagster entry point: loads every definition under ``langsmith_access/defs/``, every asset
partitioned by org (``defs/orgs.py``)."""

from pathlib import Path

import dagster as dg

import langsmith_access.defs
from langsmith_access import garbage_collector
from langsmith_access.defs.orgs import deployment_orgs, partition_assets_by_org
from langsmith_access.defs.sources import with_source_columns


@dg.definitions
def defs() -> dg.Definitions:
    # The settings every module reads, read first: a bad variable or orgs file stops the load
    # with its own message (naming it) as the error Dagster shows first, rather than as the cause,
    # under a stack trace, of "Error while building definitions for doctor/definitions.py".
    deployment_orgs()
    # From the module itself, not by looking for the project's pyproject.toml
    # (``load_from_defs_folder``): an installed package has none above it.
    tree = dg.ComponentTree.from_module(
        defs_module=langsmith_access.defs, project_root=Path(__file__).resolve().parent.parent
    ).build_defs()
    # Every module a run needs is loaded by now (the CLI's runner and Dagster's run workers both
    # come through here): set the collector for the records a run parses.
    garbage_collector.tune_for_runs()
    # The default executor, so the runs the asset catalog launches (Dagster's implicit asset job:
    # "Materialize", backfills) run every step in one process, as the named jobs do. Its default
    # (multiprocess) gives each step a process and resources of its own: each step's sync writes
    # went to a scratch copy of their own, discarded when the step ended, and the publish
    # recorded a "succeeded" sync over the previous run's tables.
    with_executor = dg.Definitions.merge(tree, dg.Definitions(executor=dg.in_process_executor))
    return partition_assets_by_org(with_source_columns(with_executor))
