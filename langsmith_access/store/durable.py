"""Renames that survive a power cut, not only a killed process.

``os.replace`` is atomic for every process that looks afterwards, but the kernel may still hold
both the new file's data and the new directory entry in memory: after a power cut the name can
point to the old file, or to a new file whose blocks never reached the disk. Here the file's data
is synced before it takes the name, and the directory after, so the rename is on disk when this
returns. (kill -9 leaves the page cache intact and needs none of this; RELIABILITY.md.)
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_durably(source: Path, target: Path) -> None:
    """``os.replace(source, target)``, on disk when this returns."""
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    sync_directory(Path(target).parent)


def sync_directory(directory: Path) -> None:
    """Sync ``directory``'s entries (what a rename into it changed) to the disk."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
