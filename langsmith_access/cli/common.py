"""What every command shares: the exit codes for errors, the org (``--org``), the analysts'
database, tables."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import duckdb

from langsmith_access.governance.notifications import deliver_due_for_orgs
from langsmith_access.langsmith.errors import first_line
from langsmith_access.provisioning.queue import RequestRejected
from langsmith_access.provisioning.review import ReviewError
from langsmith_access.settings import (
    Org,
    Orgs,
    Settings,
    SettingsError,
    file_among_the_folders,
    load_orgs,
    mask_key_fragments,
    mask_keys,
    named,
    shown,
)
from langsmith_access.store.database import (
    FULL_DISK_ERRNOS,
    UNWRITABLE_ERRNOS,
    AccessDatabase,
    DatabaseBusyError,
    DatabaseNotReadyError,
    DatabaseUnusableError,
    PublishFailedError,
    full_disk_fix,
    full_disk_fix_of,
    unwritable_fix,
)
from langsmith_access.store.queries import LookupFailed
from langsmith_access.store.sql import quote_identifier
from langsmith_access.store.sync_runs import (
    NoPublishedSyncError,
    OrganizationElsewhereError,
    OtherOrganizationError,
    PredatesTablesError,
    database_elsewhere,
)

# DuckDB draws at most this many rows in one box; longer tables are drawn in several.
BOX_ROWS = 10_000
WIDE = 1_000_000  # characters: never shorten a column or hide one for the terminal's width
# The most of a text a table's cell shows (the rest cut, with an ellipsis): a box pads every cell
# to its column's widest, so one workspace named with 100,000 characters made each row of
# `access-at` that wide (13 MB for 126 grants). --json gives every value whole.
CELL_MAX_CHARS = 200


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says why (exit 2)."""


# The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130

# Errors in what the user asked for: nothing was done, exit 2 with the message.
USAGE_ERRORS = (UsageError, LookupFailed, ReviewError, RequestRejected)


def whole_number(minimum: int, most: int | None = None, why_most: str = "") -> Callable[[str], int]:
    """argparse type of a whole number ``minimum`` or more (a count of members, of rounds), and at
    most ``most`` when given (``why_most`` says why, in the refusal)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}: give {minimum} or more")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"{value} is above {most:,}: {why_most}; give {most:,} or fewer")
        return value

    return parse


# The sandbox builds its whole org in memory before it answers: 100,000 members took 44 s and
# 0.5 GB here, so a mistyped --members 1000000000 ran until the machine ran out of memory.
SANDBOX_MOST = 200_000
# members, workspaces, invites:
org_size = whole_number(0, SANDBOX_MOST, "the sandbox holds its whole org in memory (~5 GB a million members)")


def given(what: str, left_out: str) -> Callable[[str], str]:
    """argparse type of an option whose empty value (an unset shell variable) would silently
    mean what leaving it out means (``left_out``: every user, the default table): refused."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"empty: give {what}, or leave the option out ({left_out})")
        return text

    return parse


def named_path(what: str) -> Callable[[str], Path]:
    """argparse type of a file or folder to read or write; an empty value (an unset shell
    variable) would be the current directory: refused, naming ``what`` to give."""

    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"empty: name {what}")
        return Path(text)

    return parse


