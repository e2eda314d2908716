"""Where langsmith-access keeps what it can rebuild at any time, per version of the dbt project:

- ``<cache>/dbt-<project hash>/``: the manifest Dagster reads (``manifest``);
- ``<cache>/dbt-<project hash>-parses/``: the saved parses a new database starts from
  (``parse_seed``). Not inside the manifest's directory: that one appears by renaming a
  finished parse into place, which a directory already there would block.

Named after the project's content hash (its files and the dbt versions that read them), so a
directory is right by construction: a changed model or an upgraded dbt is a new directory, and
the old one is simply left behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from langsmith_access.settings import cache_directory
from langsmith_access.transform.project import project_hash


def cache_root() -> Path:
    """The cache directory (settings.cache_directory), or a per-user directory under the
    system's temporary directory when that one cannot be written (a daemon without a home)."""
    preferred = cache_directory()
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK | os.X_OK):
            return preferred
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"langsmith-access-{os.getuid()}"
    fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    return fallback


def project_cache_directory(suffix: str = "") -> Path:
    """The cache directory of the project as it is now (it may not exist yet): ``dbt-<hash>``,
    or ``dbt-<hash>-<suffix>``."""
    return cache_root() / f"dbt-{project_hash()}{'-' + suffix if suffix else ''}"
