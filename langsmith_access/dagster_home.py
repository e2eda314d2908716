"""The Dagster instance of ``DAGSTER_HOME``, for the CLI's runs: loaded and asked once before a
run, so that a folder, a ``dagster.yaml`` or a storage database Dagster cannot use is refused with
the variable, the reason and the fix (``SettingsError``), never as Dagster's traceback from the
middle of a run. No password ever reaches the message."""

from __future__ import annotations

import os
import re

import dagster as dg
import sqlalchemy as db

from langsmith_access.langsmith import errors
from langsmith_access.settings import SettingsError, mask_url_credentials, named

# What every refusal of DAGSTER_HOME offers besides fixing it.
_OR_UNSET_DAGSTER_HOME = "or unset DAGSTER_HOME for a run kept in memory (not in the Dagster UI's run history)"


def dagster_home_instance(home: str) -> dg.DagsterInstance:
    """The instance of ``DAGSTER_HOME`` (``home``), or ``SettingsError`` naming the variable and
    the fix: Dagster's own refusal (a relative path, a folder that is not there, a dagster.yaml
    it cannot load) reached the user as a traceback from every command that runs a job."""
    folder = os.path.expanduser(home)
    if not os.path.isabs(folder) or not os.path.isdir(folder):
        why = ("not an absolute path" if not os.path.isabs(folder)
               else "a file, not a directory" if os.path.exists(folder) else "a directory that does not exist")
        raise SettingsError(
            f"DAGSTER_HOME is {named(home)}, {why}: set it to the absolute path of the Dagster instance's "
            f"directory (the one holding its dagster.yaml), {_OR_UNSET_DAGSTER_HOME}."
        )
    try:
        the_instance = dg.DagsterInstance.get()
    except Exception as error:  # any: the instance is made from dagster.yaml and what it names
        raise _unusable_instance(folder, error) from None
    try:
        # The Postgres storage connects when it is made, and makes its tables if there are none;
        # an account that may connect but not read tables another one made fails only at its
        # first query, with a traceback from the run: asked here, before anything runs.
        the_instance.get_runs(limit=1)
    except Exception as error:
        the_instance.dispose()
        raise _unusable_instance(folder, error) from None
    return the_instance


def _unusable_instance(folder: str, error: Exception) -> SettingsError:
    """The refusal of ``DAGSTER_HOME`` (``folder``) whose instance failed with ``error``: a
    database's refusal with its reason and fix, anything else as Dagster said it."""
    yaml_file = os.path.join(folder, "dagster.yaml")
    refusal = _database_refusal(error)
    if refusal is not None:
        reason, said, fix = refusal
        return SettingsError(
            f"DAGSTER_HOME is {folder}, whose Dagster storage (the database {yaml_file} names) {reason} "
            f"({said}): {fix}, {_OR_UNSET_DAGSTER_HOME}."
        )
    return SettingsError(
        f"DAGSTER_HOME is {folder}, whose Dagster instance cannot be loaded ({type(error).__name__}: "
        f"{_one_line_cut_short(str(error))}): fix {yaml_file} (its storage's database must be reachable), "
        f"{_OR_UNSET_DAGSTER_HOME}."
    )


def _one_line_cut_short(text: str) -> str:
    """``text`` on one line (a YAML error says what, then where), cut short, credentials in a
    storage URL cut out."""
    problem = mask_url_credentials(" ".join(errors.one_line(text).split()))
    return problem if len(problem) <= 400 else problem[:400] + "…"


# What the PostgreSQL server (or the way to it) said when Dagster's storage could not connect or
# create its tables, by the words of libpq's and the server's messages (a refused connection
# carries no SQLSTATE in psycopg2): the reason, and the fix. deploy/dagster.yaml reads each
# connection setting from a DAGSTER_PG_* variable, named for those who copied it.
_DATABASE_REFUSALS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"authentication failed|no password supplied|role \S+ does not exist", re.IGNORECASE),
     "refused the login: authentication failed",
     "set the storage's username and password to an account of that server (deploy/dagster.yaml reads them "
     "from DAGSTER_PG_USER and DAGSTER_PG_PASSWORD)"),
    (re.compile(r"database \S+ does not exist", re.IGNORECASE),
     "does not exist on its PostgreSQL server",
     "create it (createdb --owner <user> <name>, as in README \"Running it for real\"), or set the storage's "
     "db_name to one that exists (deploy/dagster.yaml reads it from DAGSTER_PG_DB)"),
    (re.compile(r"permission denied", re.IGNORECASE),
     "lets its user connect but not make or use Dagster's tables",
     "set the storage's username and password to the account that owns the database and its tables (README "
     "\"Running it for real\" creates the database with createdb --owner), or grant this one CREATE on schema "
     "public and every privilege on Dagster's tables"),
    (re.compile(r"could not translate host name|connection refused|timeout expired|timed out|no route to host|"
                r"network is unreachable|could not connect|server closed the connection", re.IGNORECASE),
     "cannot be reached",
     "start its PostgreSQL server, or set the storage's hostname and port to where it listens "
     "(deploy/dagster.yaml reads them from DAGSTER_PG_HOST and DAGSTER_PG_PORT)"),
)


def _database_refusal(error: BaseException) -> tuple[str, str, str] | None:
    """The reason, what the server said and the fix, when ``error`` (or one of its causes: the
    Postgres storage retries a connection, then raises its own "too many retries") is a
    database's refusal ``_DATABASE_REFUSALS`` knows; else None."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        # Only PostgreSQL's driver's errors, which SQLAlchemy wraps (adding the SQL and a link):
        # a sqlite storage's folder this user cannot write has its own fix. The driver's first
        # line says it; a refused statement's next lines quote the SQL.
        driver_error = cause.orig if isinstance(cause, db.exc.DBAPIError) else None
        if driver_error is not None and type(driver_error).__module__.startswith("psycopg"):
            said = _one_line_cut_short(errors.first_line(str(driver_error)))
            for pattern, reason, fix in _DATABASE_REFUSALS:
                if pattern.search(said):
                    return reason, said, fix
        cause = cause.__cause__ or cause.__context__
    return None
