"""dbt's manifest of the project, which ``@dbt_assets`` reads when the definitions load.

It is built (``dbt parse``) into a cache directory named after the project's content hash
(``<cache>/dbt-<hash>/manifest.json``), never next to the project: an installed package may be
read-only, and a hash-named directory is right by construction (a changed model or an upgraded
dbt is a new hash, so a new parse; building it removes the directories of versions no process
has loaded for a week, cache.py). Building is safe when several processes start at once (a
webserver and a daemon): each parses into a directory of its own and renames it into place;
the first rename wins.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from langsmith_access.transform.cache import mark_used, project_cache_directory, prune_unused_versions
from langsmith_access.transform.invocation import run_dbt

MANIFEST_FILE = "manifest.json"


def manifest_directory() -> Path:
    """Where the manifest of the project as it is now lives (built or not)."""
    return project_cache_directory()


def prepare_manifest(*, force: bool = False) -> Path:
    """The path of ``manifest.json`` for the project as it is now, parsing it first if it is
    not there yet (or always, with ``force``)."""
    directory = manifest_directory()
    manifest = directory / MANIFEST_FILE
    if not force:
        mark_used(directory)  # first: another version's pruning then keeps what this process loads
        if manifest.exists():
            return manifest
    staged = directory.with_name(f".{directory.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        # Parsing needs a profile but no database.
        run_dbt(["parse", "--quiet"], database_file=":memory:", dbt_dir=staged).raise_on_failure()
        if not (staged / MANIFEST_FILE).exists():
            raise RuntimeError(f"dbt parse wrote no {MANIFEST_FILE} into {staged}")
        _move_into_place(staged, directory, replace_existing=force)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    prune_unused_versions()
    return manifest


def _move_into_place(staged: Path, directory: Path, *, replace_existing: bool) -> None:
    try:
        os.rename(staged, directory)
        return
    except OSError:
        if not directory.exists():
            raise
    if not replace_existing and (directory / MANIFEST_FILE).exists():
        return  # another process built the same project first: same manifest
    # Forced, or the directory lost its manifest (a cleaner of old files): this parse replaces it.
    aside = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(directory, aside)
    os.rename(staged, directory)
    shutil.rmtree(aside, ignore_errors=True)
