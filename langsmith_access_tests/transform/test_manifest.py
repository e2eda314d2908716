"""The manifest cache (transform/manifest.py): parsed once per version of the project into a
directory named after its hash, safely when several processes start at once. dbt's parse is
stood in for: what is tested is where its output lands and when it is made."""

from __future__ import annotations

import json
import os
import pwd
import stat
import tempfile
import time
from pathlib import Path

import pytest

from langsmith_access.settings import SettingsError
from langsmith_access.transform import cache as cache_module
from langsmith_access.transform import manifest, project_hash


class FakeParse:
    """Stands in for ``run_dbt(["parse", ...])``: writes a manifest naming its run into dbt_dir."""

    def __init__(self, before_returning=None, writes=True):
        self.runs: list[Path] = []
        self.before_returning = before_returning
        self.writes = writes

    def __call__(self, args, *, database_file, dbt_dir):
        assert args[0] == "parse" and database_file == ":memory:"
        dbt_dir = Path(dbt_dir)
        dbt_dir.mkdir(parents=True)
        self.runs.append(dbt_dir)
        if self.writes:
            (dbt_dir / manifest.MANIFEST_FILE).write_text(json.dumps({"run": len(self.runs)}))
        if self.before_returning:
            self.before_returning()
        return self

    def raise_on_failure(self):
        return self


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGSMITH_ACCESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_manifest_is_parsed_once_per_project_version_into_its_hash_directory(cache, monkeypatch):
    parse = FakeParse()
    monkeypatch.setattr(manifest, "run_dbt", parse)
    path = manifest.prepare_manifest()
    assert path == cache / f"dbt-{project_hash()}" / manifest.MANIFEST_FILE
    assert json.loads(path.read_text()) == {"run": 1}
    assert manifest.prepare_manifest() == path and len(parse.runs) == 1  # cached: not parsed again
    assert [entry.name for entry in cache.iterdir()] == [f"dbt-{project_hash()}"]  # nothing staged left
    assert manifest.prepare_manifest(force=True) == path and len(parse.runs) == 2
    assert json.loads(path.read_text()) == {"run": 2}
    assert [entry.name for entry in cache.iterdir()] == [f"dbt-{project_hash()}"]
    # A changed model or another dbt is another hash: parsed again, beside the old one.
    monkeypatch.setattr(cache_module, "project_hash", lambda: "another-version")
    assert manifest.prepare_manifest() == cache / "dbt-another-version" / manifest.MANIFEST_FILE
    assert len(parse.runs) == 3


def test_a_process_that_parsed_second_keeps_the_first_ones_manifest(cache, monkeypatch):
    directory = cache / f"dbt-{project_hash()}"

    def another_process_finishes_first():
        directory.mkdir(parents=True)
        (directory / manifest.MANIFEST_FILE).write_text('{"run": "the other process"}')

    monkeypatch.setattr(manifest, "run_dbt", FakeParse(before_returning=another_process_finishes_first))
    path = manifest.prepare_manifest()
    assert json.loads(path.read_text()) == {"run": "the other process"}
    assert [entry.name for entry in cache.iterdir()] == [directory.name]


def test_a_hash_directory_that_lost_its_manifest_gets_a_new_one(cache, monkeypatch):
    # A cleaner of old files (systemd-tmpfiles, for the fallback cache under /tmp) may remove the
    # manifest and leave its directory: the definitions would then load a manifest that is not there.
    directory = cache / f"dbt-{project_hash()}"
    directory.mkdir(parents=True)
    (directory / "partial_parse.msgpack").write_text("left by the cleaner")
    parse = FakeParse()
    monkeypatch.setattr(manifest, "run_dbt", parse)

    path = manifest.prepare_manifest()

    assert json.loads(path.read_text()) == {"run": 1}
    assert [entry.name for entry in cache.iterdir()] == [directory.name]  # nothing staged or set aside left
    assert manifest.prepare_manifest() == path and len(parse.runs) == 1


def test_a_parse_that_wrote_no_manifest_fails_saying_so_and_leaves_nothing(cache, monkeypatch):
    monkeypatch.setattr(manifest, "run_dbt", FakeParse(writes=False))
    with pytest.raises(RuntimeError, match="dbt parse wrote no manifest.json"):
        manifest.prepare_manifest()
    assert list(cache.iterdir()) == []


