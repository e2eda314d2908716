"""Where langsmith-access keeps what it can rebuild at any time, per version of the dbt project:

- ``<cache>/dbt-<project hash>/``: the manifest Dagster reads (``manifest``);
- ``<cache>/dbt-<project hash>-parses/``: the saved parses a new database starts from
  (``parse_seed``). Not inside the manifest's directory: that one appears by renaming a
  finished parse into place, which a directory already there would block.

Named after the project's content hash (its files and the dbt versions that read them), so a
directory is right by construction: a changed model or an upgraded dbt is a new directory.
The old ones go when a new version builds its manifest (``prune_unused_versions``): those no
process has loaded for a week (an upgrade's previous version, still loaded by a code server
that has not restarted yet, stays).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from langsmith_access.settings import SettingsError, cache_directory
from langsmith_access.transform.project import project_hash

# A version's directories go once no process has loaded its manifest for this long.
UNUSED_VERSION_KEPT_SECONDS = 7 * 24 * 3600
# What a process killed mid-parse left staged (``.dbt-<hash>.<pid>-<id>``, ``.dbt-<hash>.old-<id>``):
# a parse takes seconds, so one a day old is nobody's.
LEFTOVER_KEPT_SECONDS = 24 * 3600
# Only names this module makes are ever removed: the cache may be a directory shared with others.
_VERSION_DIRECTORY = re.compile(r"dbt-(?P<hash>[0-9a-f]{16})(-[a-z]+)?")
_STAGED_DIRECTORY = re.compile(r"\.dbt-[0-9a-f]{16}(-[a-z]+)?\..+")


def cache_root() -> Path:
    """The cache directory (settings.cache_directory), or a per-user directory under the
    system's temporary directory when that one cannot be written (a daemon without a home).

    The fallback's name is predictable and the temporary directory everyone's: one that another
    user made first (or a symlink to theirs) is refused with ``SettingsError``, never used, since
    whoever may write it could replace the manifest and saved parses that decide what SQL dbt runs
    on this user's databases."""
    try:
        preferred = cache_directory()
    except RuntimeError as error:  # pathlib's "Could not determine home directory.": HOME unset, no passwd entry
        preferred, why = Path("~/.cache/langsmith-access"), str(error).rstrip(".")
    else:
        try:
            preferred.mkdir(parents=True, exist_ok=True)
            if os.access(preferred, os.W_OK | os.X_OK):
                return preferred
            why = "not writable by this user"
        except OSError as error:
            why = error.strerror or type(error).__name__
    fallback = Path(tempfile.gettempdir()) / f"langsmith-access-{os.getuid()}"
    try:
        fallback.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # an earlier run's (checked below: it must be this user's own)
    problem = _not_private(fallback)
    if problem:
        raise SettingsError(
            f"the cache directory {preferred} cannot be used ({why}), and its fallback {fallback} {problem}: "
            "another user could change the dbt manifest this process loads. Set LANGSMITH_ACCESS_CACHE_DIR "
            "to a directory this user owns and may write."
        )
    return fallback


def _not_private(directory: Path) -> str | None:
    """Why ``directory`` is not a directory of this user's that only this user may write, or None."""
    try:
        status = directory.lstat()
    except OSError as error:
        return f"cannot be read ({error.strerror or type(error).__name__})"
    if stat.S_ISLNK(status.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(status.st_mode):
        return "is not a directory"
    if status.st_uid != os.getuid():
        return f"belongs to another user (uid {status.st_uid})"
    if status.st_mode & 0o022:
        return f"may be written by other users (mode {stat.S_IMODE(status.st_mode):o})"
    return None


def project_cache_directory(suffix: str = "") -> Path:
    """The cache directory of the project as it is now (it may not exist yet): ``dbt-<hash>``,
    or ``dbt-<hash>-<suffix>``."""
    return cache_root() / f"dbt-{project_hash()}{'-' + suffix if suffix else ''}"


def mark_used(directory: Path) -> None:
    """Record that a process loads this version now (the directory's modification time), so
    ``prune_unused_versions`` keeps it."""
    try:
        os.utime(directory)
    except OSError:
        pass  # gone, or not ours to touch: it is rebuilt when missing


def prune_unused_versions() -> list[Path]:
    """Remove the cache directories of other versions of the project that no process has
    loaded for ``UNUSED_VERSION_KEPT_SECONDS``, and staged leftovers a day old. A version's
    ``-parses`` directory goes with its manifest's; one whose manifest directory is gone goes by
    its own age. Returns what was removed. Never fails: a directory that cannot go stays."""
    now = time.time()
    root = cache_root()
    current = project_hash()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    stale = []  # decided before anything goes: a -parses directory is judged by its manifest's age
    for entry in entries:
        version = _VERSION_DIRECTORY.fullmatch(entry.name)
        if version and version["hash"] != current:
            last_used = _modified(root / f"dbt-{version['hash']}") or _modified(entry)
            kept_seconds = UNUSED_VERSION_KEPT_SECONDS
        elif _STAGED_DIRECTORY.fullmatch(entry.name):
            last_used, kept_seconds = _modified(entry), LEFTOVER_KEPT_SECONDS
        else:
            continue
        if last_used is not None and now - last_used > kept_seconds and entry.is_dir() and not entry.is_symlink():
            stale.append(entry)
    removed = []
    for entry in stale:
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def _modified(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
