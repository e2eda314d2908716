"""The dbt docs site, published beside the analysts' database: ``<db stem>_docs/index.html``.

Where it goes is the store's business (``AccessDatabase.docs_path``, swapped in by its
``publish``); this module makes it. One self-contained page (``dbt docs generate --static``:
manifest and catalog inlined) where analysts browse the tables, their columns and
descriptions, and the lineage, without the repository or a server. It depends only on the
project (and the columns of the built tables, which the project decides), so it is
regenerated only when the project's content hash changes, not on every sync: the hash it was
built from is written beside it.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from pathlib import Path

from langsmith_access.transform.invocation import run_dbt
from langsmith_access.transform.project import project_hash

INDEX_FILE = "index.html"
HASH_FILE = ".dbt-project-hash"
_DOCS_OUTPUT = ("static_index.html", "index.html", "catalog.json", "manifest.json", "run_results.json")


def is_current(docs_dir: Path) -> bool:
    """Whether ``docs_dir`` holds a site built from the project as it is now."""
    docs_dir = Path(docs_dir)
    try:
        built_from = (docs_dir / HASH_FILE).read_text().strip()
    except OSError:
        return False
    return built_from == project_hash() and (docs_dir / INDEX_FILE).exists()


def stage(database_file: Path, dbt_dir: Path, docs_dir: Path) -> Path:
    """Generate the site from ``database_file`` (just built: its catalog has every table) into
    a new hidden directory beside ``docs_dir``, to be swapped in by the publisher; returns it.

    Called right after a build that wrote ``manifest.json`` into ``dbt_dir``
    (``build(write_json=True)``), its nodes compiled: the site is made from it
    (``--no-compile``, ~0.3 s) rather than by compiling every node again (2.8 s at 200
    members, ~5 s at 20,000); dbt fails if there is no such manifest. Nodes the build did not
    run (the inventory's, in a core sync) show their source but no compiled SQL. Writer lease
    holder only.
    """
    docs_dir = Path(docs_dir)
    for leftover in docs_dir.parent.glob(f".{glob.escape(docs_dir.name)}.*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staged = docs_dir.with_name(f".{docs_dir.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        run_dbt(["docs", "generate", "--static", "--no-compile"],
                database_file=database_file, dbt_dir=dbt_dir).raise_on_failure()
        staged.mkdir(parents=True)
        shutil.copyfile(Path(dbt_dir) / "static_index.html", staged / INDEX_FILE)
        (staged / HASH_FILE).write_text(project_hash() + "\n")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    finally:
        # The site is all we keep; its inputs would only go stale in the dbt directory.
        for name in _DOCS_OUTPUT:
            (Path(dbt_dir) / name).unlink(missing_ok=True)
    return staged
