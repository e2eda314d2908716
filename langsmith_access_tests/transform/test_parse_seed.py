"""A new database's first dbt run starts from the parse kept for databases of its name
(transform/parse_seed.py) and gets exactly the parse a full one would give; anything that
does not fit costs a full parse, never the run."""

import json
import logging
import shutil

import dbt.include.duckdb
import dbt.include.global_project
import pytest
from dbt.contracts.files import FileHash

from langsmith_access.transform import build, parse_seed, run_dbt
from langsmith_access.transform.parse_seed import seeds_directory
from langsmith_access.transform.project import write_profile
from langsmith_access_tests.transform.test_dbt_invocation import _raw_database

NOT_FOUND = "saved manifest not found"


def _parse(directory, name="access.sync-scratch.duckdb", args=()):
    return run_dbt(["parse", *args], database_file=directory / name,
                   dbt_dir=directory / "dbt").raise_on_failure()


def _manifest(directory):
    """manifest.json without what differs from one parse to the next (times, ids) and with
    the run's own directory replaced, so any trace of a path would still differ."""
    manifest = json.loads((directory / "dbt" / "manifest.json").read_text())
    for key in ("generated_at", "invocation_id", "invocation_started_at", "run_started_at"):
        manifest["metadata"].pop(key, None)
    for section in manifest.values():
        if isinstance(section, dict):
            for entry in section.values():
                if isinstance(entry, dict):
                    entry.pop("created_at", None)
    text = json.dumps(manifest, sort_keys=True, indent=0)
    return text.replace(str(directory), "<run directory>")


@pytest.fixture(scope="module")
def kept_parse(tmp_path_factory):
    """A cache holding the parse of one full run, and that run's directory."""
    root = tmp_path_factory.mktemp("kept")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LANGSMITH_ACCESS_CACHE_DIR", str(root / "cache"))
        first = _parse(root / "first")
        (seed,) = seeds_directory().iterdir()
    assert any(NOT_FOUND in reason for reason in first.full_parse_reasons)
    return root / "cache", root / "first", seed.name


@pytest.fixture
def cache(kept_parse, tmp_path, monkeypatch):
    """A copy of the kept cache, for this test alone."""
    copy = tmp_path / "cache"
    shutil.copytree(kept_parse[0], copy)
    monkeypatch.setenv("LANGSMITH_ACCESS_CACHE_DIR", str(copy))
    return copy


def test_a_new_database_gets_the_parse_a_full_one_would_give(kept_parse, cache, tmp_path):
    _, first, _ = kept_parse
    seeded = _parse(tmp_path / "second")

    assert seeded.full_parse_reasons == []
    assert _manifest(tmp_path / "second") == _manifest(first)
    # And the seeded directory builds the whole project.
    database = tmp_path / "second" / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    with build(database, tmp_path / "second" / "dbt") as invocation:
        invocation.raise_on_failure()
    assert invocation.full_parse_reasons == []
    assert {"grants", "grant_history"} <= {result.name for result in invocation.results}


def test_a_database_of_another_name_parses_in_full(cache, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        other = _parse(tmp_path / "other", name="other.sync-scratch.duckdb")

    assert any(NOT_FOUND in reason for reason in other.full_parse_reasons)
    assert "saved parse" not in caplog.text  # no seed for its name is no reason to warn
    manifest = json.loads((tmp_path / "other" / "dbt" / "manifest.json").read_text())
    assert {node["database"] for node in manifest["nodes"].values()} == {"other"}
    assert len(list(seeds_directory().iterdir())) == 2  # its parse is kept under its own key


def test_a_run_with_its_own_vars_keeps_no_parse(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGSMITH_ACCESS_CACHE_DIR", str(tmp_path / "cache"))
    _parse(tmp_path / "run", args=["--vars", '{"unused_days": 30}'])

    assert not seeds_directory().exists() or list(seeds_directory().iterdir()) == []


def test_a_damaged_seed_costs_a_full_parse_and_is_replaced(kept_parse, cache, tmp_path, caplog):
    seed = seeds_directory() / kept_parse[2]
    seed.write_bytes(b"not a parse")

    with caplog.at_level(logging.WARNING):
        damaged = _parse(tmp_path / "second")

    assert damaged.full_parse_reasons  # parsed in full, and the run succeeded
    assert "could not start dbt from a saved parse" in caplog.text
    assert seed.read_bytes() != b"not a parse"  # the run kept its own parse instead
    assert _parse(tmp_path / "third").full_parse_reasons == []


def test_a_parse_kept_by_another_installation_is_not_used(cache, tmp_path, monkeypatch):
    """A parse records the directory of every file it read: a checkout and a virtualenv of the
    same version that share a cache each keep their own."""
    elsewhere = [*parse_seed.installation()[:-1], "/elsewhere/site-packages/dbt/include/duckdb"]
    monkeypatch.setattr(parse_seed, "installation", lambda: elsewhere)

    other = _parse(tmp_path / "other-installation")

    assert any(NOT_FOUND in reason for reason in other.full_parse_reasons)
    assert len(list(seeds_directory().iterdir())) == 2


def test_a_kept_parse_is_not_written_again_by_every_run(kept_parse, cache):
    # Every successful run offers its parse (megabytes): the first one kept for a key stays.
    _, first, name = kept_parse
    seed = seeds_directory() / name
    kept = seed.stat()
    assert not parse_seed.keep_parse(first / "dbt")
    assert (seed.stat().st_ino, seed.stat().st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)


def test_a_parse_dbt_keyed_otherwise_than_expected_is_not_kept(kept_parse, cache, monkeypatch, caplog):
    # A later dbt that hashes the profile otherwise: a seed given the hash computed here would
    # only ever be parsed again, so none is kept (and the run still succeeds).
    _, first, _ = kept_parse
    monkeypatch.setattr(parse_seed, "profile_state",
                        lambda dbt_dir: (FileHash.from_contents("another way of hashing"), "another-key"))
    with caplog.at_level(logging.WARNING):
        assert not parse_seed.keep_parse(first / "dbt")
    assert "not keyed as expected; not kept" in caplog.text
    assert not (seeds_directory() / "another-key.msgpack").exists()


def test_a_database_with_a_parse_of_its_own_keeps_it(cache, tmp_path):
    dbt_dir = write_profile(tmp_path / "dbt", tmp_path / "access.sync-scratch.duckdb")  # the kept parse's name
    own = dbt_dir / "partial_parse.msgpack"
    own.write_bytes(b"its own parse")
    assert not parse_seed.start_from_saved_parse(dbt_dir)
    assert own.read_bytes() == b"its own parse"


@pytest.mark.parametrize("moved", [(parse_seed, "DBT_PROJECT_DIR"), (dbt.include.global_project, "PACKAGE_PATH"),
                                   (dbt.include.duckdb, "PACKAGE_PATH")], ids=["project", "dbt", "adapter"])
def test_a_parse_is_kept_per_installation_of_the_project_and_of_dbt(tmp_path, monkeypatch, moved):
    """Each directory a parse names (the project's, dbt's global macros, the adapter's) is part of
    its key: a checkout run beside an installed copy, with the same dbt, parses for itself."""
    dbt_dir = write_profile(tmp_path / "dbt", tmp_path / "access.sync-scratch.duckdb")
    here = parse_seed.profile_state(dbt_dir)
    module, name = moved
    monkeypatch.setattr(module, name, f"/elsewhere{getattr(module, name)}")
    there = parse_seed.profile_state(dbt_dir)
    assert there[0] == here[0] and there[1] != here[1]  # dbt's own hash of the profile is the same
