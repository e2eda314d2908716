"""The DuckDB files and the rules for touching them.

Three files and three directories sit side by side (for ``data/langsmith_access.duckdb``):

- ``langsmith_access.duckdb``: the **analysts' copy**. Nothing in this project ever writes it in
  place: each writer publishes by copying the working file beside it and renaming the copy over
  it, so an analyst's open session keeps reading the old copy and never blocks us.
- ``langsmith_access.working.duckdb``: the **working file**, the source of truth between runs.
- ``langsmith_access.sync-scratch.duckdb``: a sync's **scratch** copy of the working file. A
  sync writes only there and replaces the working file with it when everything passed, so a
  failed sync leaves no trace. Syncs take turns, so every sync uses the same name: dbt then sees
  the same profile each time and reuses its parse of the project (partial parsing).
- ``langsmith_access.dbt/``: dbt's target directory (its artifacts, logs and saved parse),
  used under the writer lease. dbt always builds the scratch file (a sync's, or the copy a
  provisioning run refreshes the history in), so it sees the same profile every time.
- ``langsmith_access_parquet/``: the analysts' tables as Parquet, one file per table of schema
  ``main``, rewritten and swapped in by every publish (see ``store/export.py``).
- ``langsmith_access_docs/``: the dbt docs site (``index.html``), swapped in by a sync's
  publish when the dbt project changed (see ``transform/docs_site.py``).

Every writer (sync, provisioning, queueing a request) holds the **writer lease** while it writes:
an exclusive ``flock`` on ``langsmith_access.lock`` (other processes) plus a process-wide lock
(other threads). DuckDB itself allows one writing process, so the lease turns "the file is
locked" errors into orderly waiting, and makes a sync and a provisioning run take turns.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from langsmith_access.settings import Org, SettingsError, check_organization_id, mask_keys
from langsmith_access.store import export
from langsmith_access.store.durable import replace_durably, sync_directory
from langsmith_access.store.schema import ensure_schema
from langsmith_access.store.sql import quote_identifier, quote_literal
from langsmith_access.store.sync_runs import (
    NOTHING_DONE,
    OtherOrganizationError,
    check_not_elsewhere,
    check_organization,
    defer_failed_run,
)

logger = logging.getLogger(__name__)


class DatabaseBusyError(RuntimeError):
    """The writer lease or the file stayed taken for longer than we were willing to wait."""

    fix = (
        "another sync or provisioning run holds the database (let it finish), or another program "
        "has the file open for writing (the message names its PID: close that connection; analysts "
        "read the analysts' copy, read-only), then run again"
    )


# No run opens the analysts' copy to write (a publish replaces the file whole): a program that
# holds it so is an analyst's session opened without read_only.
ANALYSTS_COPY_HELD_FIX = (
    "another program has the analysts' copy open for writing (the message names its PID): close "
    "that connection and open the copy read-only (duckdb.connect(path, read_only=True), duckdb -readonly), "
    "then run again"
)


# errno values of a folder this user cannot write (EACCES, EPERM, EROFS).
UNWRITABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
# Giving this user the folder comes first: pointing the variable elsewhere starts an org that
# already has a database over with an empty one (its history and queue stay behind).
UNWRITABLE_FOLDER_FIX = (
    "the database's folder (or a file in it) is not writable by this user: run as the user that owns it, "
    "or give this user write access to the folder and its files (the working file, the lock and the "
    "Parquet copy sit beside the database); for a new database, LANGSMITH_ACCESS_DUCKDB may instead name "
    "a file in a folder this user may write"
)


def unwritable_fix(path: str | os.PathLike | None, database: Path | None) -> str:
    """The fix for a path this user may not write: the database's folder's (``database`` is
    its analysts' file), or, for any other path (an export's, or any when the database is not
    known), a folder that can be written."""
    if path is not None:
        target = Path(path).expanduser().absolute()
        folder = database.expanduser().absolute().parent if database is not None else None
        if folder is None or (target != folder and folder not in target.parents):
            shown = export.outside_staging(Path(path))
            return f"this user may not write {shown}: choose a path in a folder this user may write"
    return UNWRITABLE_FOLDER_FIX


# errno values of a file system with no room left for this user (ENOSPC, EDQUOT), and how an
# error says so (Python's OSError and DuckDB's IO Error alike).
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_DISK_WORDS = ("No space left on device", "Disk quota exceeded")


def full_disk_fix(path: str | os.PathLike | None, database: Path | None) -> str:
    """The fix for a write refused for want of room on ``path``'s file system: the database's
    folder's (``database`` is its analysts' file; also when the path is not known), or, for any
    other path (an export's, the dbt cache), that path's folder's."""
    folder = database.expanduser().absolute().parent if database is not None else None
    target = Path(path).expanduser().absolute() if path is not None else None
    full = "is full (or this user's disk quota is used up): free space there, then run again"
    if target is not None and (folder is None or (target != folder and folder not in target.parents)):
        return f"the file system holding {export.outside_staging(target.parent)} {full}"
    return (
        f"the file system holding {folder or 'the database'} {full} (a sync needs room beside the database "
        "for two more copies of it: its scratch copy and the analysts' copy it publishes). The analysts' copy "
        "is still the last one published, and the next run takes up what this one left: nothing needs "
        "repairing by hand"
    )


def says_no_room(text: str) -> bool:
    """Whether ``text`` (an error's) says a write found no room: a full disk or a used-up quota."""
    return any(words in text for words in FULL_DISK_WORDS)


def full_disk_fix_of(text: str, database: Path | None) -> str | None:
    """``full_disk_fix`` when ``text`` says a write found no room: an OSError as Python words it
    ("[Errno 28] No space left on device: '<path>'") or DuckDB's ('Could not write file "<path>":
    No space left on device', inside dbt's node messages too), for the first path it quotes."""
    if not says_no_room(text):
        return None
    path = re.search(r"""['"](/[^'"\\]+)""", text)
    return full_disk_fix(path[1] if path else None, database)


class DatabaseUnusableError(RuntimeError):
    """The file is there but DuckDB cannot use it (not a DuckDB database, a directory, no
    permission): waiting will not help, unlike a busy one."""

    fix = (
        "point LANGSMITH_ACCESS_DUCKDB at this tool's own database file (a path that does not exist "
        "yet is created by the first sync), or move the file that is in the way (a damaged "
        "*.working.duckdb may be moved aside: the next run rebuilds it from the analysts' copy, "
        "queue and history included)"
    )


class DatabaseNotPermittedError(DatabaseUnusableError):
    """The file is there and sound, but this user may not open it (a run as another account, root
    say, made it): moving it aside, which the fix of a damaged file says, would only hide it."""

    fix = (
        "this user may not open the database file the message names: run as the account that owns the "
        "database's folder and its files (ls -l shows it: a run as another user, root say, made them), or "
        "give this user read and write access to them (chown -R or chmod); the file itself is fine"
    )


# A damaged analysts' copy beside a working file (this tool's database, not a file pointed at by
# mistake): no run reads it, and the next publish replaces it whole.
DAMAGED_ANALYSTS_COPY_FIX = (
    "the analysts' copy is damaged, but the working file beside it holds everything it showed: "
    "`langsmith-access provision` publishes it again at once (with nothing queued it applies nothing), "
    "as does the next sync; or move the damaged file aside first, to keep it"
)


class LeftoverWalError(DatabaseUnusableError):
    """DuckDB's write-ahead log beside a file belongs to a file that one replaced, and DuckDB
    refuses to open the new file with another file's log. Beside the analysts' copy: a session
    wrote to it (only publishing should), and the next publish removes the log. Beside the working
    file (put back by hand): nothing removes it (``analysts_copy=False``)."""

    # Where only the class is known (a run's failure, as Dagster records it): the instance's own
    # ``fix`` names the file.
    fix = (
        "move the DuckDB log (the .wal file the error names) aside: it belongs to the file this one "
        "replaced (a session that wrote to the analysts' copy, which is replaced at every publish, "
        "left it: close that session first), then run again"
    )

    def __init__(self, path: Path, detail: str, *, analysts_copy: bool = True):
        wal = wal_path(path)
        self.detail = detail
        if analysts_copy:
            self.fix = (
                f"close the session that wrote to {path.name} (analysts open it read-only: it is replaced "
                f"at every publish, and what is written there is lost); the next sync or provisioning run "
                f"removes {wal.name}, or move {wal} aside now"
            )
        else:  # a working file put back by hand (a restore) beside the log of the file it replaced
            self.fix = (
                f"move {wal} aside: it belongs to the file {path.name} replaced, and no run removes it "
                "(the next run then opens the file as it is)"
            )
        super().__init__(f"could not open {path}: {wal.name} was written by a session on the file this one "
                         f"replaced ({detail})")


def wal_path(path: Path) -> Path:
    """DuckDB's write-ahead log of the database file ``path``."""
    return path.with_name(path.name + ".wal")


class HeldInThisProcessError(duckdb.ConnectionException):
    """A read-only open refused because this process (a notebook) holds a connection to the file
    that can write. Neither busy nor damaged: waiting or moving the file aside would not help;
    closing that connection does. A ``duckdb.ConnectionException``, as DuckDB raised it before."""


class PublishFailedError(RuntimeError):
    """A command committed its change to the working file, then could not publish the analysts'
    copy (a full disk). The change stands and ``unfinished_publish_path`` says a publish is due,
    which the next writer does: said so, not as a command that did nothing (run again, it would
    only find its change there). ``result``: what the command returns when it publishes; ``fix``:
    for a full disk, where to free space; the publish's own error is ``__cause__``."""

    def __init__(self, done: str, result: object, error: Exception, database: AccessDatabase) -> None:
        if isinstance(error, OSError) and error.strerror:  # not "[Errno 28] ...": what and where
            # A copy that ran out of room names its source first (shutil: filename, then the
            # destination as filename2): the file that could not be written is the destination.
            written = error.filename2 if error.errno in FULL_DISK_ERRNOS and error.filename2 else error.filename
            reason = f"{written}: {error.strerror}" if written else error.strerror
        else:
            reason = str(error)
        super().__init__(
            f"{done}, but publishing it to the analysts' copy {database.path.name} failed ({reason}). Nothing "
            "was lost and nothing needs doing again: it is in the working file, and the next writer (a request, "
            "a decision, a sync, or a provisioning run, which the provisioning sensor launches for it) publishes "
            "it; `langsmith-access requests` shows it from then on")
        self.result = result
        # Not ``full_disk_fix``: its "then run again" would contradict "nothing needs doing again".
        self.fix = (f"free space on the file system holding {database.path.parent} (a publish writes a copy of "
                    "the database beside it)") if says_no_room(str(error)) else None


class DatabaseNotReadyError(RuntimeError):
    """The analysts' database does not exist yet (no sync has published it)."""


# Process-wide state per lock file: other threads of this process wait on the RLock; the flock
# (taken once, by the first holder) keeps other processes out. Reentrant within one thread.
_process_leases: dict[str, _ProcessLease] = {}
_process_leases_guard = threading.Lock()


@dataclass
class _ProcessLease:
    # A plain Lock, not an RLock: Dagster may release a run's lease from another thread than
    # the one that took it. Reentrancy is tracked by ``owner`` instead.
    lock: threading.Lock
    owner: int | None = None
    depth: int = 0
    fd: int | None = None


@dataclass(frozen=True)
class RunIfKilled:
    """The sync or inventory run that holds the writer lease, as its lock record keeps it: what
    the next writer needs to leave the failed row of a run whose process was killed."""

    sync_id: str
    job: str
    started_at: datetime
    organization_id: str | None

    def to_json(self) -> dict:
        return {"sync_id": self.sync_id, "job": self.job, "started_at": self.started_at.isoformat(),
                "organization_id": self.organization_id}

    @classmethod
    def from_json(cls, text: dict) -> RunIfKilled:
        organization_id = text.get("organization_id")
        return cls(sync_id=str(text["sync_id"]), job=str(text["job"]),
                   started_at=datetime.fromisoformat(text["started_at"]),
                   organization_id=str(organization_id) if organization_id is not None else None)


@dataclass(frozen=True)
class AccessDatabase:
    """Paths and connections for one analysts' database path (``LANGSMITH_ACCESS_DUCKDB``).
    ``organization_id``: the LangSmith org the caller writes for; given, ``ensure_working``
    refuses a database that holds another org's data (``sync_runs.check_organization``)."""

    path: Path
    organization_id: str | None = None
    # An org of an orgs file: the directory of every org's folder (``<root>/<slug>/``). Creating
    # the database is refused while another folder there holds the same org's data.
    orgs_root: Path | None = None

    @classmethod
    def of_org(cls, org: Org) -> AccessDatabase:
        """``org``'s own database: its file, the organization it must hold and, with an orgs
        file, the folder of every org's (where no other folder may hold the same org)."""
        return cls(org.duckdb_path, org.settings.organization_id, org.orgs_root)

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path).expanduser().absolute())

    @property
    def working_path(self) -> Path:
        return self.path.with_name(f"{self._stem}.working.duckdb")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f"{self._stem}.lock")

    @property
    def scratch_path(self) -> Path:
        return self.path.with_name(f"{self._stem}.sync-scratch.duckdb")

    @property
    def deferred_runs_path(self) -> Path:
        """Where a run that could not take the writer lease leaves its ``sync_runs`` row
        (``store.sync_runs.defer_failed_run``) for the next run to record."""
        return self.path.with_name(f"{self._stem}.unrecorded-runs")

    @property
    def unrecorded_deliveries_path(self) -> Path:
        """Where a notification delivery that could not take the writer lease to record what the
        receiver accepted leaves those ids (``governance.notifications``) for the next claim."""
        return self.path.with_name(f"{self._stem}.unrecorded-deliveries")

    @property
    def unfinished_publish_path(self) -> Path:
        """Present while the analysts' copy lags what a writer committed: while a publish swaps its
        files in (``swap_in``), and from a command's (or a provisioning run's) first write to its
        publish (``publish_pending``). Left by one that died or failed, for the next writer to publish
        again (``ensure_working``) and for the queue sensor to launch one."""
        return self.path.with_name(f"{self._stem}.publish-unfinished")

    def publish_pending(self) -> None:
        """Say, before a command's first write, that it publishes when it ends (a request, a
        decision, a review's revokes, a provisioning run). Killed between its commit and its
        publish, or its publish failing (a full disk), it leaves the analysts' copy (which
        ``requests`` and the queue sensor read) without what it committed:
        ``unfinished_publish_path`` stays, and the next writer publishes. Caller holds the lease."""
        self.unfinished_publish_path.touch()

    def publish_committed(self, done: str, result: object) -> None:
        """``publish`` at the end of a command that committed (``publish_pending``): a publish that
        fails raises ``PublishFailedError``, which says that ``done`` stands, with ``result``."""
        try:
            self.publish()
        except Exception as error:
            raise PublishFailedError(done, result, error, self) from error

    def owns(self, path: Path | str) -> bool:
        """Whether ``path`` is one of this database's own files (the analysts' copy, the
        working file, a run's scratch copy, their DuckDB logs, the lock, the deferred runs and
        deliveries, the unfinished-publish marker), which nothing else may write."""
        resolved = Path(path).expanduser().resolve()
        databases = (self.path, self.working_path, self.scratch_path)
        # DuckDB replays a file's log (``<file>.wal``) when it opens the file: a sheet written
        # there would break the next open as surely as one written over the file.
        logs = tuple(database.with_name(database.name + ".wal") for database in databases)
        return resolved in {own.resolve() for own in
                            (*databases, *logs, self.lock_path, self.deferred_runs_path,
                             self.unrecorded_deliveries_path, self.unfinished_publish_path)}

    @property
    def dbt_target_path(self) -> Path:
        """dbt's target directory. Stable, so dbt reuses its saved parse of the project
        (``partial_parse.msgpack``) from run to run; dbt parses again when the profile (the
        path of the file it builds) changes, hence always the scratch file. Lease holder only."""
        return self.path.with_name(f"{self._stem}.dbt")

    @property
    def _stem(self) -> str:
        name = self.path.name
        return name[: -len(".duckdb")] if name.endswith(".duckdb") else name

    # ------------------------------------------------------------- the lease

    @contextlib.contextmanager
    def writer_lease(self, purpose: str, *, timeout_seconds: float = 600.0,
                     run_if_killed: RunIfKilled | None = None) -> Iterator[None]:
        """Hold the exclusive right to write the working file (and to publish).

        Waits up to ``timeout_seconds``; raises ``DatabaseBusyError`` naming the holder after.
        ``purpose`` goes into the lock file, logs and other processes' messages: anything in it
        that looks like a key (a request id someone pasted a key into) is cut to its prefix.
        ``run_if_killed``: the sync or inventory run this holder is; should its process end
        holding the lease, the next writer leaves that run's failed row for the next sync to record.
        """
        purpose = mask_keys(purpose)
        # Before the lock file (and the org's folder) is made: a renamed slug's refusal leaves
        # no new folder behind, in the way of its fix's move of the old one.
        self._refuse_a_second_database()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.lock_path)
        with _process_leases_guard:
            state = _process_leases.setdefault(key, _ProcessLease(threading.Lock()))
        me = threading.get_ident()
        if state.owner == me:  # reentrant: this thread already holds the lease
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        deadline = time.monotonic() + timeout_seconds
        if not state.lock.acquire(timeout=max(timeout_seconds, 0.001)):
            raise DatabaseBusyError(self._busy_message(purpose, timeout_seconds))
        try:
            state.fd = self._flock(purpose, deadline, timeout_seconds, run_if_killed)
        except BaseException:
            state.lock.release()
            raise
        state.owner, state.depth = me, 1
        try:
            yield
        finally:
            state.owner, state.depth = None, 0
            # Let go with an empty record: a record the next writer finds was left by a holder
            # that never got here (killed or crashed), which that writer then says (``_flock``).
            with contextlib.suppress(OSError):
                os.ftruncate(state.fd, 0)
            fcntl.flock(state.fd, fcntl.LOCK_UN)
            os.close(state.fd)
            state.fd = None
            state.lock.release()

    def is_busy(self) -> bool:
        """True when some writer holds the lease right now (a snapshot; may change at once)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def _flock(self, purpose: str, deadline: float, timeout_seconds: float,
               run_if_killed: RunIfKilled | None) -> int:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            said_waiting = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DatabaseBusyError(self._busy_message(purpose, timeout_seconds)) from None
                    if not said_waiting:  # a wait of minutes must not look like a hang
                        logger.warning("waiting to %s: %s (up to %g s)", purpose,
                                       self._holder_text(), timeout_seconds)
                        said_waiting = True
                    time.sleep(0.05)
            self._say_if_the_last_holder_died(fd)
            holder = {
                "pid": os.getpid(),
                "purpose": purpose,
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
                "emptied_on_release": True,  # a record the next holder finds: this one died holding it
            }
            if run_if_killed is not None:
                holder["run_if_killed"] = run_if_killed.to_json()
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(holder).encode(), 0)
            except OSError as error:  # (a full disk) an error of a write names no file: name the lock
                raise OSError(error.errno, error.strerror, str(self.lock_path)) from None
        except BaseException:
            # Closing lets go of the flock too: a lease whose holder record could not be written
            # (a full disk), or a wait cut short, must not keep this process's other writers out.
            os.close(fd)
            raise
        return fd

    def _say_if_the_last_holder_died(self, fd: int) -> None:
        """Called with the flock just taken. Every holder empties its record as it lets go, so a
        record still there is one of a holder that ended without letting go (SIGKILL, a crash, a
        power cut): the operator is told which, and that nothing needs doing by hand."""
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            # Releases before this one left their record at every release, and a holder that could
            # not write its record whole never held the lease: only a whole record that says it is
            # emptied on release speaks of a death.
            if not (isinstance(holder, dict) and holder.get("emptied_on_release")):
                return
            who = f"{holder['purpose']} (pid {holder['pid']}, since {holder['since']})"
        except (OSError, ValueError, KeyError):
            return
        logger.warning(
            "%s ended without letting go of the writer lease of %s (killed or crashed): taking it over. "
            "Nothing to do by hand: a killed sync's scratch copy is discarded by the next sync, requests a "
            "killed provisioning run left in progress are settled by the next one, an unfinished publish "
            "is done again by the next writer", who, self.working_path.name)
        self._leave_the_killed_runs_row(holder)

    def _leave_the_killed_runs_row(self, holder: dict) -> None:
        """A sync or inventory killed holding the lease wrote no ``sync_runs`` row and sent no
        ``sync.failed``: its row is left (``defer_failed_run``) for the next sync or inventory
        to record and announce, as for a run that could not take the lease. Never raises."""
        try:
            run = RunIfKilled.from_json(holder["run_if_killed"])
            found = datetime.now(UTC)
            defer_failed_run(
                self.deferred_runs_path, sync_id=run.sync_id, job=run.job, started_at=run.started_at,
                finished_at=found, organization_id=run.organization_id,
                failure=(f"its process (pid {holder['pid']}) ended without finishing the run (killed: SIGKILL, "
                         f"the OOM killer, a crash or a power cut); found by the next writer at "
                         f"{found.isoformat(timespec='seconds')}"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return

    def _holder_text(self) -> str:
        """Who holds the writer lease, as its holder wrote it: ``<purpose> (pid N, since T)``."""
        try:
            holder = json.loads(self.lock_path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        who = (
            f"{holder.get('purpose')} (pid {holder.get('pid')}, since {holder.get('since')})"
            if holder
            else "another writer"
        )
        return f"{who} is writing {self.working_path.name}"

    def _busy_message(self, purpose: str, timeout_seconds: float) -> str:
        return (
            f"could not {purpose}: {self._holder_text()} and did not finish within "
            f"{timeout_seconds:g} s. Try again when it is done."
        )

    # ------------------------------------------------------------ connections

    @contextlib.contextmanager
    def connect(
        self,
        path: Path | None = None,
        *,
        read_only: bool = False,
        timeout_seconds: float = 60.0,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection (working file by default), retrying while the file is locked."""
        target = Path(path) if path is not None else self.working_path
        if read_only and not target.exists():
            raise DatabaseNotReadyError(
                f"{target} does not exist yet: run `langsmith-access sync` first."
            )
        try:
            connection = _open_with_retry(target, read_only, timeout_seconds)
        except LeftoverWalError as error:
            if target == self.path:
                raise
            raise LeftoverWalError(target, error.detail, analysts_copy=False) from None
        except DatabaseBusyError as error:
            if target == self.path:
                error.fix = ANALYSTS_COPY_HELD_FIX
            raise
        except DatabaseUnusableError as error:
            if target == self.path and self.working_path.is_file():
                error.fix = DAMAGED_ANALYSTS_COPY_FIX
            raise
        try:
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def read_published(self, *, timeout_seconds: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """Read the analysts' copy, as an analyst would."""
        with self.connect(self.path, read_only=True, timeout_seconds=timeout_seconds) as conn:
            yield conn

    # -------------------------------------------------------------- publishing

    @property
    def parquet_path(self) -> Path:
        """The Parquet copy of the analysts' tables, refreshed by every publish."""
        return export.parquet_directory(self.path)

    @property
    def docs_path(self) -> Path:
        """The dbt docs site (``index.html``), replaced by a sync when the models changed."""
        return export.docs_directory(self.path)

    @property
    def logs_path(self) -> Path:
        """Where the CLI writes a failed run's events and stack traces (``logs/`` beside the
        analysts' file)."""
        return self.path.parent / "logs"

    @property
    def published_file(self) -> Path:
        """The file a publish replaces: the analysts' copy, or the file it points to when it is
        a symlink to one (an operator who put it on a share keeps the link: the copy is written
        beside that file, on its file system, and renamed over it). A link to no file yet (made
        before the first sync) is followed too: that file is created, the link kept."""
        return export.followed_link(self.path, Path.is_file)

    def publish(self, *, docs_site: Path | None = None) -> None:
        """Make the analysts' copy equal the working file, atomically. Caller holds the lease.

        The Parquet copy (``parquet_path``, one file per table of schema ``main``) is written
        from the same copy before it is published, then swapped in right after it: both or
        neither change. ``docs_site``: a staged docs site directory, swapped in last.
        """
        self.swap_in(self.stage_publish(self.working_path), docs_site=docs_site)

    def stage_publish(self, source: Path) -> StagedPublish:
        """The analysts' copy of ``source`` and its Parquet copy, written aside (what can fail
        for want of disk space happens here, before anything is replaced)."""
        self._checkpoint(source)
        # A publish killed while staging left its copy (as large as the database) under its own
        # PID, which no later process would reuse: every publish holds the lease, so it is dead.
        # (Names are escaped in every pattern here: "access [eu].duckdb" is a name, not a class.)
        published = self.published_file
        for stale in published.parent.glob(f".{glob.escape(published.name)}.publish-*.tmp"):
            stale.unlink(missing_ok=True)
        staged = StagedPublish(published.with_name(f".{published.name}.publish-{os.getpid()}.tmp"))
        try:
            shutil.copyfile(source, staged.copy)
            with open(staged.copy, "rb") as handle:
                os.fsync(handle.fileno())
            staged.parquet = export.stage_parquet_directory(staged.copy, self.parquet_path)
        except BaseException:
            staged.discard()
            raise
        return staged

    def swap_in(self, staged: StagedPublish, *, docs_site: Path | None = None) -> None:
        """Publish what ``stage_publish`` wrote: renames only."""
        published = self.published_file
        try:
            # A log beside the analysts' copy is a session's that wrote to it (only publishing
            # should): it belongs to the file replaced here, and would make DuckDB refuse the new one.
            wal_path(published).unlink(missing_ok=True)
            export.keep_permissions(published, staged.copy)
            # The analysts' file and its Parquet copy are two renames: a publish killed (or failing)
            # between them leaves this behind, and the next writer publishes again (ensure_working).
            due_before = self.unfinished_publish_path.exists()  # a command's commits (publish_pending)
            self.unfinished_publish_path.touch()
            try:
                os.replace(staged.copy, published)  # (stage_publish synced the copy)
            except BaseException:
                if not due_before:  # nothing was replaced, and nothing committed waits: nothing to finish
                    self.unfinished_publish_path.unlink(missing_ok=True)
                raise
            wal_path(published).unlink(missing_ok=True)
            sync_directory(published.parent)
            if staged.parquet is not None:
                export.replace_directory(staged.parquet, self.parquet_path)
            if docs_site is not None:
                export.replace_directory(docs_site, self.docs_path)
            self.unfinished_publish_path.unlink(missing_ok=True)
        finally:
            staged.discard()

    def ensure_working(self, *, open_timeout_seconds: float = 60.0) -> None:
        """Create the working file (with the Python-owned tables) if needed, and refuse it if it
        holds another org's data than ``organization_id``'s. Caller holds the lease.
        ``open_timeout_seconds``: how long to wait for a file another program holds open.

        If only the analysts' copy exists (the working file was removed), start again from it.
        (Another folder holding this org's data was refused when the lease was taken.)
        """
        copied = not self.working_path.exists() and self.path.exists()
        if copied:
            self._set_aside_orphaned_log()
            # Copied aside and renamed: a copy cut short (a full disk, a kill -9) would pass for a
            # damaged working file to every later run, which would refuse it rather than copy
            # again. A killed copy's leftover is removed here (the caller holds the lease).
            for stale in self.path.parent.glob(f".{glob.escape(self.working_path.name)}.copy-*.tmp"):
                stale.unlink(missing_ok=True)
            copy = self.working_path.with_name(f".{self.working_path.name}.copy-{os.getpid()}.tmp")
            try:
                shutil.copyfile(self.path, copy)
                replace_durably(copy, self.working_path)
            except BaseException:
                copy.unlink(missing_ok=True)
                raise
        try:
            with self.connect(timeout_seconds=open_timeout_seconds) as conn:
                ensure_schema(conn)
                if self.organization_id:
                    check_organization(conn, self.path, self.organization_id,
                                       Path(self.orgs_root) if self.orgs_root else None)
        except DatabaseUnusableError as error:
            if not copied:
                raise
            # A copy of a file that is no database: leave only what was there, and name that file
            # (the copy the error names is gone).
            self.working_path.unlink(missing_ok=True)
            if type(error) is not DatabaseUnusableError:
                raise
            raise DatabaseUnusableError(str(error).replace(str(self.working_path), str(self.path))) from None
        if self.unfinished_publish_path.exists():
            # A publish died (or failed) after replacing the analysts' file, before its Parquet copy,
            # or a command died between its commit and its publish: analysts (and the queue sensor)
            # would not see it until some run published again (a failing sync never does).
            # Publishing the working file now completes it.
            logger.warning("the last publish of %s did not finish: publishing it again", self.path.name)
            try:
                self.publish()
            except Exception as error:  # this writer's own work goes on; the next writer tries again
                logger.warning("could not finish the last publish of %s (tried again by the next writer): %s: %s",
                               self.path.name, type(error).__name__, error)

    def _refuse_a_second_database(self) -> None:
        """For an org of an orgs file whose database does not exist yet: ``check_not_elsewhere``
        (another folder holding the same org's data refuses its creation)."""
        if self.organization_id and self.orgs_root and not self.working_path.exists() and not self.path.exists():
            check_not_elsewhere(self.path, Path(self.orgs_root), self.organization_id)

    def _set_aside_orphaned_log(self) -> None:
        """The log of a working file that is gone (moved aside after a writer died): DuckDB would
        replay it onto the copy of the analysts' database that replaces that file, writes of
        another file's state applied to this one. Kept beside it, under another name, not lost."""
        wal = wal_path(self.working_path)
        if not wal.exists():
            return
        aside = wal.with_name(f"{wal.name}.orphaned-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        os.replace(wal, aside)
        logger.warning("%s had no database file beside it: set aside as %s, not replayed onto the working "
                       "file made from %s", wal.name, aside.name, self.path.name)

    def begin_scratch(self) -> Path:
        """Copy the working file to the scratch file (for a sync, or for a history refresh after
        provisioning). Caller holds the lease."""
        # Leftovers of a sync that died (older versions named the file after the run), among
        # them the directory DuckDB spills dbt's build into (`<scratch file>.tmp`, removed by
        # DuckDB itself when the build ends normally).
        for stale in self.path.parent.glob(f"{glob.escape(self._stem)}.sync-*.duckdb*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        # Parses made ahead by versions before 8a05c1a (`<stem>.dbt-ahead-*`), left by a run
        # that died: nothing reads them any more.
        for stale in self.path.parent.glob(f"{glob.escape(self.dbt_target_path.name)}-ahead-*"):
            shutil.rmtree(stale, ignore_errors=True)
        scratch = self.scratch_path
        self._checkpoint(self.working_path)
        try:
            shutil.copyfile(self.working_path, scratch)
        except BaseException:
            # A copy cut short (a full disk) would hold the space a failed run is left without.
            scratch.unlink(missing_ok=True)
            raise
        return scratch

    def _checkpoint(self, path: Path) -> None:
        """Fold the write-ahead log into the file before it is copied. Without a WAL beside
        it the file already holds everything committed (DuckDB checkpoints when the last
        connection closes), and opening a large file only to find that out costs a fraction of
        a second."""
        wal = wal_path(path)
        if wal.exists() and wal.stat().st_size > 0:
            with self.connect(path) as conn:
                conn.execute("CHECKPOINT")

    def commit_scratch(self, scratch: Path) -> None:
        """The run passed: its scratch file becomes the working file. Caller holds the lease."""
        self._checkpoint(scratch)  # (stage_publish has usually done it already)
        wal = scratch.with_name(scratch.name + ".wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise RuntimeError(f"{scratch.name} still has a write-ahead log after CHECKPOINT")
        wal.unlink(missing_ok=True)
        replace_durably(scratch, self.working_path)

    def discard_scratch(self, scratch: Path) -> None:
        scratch.unlink(missing_ok=True)
        scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)


@dataclass
class StagedPublish:
    """An analysts' copy (``copy``) and its Parquet directory, written aside by
    ``AccessDatabase.stage_publish`` and not published yet."""

    copy: Path
    parquet: Path | None = None

    def discard(self) -> None:
        """Remove what is left of it (nothing, once swapped in)."""
        self.copy.unlink(missing_ok=True)
        if self.parquet is not None and self.parquet.exists():
            shutil.rmtree(self.parquet, ignore_errors=True)


def refusal_ahead(database: AccessDatabase) -> str | None:
    """Why every sync, provisioning run and request of ``database``'s org would be refused, read
    without writing anything: the file holds another org's data, or (an orgs file's org with no
    database yet) another org folder holds this org's (a renamed slug). None when neither, or when
    the file cannot be read now (a writer holds it: the run itself will say)."""
    if not database.organization_id:
        return None
    try:
        check_organization_id(database.organization_id)
    except SettingsError:
        return None  # the configuration check names it
    path = database.working_path if database.working_path.exists() else database.path
    try:
        if path.exists():
            with duckdb.connect(str(path), read_only=True) as conn:
                check_organization(conn, database.path, database.organization_id, database.orgs_root)
        else:  # what taking the writer lease refuses for a database not created yet
            database._refuse_a_second_database()
    except OtherOrganizationError as error:
        return "its sync, provisioning runs and requests will be refused: " + str(error).replace(NOTHING_DONE, "")
    except (duckdb.Error, OSError):
        return None
    return None


# A wait this long or longer is said once it has lasted ~0.6 s (it must not look like a hang); a
# shorter one is a look that says why itself if it gives up (a sensor's 2-s look at each org's
# copy: 600 copies an analyst held were 600 warnings a tick in the daemon's log).
SAY_WAITING_FROM_SECONDS = 5.0


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to ``path``; a read-only one reads the file as it is now.

    ``duckdb.connect`` hands every connection to a path the database this process already has
    open there: while a notebook holds a connection to the analysts' copy, that is the copy a
    publish has since replaced, without what was queued after it. A read-only connection attaches
    the file to an in-memory database of its own instead (under the name ``duckdb.connect``
    gives it, and made the default: ``main.*`` and ``current_database()`` read as before)."""
    if not read_only:
        return duckdb.connect(str(path))
    connection = duckdb.connect(":memory:")
    try:
        try:
            connection.execute(f"ATTACH {quote_literal(path)} (READ_ONLY)")
        except duckdb.BinderException:
            # A file called memory.*: its name is the in-memory database's. Named as DuckDB names
            # system.* and temp.* (system_db, temp_db): callers read current_database(), not a name.
            connection.execute(f"ATTACH {quote_literal(path)} AS {quote_identifier(path.name.split('.')[0] + '_db')} "
                               "(READ_ONLY)")
        [(name,)] = connection.execute(
            "SELECT database_name FROM duckdb_databases() WHERE path IS NOT NULL AND NOT internal"
        ).fetchall()
        connection.execute(f"USE {quote_identifier(name)}")
    except BaseException:
        connection.close()
        raise
    return connection


def _open_with_retry(path: Path, read_only: bool, timeout_seconds: float) -> duckdb.DuckDBPyConnection:
    """DuckDB refuses to open a file another process is writing: wait and try again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    delay = 0.02
    said_waiting = timeout_seconds < SAY_WAITING_FROM_SECONDS
    while True:
        try:
            return _connect(path, read_only)
        except duckdb.ResourceInUseException as exc:
            # This process (a notebook) holds a connection to the file that can write: waiting cannot help.
            raise HeldInThisProcessError(
                f"could not open {path} read-only: this process holds a connection to {path} that can "
                "write: close it (or open it with duckdb.connect(path, read_only=True)), then try again "
                f"({str(exc).strip().splitlines()[0]})"
            ) from None
        except duckdb.IOException as exc:
            # Another process writing says "lock"; the path is left out of the test (a folder
            # named "blockstore" would read as busy, and a damaged file be waited for).
            # "WAL does not match database file", or "... WAL checkpoint iteration does not match".
            if "WAL" in str(exc) and "does not match" in str(exc):
                raise LeftoverWalError(path, str(exc).strip().splitlines()[0]) from None
            if "lock" not in str(exc).replace(str(path), "").lower():  # waiting cannot help
                if "Permission denied" in str(exc):
                    raise DatabaseNotPermittedError(f"could not open {path}: {exc}") from None
                raise DatabaseUnusableError(f"could not open {path}: {exc}") from None
            if time.monotonic() >= deadline:
                raise DatabaseBusyError(
                    f"could not open {path}{' read-only' if read_only else ''}: {exc}"
                ) from None
            if delay == 0.5 and not said_waiting:  # ~0.6 s of retries: say so, once
                logger.warning("waiting for %s: %s (up to %g s)", path.name,
                               str(exc).strip().splitlines()[0], timeout_seconds)
                said_waiting = True
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except duckdb.Error as exc:
            # A file whose blocks fail their checksum (a bad disk block, a copy cut short by
            # another tool): DuckDB raises no IOException for it, and waiting cannot help.
            if "Corrupt database file" not in str(exc):
                raise
            raise DatabaseUnusableError(f"could not open {path}: {exc}") from None
