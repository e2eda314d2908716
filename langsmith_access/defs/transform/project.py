"""The dbt project, wired once: a cached ``DbtProject`` and the translator."""

from __future__ import annotations

import importlib.metadata
import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject
from packaging import version

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"

# The dbt installed beside this Python, so an un-activated venv (cron, the Dagster daemon) works.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def prepare_manifest(*, force: bool = False) -> Path:
    """Build ``target/manifest.json`` (``dbt parse``) if missing (or always, with ``force``).

    ``@dbt_assets`` reads the manifest when the definitions are imported. The Makefile and the
    test session build it ahead of time; this covers an installed CLI run on a fresh checkout.
    """
    if force or _manifest_is_stale():
        DbtCoreCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
            ["parse", "--quiet"], target_path=dbt_project.target_path
        ).wait()
    return dbt_project.manifest_path


class DbtCoreCliResource(DbtCliResource):
    """dagster-dbt's ``DbtCliResource`` without two costs it pays on every invocation, each a
    few seconds, that buy this project nothing:

    - ``dbt --version`` in a subprocess, to tell dbt Core from the Fusion engine: the
      executable is the dbt Core installed beside this Python (``DBT_EXECUTABLE``), so its
      version is the installed package's;
    - a dbt adapter built inside the Dagster process (profile, project and every macro
      loaded), which dagster-dbt needs only for ``fetch_row_counts()`` and
      ``fetch_column_metadata()``; this project calls neither.

    The dbt run itself, its events and its asset checks are dagster-dbt's, unchanged.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):
        return None


REPORTS_GROUP = "reports"
TRANSFORM_GROUP = "transform"


def _manifest_is_stale() -> bool:
    """Missing, or older than any file of the dbt project (a model added since the last parse
    would otherwise be unknown to Dagster and break the run)."""
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    for folder in ("models", "snapshots", "macros", "tests"):
        for path in (DBT_PROJECT_DIR / folder).rglob("*"):
            if path.is_file() and path.stat().st_mtime > built:
                return True
    return any(
        (DBT_PROJECT_DIR / name).stat().st_mtime > built for name in ("dbt_project.yml", "profiles.yml")
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


translator = AccessDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
)
