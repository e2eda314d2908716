"""Expensive test fixtures built once per test session, whichever test process needs them first.

``make test`` runs two pytest-xdist workers, and a session- or package-scoped fixture is built
once per worker (a package-scoped one again each time a worker comes back to the package, as
``--dist loadfile`` interleaves files). A fixture that runs real syncs (tens of seconds each)
builds through ``built_once`` instead: the first worker builds into a folder every worker sees,
under a file lock, and pickles the result; the others wait on the lock and load it. The files it
built are shared: tests read them or copy them, never change them in place.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from filelock import FileLock

T = TypeVar("T")


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """``build(folder)``'s result, built once per session into ``folder`` and shared by every
    worker of the session."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is <session>/popen-gwN: their parent is the session's own.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / f"built-once-{name}"
    result = folder / "result.pickle"
    with FileLock(str(root / f"built-once-{name}.lock")):
        if result.exists():
            return pickle.loads(result.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker
        folder.mkdir()
        value = build(folder)
        result.write_bytes(pickle.dumps(value))
        return value
