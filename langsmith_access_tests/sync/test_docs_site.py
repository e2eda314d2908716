"""The dbt docs site published beside the analysts' database (transform/docs_site.py): built by
the first sync, swapped in with the publish, left alone while the dbt project is unchanged, and
rebuilt when the site was made from another version of the project."""

import json

import duckdb
import pytest

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.schema import ensure_schema
from langsmith_access.transform import DbtRunError, build, docs_site, prepare_manifest, project_hash
from langsmith_access_tests.helpers import point_at, run_sync
from langsmith_access_tests.transform.test_dbt_invocation import _raw_database


def test_the_docs_site_follows_the_dbt_project_not_every_sync(tmp_path, monkeypatch):
    database = AccessDatabase(tmp_path / "access.duckdb")
    site = database.docs_path
    assert site == tmp_path / "access_docs"  # beside access_parquet/
    with SandboxServer(generate_org(seed=8, members=12, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database.path)

        first = run_sync()
        assert first.success, first.failure
        page = (site / "index.html").read_text()
        # One self-contained page naming the analysts' tables, their columns and lineage.
        for table in ("grants", "grant_history", "users", "report_privileged_access"):
            assert f"model.langsmith_access.{table}" in page
        assert "stg_langsmith__workspace_memberships" in page
        # Each model's compiled SQL too (from the manifest the build compiled): grants' ref to
        # its staging model, resolved to the relation.
        assert '\\"staging\\".\\"stg_langsmith__workspace_memberships\\"' in page
        assert (site / docs_site.HASH_FILE).read_text().strip() == project_hash()
        built = (site / "index.html").stat()

        second = run_sync()
        assert second.success, second.failure
        again = (site / "index.html").stat()
        assert (again.st_ino, again.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)

        # A site made from another version of the project (an upgrade changed the models).
        (site / docs_site.HASH_FILE).write_text("an-older-project\n")
        third = run_sync()
        assert third.success, third.failure
        assert (site / docs_site.HASH_FILE).read_text().strip() == project_hash()
        assert (site / "index.html").stat().st_ino != built.st_ino
    # Nothing staged is left behind, and dbt's docs inputs do not linger in its directory.
    assert not list(tmp_path.glob(".access_docs.*"))
    for leftover in ("static_index.html", "manifest.json", "run_results.json", "catalog.json"):
        assert not (database.dbt_target_path / leftover).exists(), leftover



def test_the_docs_site_describes_every_table_python_writes_for_analysts():
    # The site shows what the manifest declares: the tables Python writes in schema main (the
    # queue, its approvals and events, the outbox, sync_runs) are dbt sources, every column
    # described, or an analyst reading the site would not know they exist.
    manifest = json.loads(prepare_manifest().read_text())
    documented = {
        source["name"]: {name for name, column in source["columns"].items() if column.get("description")}
        for source in manifest["sources"].values() if source["schema"] == "main"
    }
    with duckdb.connect() as conn:
        ensure_schema(conn)
        columns = conn.execute(
            "SELECT table_name, list(column_name) FROM information_schema.columns "
            "WHERE table_schema = 'main' GROUP BY table_name").fetchall()
    undescribed = {table: sorted(set(names) - documented.get(table, set())) for table, names in columns}
    assert {table: names for table, names in undescribed.items() if names} == {}


def test_a_site_whose_page_was_removed_is_not_current(tmp_path):
    # Its hash file says the project as it is now, but the page itself is gone (removed by
    # hand, or a copy cut short): the next sync must make it again.
    (tmp_path / docs_site.HASH_FILE).write_text(project_hash() + "\n")
    assert not docs_site.is_current(tmp_path)
    (tmp_path / docs_site.INDEX_FILE).write_text("<html></html>")
    assert docs_site.is_current(tmp_path)


def test_a_staging_clears_what_an_earlier_one_left_and_a_failed_one_leaves_nothing(tmp_path):
    # A run killed while it staged the site leaves a hidden directory beside the site: the next
    # staging removes it, even one that fails itself (here: no manifest compiled to make a site from).
    site = tmp_path / "access_docs"
    leftover = tmp_path / ".access_docs.4242-0badcafe"
    leftover.mkdir()
    (leftover / docs_site.INDEX_FILE).write_text("half a site")
    other = tmp_path / ".other_docs.4242-0badcafe"  # another database's: not this site's to remove
    other.mkdir()

    with pytest.raises(DbtRunError):
        docs_site.stage(tmp_path / "access.duckdb", tmp_path / "access.dbt", site)

    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == [other.name]


def test_a_staging_that_fails_after_it_made_its_directory_removes_it(tmp_path, monkeypatch):
    database, dbt_dir = tmp_path / "access.duckdb", tmp_path / "access.dbt"
    _raw_database(database, duplicate_role=False)
    with build(database, dbt_dir, write_json=True) as built:  # the manifest the site is made from
        built.raise_on_failure()

    def unreadable_project() -> str:
        raise OSError("the project could not be read")

    monkeypatch.setattr(docs_site, "project_hash", unreadable_project)  # after the page was copied
    with pytest.raises(OSError, match="the project could not be read"):
        docs_site.stage(database, dbt_dir, tmp_path / "access_docs")

    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    assert not (dbt_dir / "static_index.html").exists()  # nor the inputs it was made from
