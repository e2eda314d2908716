"""The dbt project, wired once: a cached ``DbtProject`` and the translator."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"

# The dbt installed beside this Python, so an un-activated venv (cron, the Dagster daemon) works.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def prepare_manifest(*, force: bool = False) -> Path:
    """Build ``target/manifest.json`` (``dbt parse``) if missing (or always, with ``force``).

    ``@dbt_assets`` reads the manifest when the definitions are imported. The Makefile and the
    test session build it ahead of time; this covers an installed CLI run on a fresh checkout.
    """
    if force or not dbt_project.manifest_path.exists():
        from dagster_dbt import DbtCliResource

        DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
            ["parse", "--quiet"], target_path=dbt_project.target_path
        ).wait()
    return dbt_project.manifest_path


class AccessDbtTranslator(DagsterDbtTranslator):
    """dbt models go to group ``transform``; sources keep dagster-dbt's default keys
    (``raw/<table>``), which are exactly the extract assets' keys."""

    def get_group_name(self, dbt_resource_props) -> str:
        return "transform"


translator = AccessDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
)