def refuse_a_file_among_the_folders(option: str, path: Path) -> None:
    """``UsageError`` when a folder of ``path`` (an output the command creates, folders included)
    is a file: mkdir would say only "File exists" or "Not a directory", naming no fix."""
    folder = file_among_the_folders(path.expanduser().absolute())
    if folder is not None:
        raise UsageError(f"{option} {path}: {folder} is a file, not a folder: choose a path "
                         "whose folders are folders (or move that file away).")


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command's handler; print an error the user can act on and return its exit code."""

    def say(text: str) -> None:
        # Every branch: an OS or DuckDB error quotes the path it was given, which may be a key
        # pasted where a path belongs (`export --out`).
        print(in_org_terms(args, mask_key_fragments(text)), file=sys.stderr)

    try:
        with contextlib.redirect_stdout(ReaderMayLeave(sys.stdout)):
            return handler(args)
    except USAGE_ERRORS as error:  # may quote what was typed: a key there is shown as its prefix
        say(f"error: {mask_keys(str(error))}")
        return 2
    except SettingsError as error:  # written not to quote a key; masked again in case one slips in
        say(f"error: {mask_key_fragments(str(error))}")
        return 1
    except DatabaseNotReadyError:
        org = selected_org(args)
        elsewhere = renamed_slug_refusal(org)
        say(f"error: {elsewhere}" if elsewhere else f"error: the analysts' database {org.duckdb_path} does not "
            "exist yet: run langsmith-access sync first.")
        return 1
    except NoPublishedSyncError as error:
        say(f"error: {error}.")
        return 1
    except BrokenPipeError:
        # The reader stopped early (`... | head`) and a write went around ReaderMayLeave: not an
        # error. Silence the final flush.
        _drop_stdout()
        return 0
    except DatabaseUnusableError as error:
        say(f"error: {error}\n  fix: {error.fix}")
        return 1
    except PublishFailedError as error:  # committed all the same: its message says so, and what next
        say(f"error: {error}" + (f"\n  fix: {error.fix}" if error.fix else ""))
        return 1
    except OtherOrganizationError as error:  # its message ends with the fix
        say(f"error: {error}")
        return 1
    except PredatesTablesError as error:  # a command that checks the tables it reads: said plainly
        say(f"error: {error}.\n  fix: {error.fix}")
        return 1
    except duckdb.CatalogException as error:
        # A table the command reads is missing: a database no sync has built yet (queueing a
        # request creates the file), or one an older version built.
        missing = re.match(r"Catalog Error: Table with name (\S+) does not exist", str(error))
        said = (f"the database has no table {missing[1]}, which this command reads: no sync of this release "
                "has built it (an older release's database, or one a request was queued in before any sync)"
                if missing else first_line(str(error)))  # (DuckDB's "Did you mean" names a system table)
        say(f"error: {said}\n  fix: {PredatesTablesError.fix}")
        return 1
    except OSError as error:
        say(f"error: {os_error_text(error)}{_os_error_fix(error, args)}")
        return 1
    except DatabaseBusyError as error:
        say(f"error: {error}\n  fix: {error.fix}")
        return 1
    except duckdb.Error as error:
        full = full_disk_fix_of(str(error), _database_of(args))
        say(f"error: {error}" + (f"\n  fix: {full}" if full else ""))
        return 1
    except KeyboardInterrupt:
        say("interrupted: a sync that had not published left the databases as they were, and "
            "requests a provisioning run did not settle are settled by the next one")
        return INTERRUPTED


# C0 controls but tab and line feed, DEL and C1: a name LangSmith sent (a workspace's, a
# member's) that holds one would move the cursor, rewrite a line or recolour the terminal.
# Also the bidirectional embeddings, overrides and isolates (a terminal that lays out
# right-to-left text shows the rest of the line reversed after U+202E: "Viewer in xyz for
# moc.elpmaxe@evil") and the Unicode line and paragraph separators, as errors.one_line cuts them.
_TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


class PrintableOnly:
    """A text stream that writes each terminal control character as its JSON escape (``\\u001b``):
    seen in plain text, and the same character again in JSON output (json.dumps escapes C0 itself,
    but with ensure_ascii=False not DEL, C1 or the bidirectional controls)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_TERMINAL_CONTROLS.sub(lambda control: f"\\u{ord(control.group()):04x}", text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def on_one_line(text: str) -> str:
    """``text`` (a name LangSmith sent, a cell of a sheet) with each line feed as its escape
    (``\\u000a``), for output of one record a line: ``PrintableOnly`` leaves line feeds be (they end
    the lines), so a workspace named "x\\n<id>  applied  grant ..." printed a request of its own."""
    return text.replace("\n", "\\u000a")


@contextlib.contextmanager
def printable_output() -> Iterator[None]:
    """stdout and stderr as ``PrintableOnly`` for the duration of a command."""
    with contextlib.redirect_stdout(PrintableOnly(sys.stdout)), \
            contextlib.redirect_stderr(PrintableOnly(sys.stderr)):
        yield


def _drop_stdout() -> None:
    """Send the rest of stdout to /dev/null: its reader has gone."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class ReaderMayLeave:
    """``sys.stdout`` for a command whose reader may stop early (``... | head -1``): from the
    first write that finds the pipe closed, output goes to /dev/null and the command goes on,
    to the end of its work (``sync --all-sections`` still runs the inventory) and its own exit
    code and stderr messages (a failed ``provision`` still exits 1 and says why)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _drop_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _drop_stdout()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def refused_if_unmakeable(option: str, path: Path, example: str) -> Iterator[None]:
    """Looking at or making the folder of an output ``option`` names (``path``, or the folder
    holding it): an OS error becomes a refusal saying what to pass instead (``example``).
    A folder the file system will not make (under /proc: "No such file or directory" of a path
    the user asked to create), a name longer than it allows, said nothing more. A folder this
    user may not write is left to the common handler, whose fix names it."""
    try:
        yield
    except OSError as error:
        if error.errno in UNWRITABLE_ERRNOS or not error.strerror:
            raise
        raise UsageError(
            f"{option} {named(str(path))}: the folder cannot be made there ({error.strerror}): choose a "
            f"folder this user may create and write, with no name longer than 255 bytes (e.g. {option} {example})."
        ) from None


def os_error_text(error: OSError) -> str:
    """An OS error as ``<path>: <what happened>``, the way mkdir and cp say it (Python's
    "[Errno 2] No such file or directory: '/x'" reads as a crash report)."""
    if not error.strerror:
        return str(error)
    paths = " -> ".join(str(path) for path in (error.filename, error.filename2) if path is not None)
    return f"{paths}: {error.strerror}" if paths else error.strerror


def _os_error_fix(error: OSError, args: argparse.Namespace) -> str:
    """The fix line for a path this user may not write, or a file system with no room left
    (none for other OS errors)."""
    if error.errno in UNWRITABLE_ERRNOS:
        return f"\n  fix: {unwritable_fix(error.filename, _database_of(args))}"
    if error.errno in FULL_DISK_ERRNOS:
        return f"\n  fix: {full_disk_fix(error.filename, _database_of(args))}"
    return ""


def _database_of(args: argparse.Namespace) -> Path | None:
    """The analysts' file of the org the command acts on, or None where none can be chosen."""
    try:
        return selected_org(args).duckdb_path
    except Exception:  # no usable settings: the path alone says enough
        return None


