"""A new database's first dbt run starts from the project's saved parse instead of parsing it all.

dbt saves its parse of the project (``partial_parse.msgpack``) in a run's target directory and
reuses it while nothing it was made from has changed: the project's files, dbt's version, the
vars, and the profile. For the profile, dbt hashes every connection value, the path of the
DuckDB file included (``ManifestLoader.build_manifest_state_check``). So a database dbt never
built paid a full parse, 3-6 s of CPU (most of it reading dbt's ~1,000 macros), although the
parse is the same for every file of the same name: the name becomes the database of every
relation, the database's directory appears nowhere in it.

So after a run, its parse is kept in the project's cache (``dbt-<hash>-parses/``), keyed by the
profile's values other than the path, and by where this installation's project and dbt's own
macros are (a parse names the directory of every file it read). Before a database's first
run, the parse kept for its key is copied into its target directory with the one thing dbt
ties to the path changed: the profile hash, computed as dbt computes it. dbt still checks
everything else (version, vars, every file's checksum) and parses again whatever differs. The
tests compare a seeded parse with a full one, node by node.

Only runs without ``--vars`` leave a parse behind: their vars are the ones most runs use.
Nothing here may fail a run: when a seed cannot be made or used, dbt parses in full, as it
would without it.
"""

from __future__ import annotations

import logging
import pprint
from pathlib import Path

import dbt.include.duckdb
import dbt.include.global_project
import yaml
from dbt.config.profile import Profile
from dbt.config.renderer import ProfileRenderer
from dbt.contracts.files import FileHash
from dbt.contracts.graph.manifest import Manifest
from dbt.parser.manifest import (
    PARTIAL_PARSE_FILE_NAME,
    extended_mashumaro_encoder,
    extended_mashumuro_decoder,
)

from langsmith_access.transform.cache import project_cache_directory
from langsmith_access.transform.project import (
    DBT_PROJECT_DIR,
    PROFILE_NAME,
    PROFILES_FILE,
    write_atomically,
)

logger = logging.getLogger(__name__)


def seeds_directory() -> Path:
    return project_cache_directory("parses")


def _seed_for(dbt_dir: Path) -> tuple[FileHash, Path]:
    """dbt's hash of the profile in ``dbt_dir``, and where the seed for that profile is kept."""
    profile_hash, key = profile_state(dbt_dir)
    return profile_hash, seeds_directory() / f"{key}.msgpack"


def start_from_saved_parse(dbt_dir: Path) -> bool:
    """Give ``dbt_dir`` (whose ``profiles.yml`` is written) the saved parse for its profile,
    when it has no parse of its own and one is kept. True when it got one."""
    own_parse = dbt_dir / PARTIAL_PARSE_FILE_NAME
    if own_parse.exists():
        return False
    profile_hash, seed = _seed_for(dbt_dir)
    if not seed.exists():
        return False
    try:
        manifest = _load(seed.read_bytes())
    except Exception:
        seed.unlink(missing_ok=True)  # damaged: the next successful run keeps a new one
        raise
    manifest.state_check.profile_hash = profile_hash
    write_atomically(own_parse, manifest.to_msgpack(extended_mashumaro_encoder))
    return True


def keep_parse(dbt_dir: Path) -> bool:
    """Keep ``dbt_dir``'s parse as the seed for its profile's key, unless one is kept already.
    True when it was kept."""
    own_parse = dbt_dir / PARTIAL_PARSE_FILE_NAME
    profile_hash, seed = _seed_for(dbt_dir)
    if seed.exists() or not own_parse.exists():
        return False
    data = own_parse.read_bytes()
    if _load(data).state_check.profile_hash != profile_hash:
        # dbt no longer keys its parse the way profile_state computes it: a seed would only
        # ever be parsed again.
        logger.warning("dbt's saved parse in %s is not keyed as expected; not kept", dbt_dir)
        return False
    seed.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(seed, data)
    return True


def profile_state(dbt_dir: Path) -> tuple[FileHash, str]:
    """For the profile in ``dbt_dir``: dbt's hash of it, and the seed key (the same values
    without the path: the database's name, schema, settings, ...; and this installation)."""
    raw = yaml.safe_load((dbt_dir / PROFILES_FILE).read_text())
    target, data = Profile.render_profile(raw[PROFILE_NAME], PROFILE_NAME, None, ProfileRenderer({}))
    data.pop("threads", None)  # as dbt does: not a connection value
    credentials = Profile._credentials_from_profile(data, PROFILE_NAME, target)
    connection = sorted(credentials.connection_info())
    profile_hash = FileHash.from_contents(pprint.pformat(connection))
    without_path = [item for item in connection if item[0] != "path"]
    key = FileHash.from_contents(pprint.pformat([*without_path, ("installation", installation())]))
    return profile_hash, key.checksum[:16]


def installation() -> list[str]:
    """Where the files dbt parses live. A parse records each file's directory, so two
    installations of the same version (a checkout and a virtualenv) sharing a cache keep
    parses of their own."""
    return [str(DBT_PROJECT_DIR), dbt.include.global_project.PACKAGE_PATH,
            dbt.include.duckdb.PACKAGE_PATH]


def _load(data: bytes) -> Manifest:
    return Manifest.from_msgpack(data, decoder=extended_mashumuro_decoder)