def test_a_cache_directory_that_cannot_be_made_gives_way_to_a_private_one_under_the_temporary_directory(
        tmp_path, monkeypatch):
    # A daemon whose configured cache cannot be made (here: a file stands where a directory
    # should be) still finds its manifest: in a directory of its user's, which no other user reads.
    in_the_way = tmp_path / "not-a-directory"
    in_the_way.write_text("")
    monkeypatch.setenv("LANGSMITH_ACCESS_CACHE_DIR", str(in_the_way / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    fallback = tmp_path / "tmp" / f"langsmith-access-{os.getuid()}"
    assert cache_module.cache_root() == fallback
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700
    assert manifest.manifest_directory() == fallback / f"dbt-{project_hash()}"


def test_an_account_without_a_home_directory_gets_the_private_one_under_the_temporary_directory(
        tmp_path, monkeypatch):
    # A uid with no passwd entry and no HOME (a container's arbitrary user, `env -i`): there is no
    # ~/.cache to try. pathlib raises RuntimeError there, which used to end every sync and
    # definitions load with a traceback instead of taking the fallback.
    for name in ("LANGSMITH_ACCESS_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_passwd_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_passwd_entry)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    fallback = tmp_path / "tmp" / f"langsmith-access-{os.getuid()}"
    assert cache_module.cache_root() == fallback
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700


def _made_by_another_user(fallback: Path, monkeypatch) -> None:
    # The directory stands there, private, but not ours: this process plays a user whose uid
    # is not the directory's owner (the fallback's name follows the uid).
    fallback.mkdir(mode=0o700, parents=True)
    owner = fallback.stat().st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)


def _writable_by_everyone(fallback: Path, monkeypatch) -> None:
    fallback.mkdir(parents=True)
    fallback.chmod(0o777)


def _a_symlink_to_another_directory(fallback: Path, monkeypatch) -> None:
    elsewhere = fallback.parent / "someone-elses"
    elsewhere.mkdir(mode=0o700, parents=True)
    fallback.symlink_to(elsewhere)


@pytest.mark.parametrize(("squat", "problem"), [
    (_made_by_another_user, "belongs to another user"),
    (_writable_by_everyone, "may be written by other users"),
    (_a_symlink_to_another_directory, "is a symbolic link"),
])
def test_a_fallback_cache_directory_someone_else_could_write_is_refused(tmp_path, monkeypatch, squat, problem):
    # The fallback's name under the shared temporary directory is predictable: another user can
    # make it first. Used, they could swap the manifest and the saved parses dbt builds from,
    # and so the SQL run on this user's databases. Refused, naming the variable that fixes it.
    in_the_way = tmp_path / "not-a-directory"
    in_the_way.write_text("")
    monkeypatch.setenv("LANGSMITH_ACCESS_CACHE_DIR", str(in_the_way / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    squat(tmp_path / "tmp" / f"langsmith-access-{os.getuid()}", monkeypatch)
    fallback = tmp_path / "tmp" / f"langsmith-access-{os.getuid()}"

    with pytest.raises(SettingsError) as refused:
        cache_module.cache_root()

    message = str(refused.value)
    assert f"its fallback {fallback} {problem}" in message
    assert str(in_the_way / "cache") in message and "LANGSMITH_ACCESS_CACHE_DIR" in message


DAY = 24 * 3600


def cache_entry(cache: Path, name: str, *, age_days: float) -> Path:
    """A directory of the cache as another version (or an interrupted parse) left it, last
    modified ``age_days`` ago."""
    entry = cache / name
    entry.mkdir(parents=True)
    (entry / "file").write_text(name)
    when = time.time() - age_days * DAY
    os.utime(entry, (when, when))
    return entry


def test_building_a_new_version_removes_the_versions_nobody_loaded_for_a_week(cache, monkeypatch):
    # Each upgrade is a new hash: without pruning, every version ever installed stays (~5 MB
    # each, far more for a developer whose every edit is a version).
    monkeypatch.setattr(manifest, "run_dbt", FakeParse())
    old, old_parses = "dbt-00000000000000aa", "dbt-00000000000000aa-parses"
    cache_entry(cache, old, age_days=8)
    cache_entry(cache, old_parses, age_days=1)  # goes with its manifest's, by the manifest's age
    cache_entry(cache, "dbt-00000000000000bb", age_days=6)  # an upgrade's previous version, still loaded
    cache_entry(cache, "dbt-00000000000000cc-parses", age_days=9)  # its manifest already gone
    cache_entry(cache, ".dbt-00000000000000dd.4242-1a2b3c4d", age_days=2)  # a parse killed midway
    cache_entry(cache, ".dbt-00000000000000dd.old-1a2b3c4d", age_days=2)
    cache_entry(cache, ".dbt-00000000000000ee.4343-1a2b3c4d", age_days=0.5)  # maybe parsing now
    # Not ours: the cache may be a directory others use too.
    cache_entry(cache, "dbt-notahash", age_days=30)
    cache_entry(cache, "other-tool", age_days=30)

    manifest.prepare_manifest()

    assert sorted(entry.name for entry in cache.iterdir()) == sorted([
        f"dbt-{project_hash()}", "dbt-00000000000000bb", ".dbt-00000000000000ee.4343-1a2b3c4d",
        "dbt-notahash", "other-tool"])


def test_loading_a_version_marks_it_used_so_a_newer_version_keeps_it(cache, monkeypatch):
    # A code server of the previous version that restarts keeps its version alive, however old
    # its build: what counts is when a process last loaded it.
    monkeypatch.setattr(manifest, "run_dbt", FakeParse())
    path = manifest.prepare_manifest()
    long_ago = time.time() - 30 * DAY
    os.utime(path.parent, (long_ago, long_ago))

    assert manifest.prepare_manifest() == path  # loaded again, not parsed
    assert time.time() - path.parent.stat().st_mtime < DAY

    monkeypatch.setattr(cache_module, "project_hash", lambda: "00000000000000ff")
    manifest.prepare_manifest()
    assert sorted(entry.name for entry in cache.iterdir()) == sorted([path.parent.name, "dbt-00000000000000ff"])
    os.utime(path.parent, (long_ago, long_ago))
    monkeypatch.setattr(cache_module, "project_hash", lambda: "00000000000000fe")
    manifest.prepare_manifest()  # the first version, unused for a month now, goes
    assert sorted(entry.name for entry in cache.iterdir()) == ["dbt-00000000000000fe", "dbt-00000000000000ff"]