def in_org_terms(args: argparse.Namespace, text: str) -> str:
    """``text`` as the org ``--org`` selects would put it (``Org.in_its_own_terms``: the commands
    it suggests carry ``--org``); unchanged when no org can be selected (the message is then
    about that)."""
    return org_terms(args)(text)


def org_terms(args: argparse.Namespace) -> Callable[[str], str]:
    """``in_org_terms`` for many texts: the orgs file is read once, not once per text."""
    try:
        return selected_org(args).in_its_own_terms
    except (SettingsError, UsageError):
        return lambda text: text


def add_org_argument(parser: argparse.ArgumentParser) -> None:
    """``--org SLUG``, after the command's name (DESIGN.md section 11). A command that serves an
    org also delivers that org's due notifications when it is done (DESIGN.md section 10: each
    command does, so an install without the sensor still sends them)."""
    parser.add_argument(
        "--org", default=None, metavar="SLUG",
        help="the org to act on, by its slug in LANGSMITH_ACCESS_ORGS_FILE (default: the only org; "
        "without an orgs file the single-org variables are the org 'default')",
    )
    parser.set_defaults(delivers_notifications=True)


def renamed_slug_refusal(org: Org) -> OrganizationElsewhereError | None:
    """For an org of an orgs file whose database does not exist: the refusal naming the other
    folder that holds its data (a slug renamed in the file), where one does; "run sync first"
    would start a second database of the org."""
    if org.orgs_root is None or not org.organization_id:
        return None
    path = AccessDatabase.of_org(org).path
    found = database_elsewhere(path, org.orgs_root, org.organization_id)
    return OrganizationElsewhereError(path, *found) if found else None


def selected_org(args: argparse.Namespace) -> Org:
    """The org ``--org`` names, else the only one. The orgs file is read and checked first, so
    a bad file stops the command before any request (exit 1); an unknown slug, or none among
    several orgs, is a usage error naming the known ones (exit 2). Another org's unset key
    variable stops nothing here: a command that needs this org's key asks ``Org.client()``,
    which names what is missing (exit 1)."""
    return choose_org(load_orgs(refuse_unusable_keys=False), getattr(args, "org", None))


def choose_org(orgs: Orgs, slug: str | None) -> Org:
    if slug is None and len(orgs) > 1:
        raise UsageError(
            f"{len(orgs)} orgs are configured ({', '.join(orgs.slugs)}): name one with --org SLUG."
        )
    if slug is not None and slug not in orgs.slugs:
        where = f"in the orgs file {orgs.source}" if orgs.source else "(no orgs file: the single-org variables)"
        # A slug is lower case, without spaces: 'US' or ' us' typed for 'us' is named as meant.
        meant = next((known for known in orgs.slugs if known == slug.strip().lower()), None)
        hint = f" Did you mean --org {meant}? (a slug is lower case, without spaces)" if meant else ""
        raise UsageError(f"unknown org {shown(slug)}: the orgs configured {where} are "
                         f"{', '.join(orgs.slugs)}.{hint}")
    return orgs.get(slug)


