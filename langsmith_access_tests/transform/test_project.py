"""The dbt project's identity (transform/project.py): the hash that keys the manifest cache and
the docs site, and the mark a build leaves in the file it built."""

from __future__ import annotations

import importlib.metadata
import shutil

import duckdb
import pytest

from langsmith_access.transform import project


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A copy of the packaged project, standing in for it (the package's own is never written)."""
    copy = tmp_path / "dbt_project"
    shutil.copytree(project.DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns(*project._BUILD_OUTPUT))
    monkeypatch.setattr(project, "DBT_PROJECT_DIR", copy)
    return copy


def test_the_project_hash_changes_with_what_dbt_reads_and_only_with_that(project_copy, monkeypatch):
    original = project.project_hash()
    # dbt's own output, and Python's caches, are not the project.
    for leftover in ("target/manifest.json", "logs/dbt.log", "dbt_packages/x/dbt_project.yml",
                     "macros/__pycache__/x.pyc"):
        (project_copy / leftover).parent.mkdir(parents=True, exist_ok=True)
        (project_copy / leftover).write_text("written by a run")
    assert project.project_hash() == original

    model = project.project_files()[-1]
    renamed = model.with_name(f"{model.stem}_renamed{model.suffix}")  # still the last file read
    model.rename(renamed)  # the same text under another name is another node
    assert project.project_hash() != original
    renamed.rename(model)
    assert project.project_hash() == original
    model.write_text(model.read_text() + "\n-- changed\n")
    changed = project.project_hash()
    assert changed != original

    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.0.1" if name == "dbt-duckdb" else real_version(name))
    assert project.project_hash() != changed  # another dbt reads the same files otherwise


def test_a_file_is_built_by_this_project_only_when_its_last_build_recorded_this_projects_hash(tmp_path):
    database = tmp_path / "access.duckdb"
    with duckdb.connect(str(database)) as conn:
        assert not project.built_by_this_project(conn)  # never built
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.dbt_project AS SELECT 'an older release' AS project_hash")
        assert not project.built_by_this_project(conn)
    project.record_project_hash(database)
    with duckdb.connect(str(database), read_only=True) as conn:
        assert project.built_by_this_project(conn)
        assert conn.execute("SELECT count(*) FROM raw.dbt_project").fetchone() == (1,)


def test_a_write_that_fails_leaves_no_half_written_file_beside_its_target(tmp_path):
    # write_atomically writes a temporary file first (profiles.yml, a parse seed): a write that
    # fails removes it, so nothing accumulates in a database's dbt directory.
    target = tmp_path / "profiles.yml"
    target.mkdir()  # a directory in the way: the rename fails
    with pytest.raises(OSError):
        project.write_atomically(target, b"profile")
    assert [path.name for path in tmp_path.iterdir()] == ["profiles.yml"]
