"""The dbt project: where it is, what it is (a content hash), and the profile for one database.

The project ships inside the package (``langsmith_access/dbt_project/``), which may be
read-only once installed: nothing is ever written there. Every dbt run gets its own
``profiles.yml``, written into the directory the caller names (a database's dbt directory),
instead of a profile that reads the process environment: the file a run builds is an argument
of that run, never process-wide state.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from pathlib import Path

import duckdb
import yaml

from langsmith_access.store.sql import scalar, table_exists

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
PROFILE_NAME = "langsmith_access"  # dbt_project.yml's `profile:`
PROFILES_FILE = "profiles.yml"
# The packaged profile holds the adapter's settings (threads, DuckDB settings); the path of the
# file to build is filled in per run. It still serves a developer running dbt by hand.
PROFILE_TEMPLATE = DBT_PROJECT_DIR / PROFILES_FILE
# The project's dbt vars that come from settings, with the defaults its models declare.
DEFAULT_VARS = {"unused_days": 90}
# dbt's own output directories, never part of what the project is.
_BUILD_OUTPUT = {"target", "logs", "dbt_packages"}


def project_files() -> list[Path]:
    """Every file of the project directory (models, macros, snapshots, tests, configs, and the
    README beside them), dbt's build output left out."""
    files = []
    for path in DBT_PROJECT_DIR.rglob("*"):
        relative = path.relative_to(DBT_PROJECT_DIR)
        if relative.parts[0] in _BUILD_OUTPUT or "__pycache__" in relative.parts:
            continue
        if path.is_file():
            files.append(path)
    return sorted(files)


def project_hash() -> str:
    """A short hash of the project's files and of the dbt versions that read them: the key of
    the manifest cache and of the published docs site. Changes whenever dbt's view of the
    project can change (and with an edit of its README, which dbt does not read)."""
    digest = hashlib.sha256()
    for package in ("dbt-core", "dbt-duckdb"):
        digest.update(f"{package}=={importlib.metadata.version(package)}\n".encode())
    for path in project_files():
        digest.update(path.relative_to(DBT_PROJECT_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def record_project_hash(database_file: Path) -> None:
    """Write ``project_hash()`` into ``raw.dbt_project`` of ``database_file`` before a build: the
    project's table materialization marks each table it writes whole with it, and refreshes
    only some users' rows of a table this same project wrote (macros/refresh_scope.sql)."""
    with duckdb.connect(str(database_file)) as conn:
        write_project_hash(conn)


def write_project_hash(conn: duckdb.DuckDBPyConnection) -> None:
    """``record_project_hash`` on a connection the caller has open to the file anyway (each
    opening of a synced file costs ~20 ms of CPU reading its catalog)."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    conn.execute("CREATE OR REPLACE TABLE raw.dbt_project AS SELECT ? AS project_hash", [project_hash()])


def built_by_this_project(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether this version of the project made the file's last build (``record_project_hash``):
    not so, a file an older release built and this version has not synced yet."""
    return table_exists(conn, "raw", "dbt_project") and scalar(
        conn, "SELECT count(*) FROM raw.dbt_project WHERE project_hash = ?", [project_hash()]) > 0


def profile_text(database_file: Path | str) -> str:
    """The ``profiles.yml`` that makes dbt build ``database_file`` (``:memory:`` to only parse).

    The same file always gives the same text: dbt reuses its saved parse of the project only
    while the profile is unchanged (store/database.py, ``dbt_target_path``).
    """
    profiles = yaml.safe_load(PROFILE_TEMPLATE.read_text())
    profile = profiles[PROFILE_NAME]
    output = profile["outputs"][profile["target"]]
    output["path"] = str(database_file) if str(database_file) == ":memory:" else str(
        Path(database_file).absolute()
    )
    header = "# Written by langsmith-access for one database; rewritten when needed, never edit.\n"
    return header + yaml.safe_dump(profiles, sort_keys=False)


def write_profile(profiles_dir: Path, database_file: Path | str) -> Path:
    """Write ``profiles_dir/profiles.yml`` for ``database_file`` (only when its text changes,
    and by rename, so a dbt process never reads half a file). Returns ``profiles_dir``."""
    profiles_dir = Path(profiles_dir)
    profiles_dir.mkdir(parents=True, exist_ok=True)
    target = profiles_dir / PROFILES_FILE
    text = profile_text(database_file)
    if target.exists() and target.read_text() == text:
        return profiles_dir
    write_atomically(target, text.encode())
    return profiles_dir


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` by rename, so a reader (a dbt run, another process) never sees half of it."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def dbt_vars(*, unused_days: int) -> dict[str, int]:
    """The ``--vars`` of a build: the settings the models read (LANGSMITH_ACCESS_UNUSED_DAYS) that
    differ from the models' defaults. Empty for the defaults: dbt parses the project again
    whenever its vars change, so a build with the defaults passes none."""
    wanted = {"unused_days": unused_days}
    return {name: value for name, value in wanted.items() if DEFAULT_VARS.get(name) != value}