def deliver_notifications(args: argparse.Namespace) -> None:
    """POST the command's org's notifications that are due, if it has a webhook; say on stderr
    what could not go (it is retried later). Never fails the command: a busy database or a
    receiver that is down only delays notifications."""
    try:
        orgs = (list(load_orgs(refuse_unusable_keys=False)) if getattr(args, "all_orgs", False)
                else [selected_org(args)])
    except (SettingsError, UsageError):
        return  # the command itself has said what is wrong with the settings or the --org
    # Side by side: with --all-orgs, a slow receiver costs the command one delivery's budget.
    reports = deliver_due_for_orgs(orgs, lease_timeout_seconds=2.0)
    for slug, report in reports.items():
        if report is None:
            continue  # no webhook for this org
        lead = f"[{slug}] " if len(orgs) > 1 else ""
        if report.problem:
            print(f"{lead}notifications: {report.problem} (retried by the next command or the sensor)",
                  file=sys.stderr)
        elif report.failed:
            reasons = sorted(set(report.failed.values()))
            print(f"{lead}notifications: {len(report.failed)} not delivered yet ({'; '.join(reasons)}); "
                  f"{len(report.delivered)} delivered. Retried later, with backoff.", file=sys.stderr)


def failure_log_directory(settings: Settings) -> Path:
    """Where a failed run's log goes (``AccessDatabase.logs_path``)."""
    return AccessDatabase(settings.duckdb_path).logs_path


def print_fix_and_log(outcome) -> None:
    """Under a failed run's summary: the fix its error names, and where the details are."""
    if outcome.fix:
        print(f"  fix: {outcome.fix}", file=sys.stderr)
    if outcome.log_path is not None:
        print(f"  details (stack traces): {outcome.log_path} (or run again with --verbose)",
              file=sys.stderr)


def analysts_database(args: argparse.Namespace) -> AccessDatabase:
    """The analysts' database of the org ``--org`` names (``LANGSMITH_ACCESS_DUCKDB`` for the
    single org)."""
    return AccessDatabase.of_org(selected_org(args))


def refuse_another_orgs_folder(args: argparse.Namespace, option: str, path: Path | str) -> None:
    """``UsageError`` when ``path`` (an output) is in the folder of another org of the orgs file
    (``<dir>/<slug>/``, not the one ``--org`` names): this org's tables or sheet there would pass
    for that org's."""
    selected = selected_org(args).slug
    resolved = Path(path).expanduser().resolve()
    for org in load_orgs(refuse_unusable_keys=False):
        folder = org.duckdb_path.parent
        if org.slug != selected and org.orgs_file is not None and resolved.is_relative_to(folder.resolve()):
            raise UsageError(
                f"{option} {path} is in {folder}, the folder of org {org.slug!r}: the data of org "
                f"{selected!r} there would pass for that org's. Write it to a directory of your own "
                f"(e.g. {option} exports/{selected})."
            )


def another_orgs_database(args: argparse.Namespace, path: Path | str) -> str | None:
    """The slug of the other configured org (not the one ``--org`` names) one of whose database
    files ``path`` is, else None: a command of one org never writes into another's files."""
    selected = selected_org(args).slug
    for org in load_orgs(refuse_unusable_keys=False):
        if org.slug != selected and AccessDatabase(org.duckdb_path, org.organization_id).owns(path):
            return org.slug
    return None


def print_table(relation: duckdb.DuckDBPyRelation, rows: int) -> None:
    """Every row of ``relation`` (``rows`` of them) as DuckDB draws a table, never cut short:
    no column hidden for the terminal's width, and (a box holds at most BOX_ROWS rows) a longer
    table drawn in several boxes. Empty cells for nulls; a text longer than CELL_MAX_CHARS cut."""
    relation = relation.project(", ".join(
        _cut_to_cell(quote_identifier(name)) if str(kind) == "VARCHAR" else quote_identifier(name)
        for name, kind in zip(relation.columns, relation.types, strict=True)
    ))
    for offset in range(0, max(rows, 1), BOX_ROWS):
        part = relation.limit(BOX_ROWS, offset) if rows > BOX_ROWS else relation
        part.show(max_rows=BOX_ROWS, max_width=WIDE, max_col_width=WIDE, null_value="")


def _cut_to_cell(column: str) -> str:
    """SQL of text ``column`` at most CELL_MAX_CHARS characters long, an ellipsis where it was cut."""
    return (f"CASE WHEN length({column}) > {CELL_MAX_CHARS} THEN left({column}, {CELL_MAX_CHARS - 1}) || '…' "
            f"ELSE {column} END AS {column}")
