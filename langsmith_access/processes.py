"""Which process runs something, said so that another process can tell whether it still does.

A run the command line executes in its own process (``runner.run_job``) carries ``this_process()``
in a tag. A process killed with SIGKILL (or by the OOM killer) leaves its run STARTED in a
persistent Dagster instance; the sensors read the tag to tell such a run from one still going
(``has_ended``), on the host, and in the pid namespace, that ran it (a container on the host's
network has the host's name but pids of its own). The process's start time guards against its
pid having been given to another process since.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def this_process() -> str:
    """``<host>:<pid namespace>:<pid>:<start>`` of the calling process (``<start>``: when it
    started, in clock ticks since boot, as /proc says; it and the namespace are empty where there
    is no /proc)."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{_started_at(os.getpid()) or ''}"


def has_ended(process: str) -> bool:
    """Whether the process ``this_process()`` described has ended: False when it runs, and when
    that cannot be told from here (another host's or pid namespace's process, a value this module
    did not write)."""
    try:
        host, namespace, pid_text, started = process.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or not namespace or namespace != _pid_namespace() or pid <= 0:
        return False
    if not is_running(pid):
        return True
    # The pid runs: the same process only if it started when the recorded one did.
    return bool(started) and _started_at(pid) not in (None, started)


def is_running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _started_at(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (the process's start, in clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count after its last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_namespace() -> str:
    """The calling process's pid namespace (its inode number, as /proc/self/ns/pid links it), or
    '' where there is no /proc."""
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        return ""
