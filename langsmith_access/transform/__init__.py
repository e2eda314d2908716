"""dbt, wired once and without Dagster: the project, its manifest, a profile per database, and
running a dbt command against one DuckDB file with structured node results.

Its own package, beside ``store/`` rather than inside it: ``store/`` is about the DuckDB files and
the rules for touching them, this is about the dbt project and the dbt process. Both the sync's
dbt asset (``defs/transform/``) and the provisioning history refresh
(``defs/provisioning/``) go through it; neither knows how dbt is started. Like ``store/``, it
imports nothing from Dagster, ``defs/``, the runner or the CLI.

- ``project``: where the project is, its content hash, and the ``profiles.yml`` that points dbt
  at one database file.
- ``cache``: the cache directory of the project as it is now, keyed by that hash.
- ``manifest``: the manifest Dagster reads, built in that cache directory, so an installed,
  read-only package works.
- ``parse_seed``: a database's first dbt run starts from the parse kept for databases of the
  same name, not from a full parse.
- ``invocation``: ``run_dbt``/``build``: one dbt command, streamed as ``NodeResult`` objects
  (unique_id, status, message, failures), never scraped from dbt's text output.
- ``docs_site``: the static dbt docs site published beside the analysts' database.
- ``selection``: what the core sync's build leaves to the inventory (its tagged models).
- ``check_descriptions``: what each dbt test checks, in words, for the asset check Dagster shows.
- ``history``: rebuilding ``grants`` and its history from provisioning's verified changes (after
  a provisioning run, or before a sync when one died before doing it).
"""

from langsmith_access.transform.check_descriptions import describe_test
from langsmith_access.transform.invocation import (
    DBT_FAILURES_METADATA,
    DbtInvocation,
    DbtRunError,
    NodeResult,
    build,
    build_selection,
    run_dbt,
)
from langsmith_access.transform.manifest import manifest_directory, prepare_manifest
from langsmith_access.transform.project import DBT_PROJECT_DIR, dbt_vars, project_hash, write_profile

__all__ = [
    "DBT_FAILURES_METADATA",
    "DBT_PROJECT_DIR",
    "DbtInvocation",
    "DbtRunError",
    "NodeResult",
    "build",
    "build_selection",
    "dbt_vars",
    "describe_test",
    "manifest_directory",
    "prepare_manifest",
    "project_hash",
    "run_dbt",
    "write_profile",
]
