"""Dagster entry point: loads every definition under ``langsmith_access/defs/``."""

from pathlib import Path

import dagster as dg

import langsmith_access.defs


@dg.definitions
def defs() -> dg.Definitions:
    # From the module itself, not by looking for the project's pyproject.toml
    # (``load_from_defs_folder``): an installed package has none above it.
    return dg.ComponentTree.from_module(
        defs_module=langsmith_access.defs, project_root=Path(__file__).resolve().parent.parent
    ).build_defs()
