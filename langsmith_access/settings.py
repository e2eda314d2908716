"""The one place that reads configuration (DESIGN.md section 1).

Everything else receives a ``Settings`` (or the pieces of it it needs); nothing else reads a
setting's value from ``os.environ`` (the demo and the doctor only look whether a variable is
set; the runner reads Dagster's own ``DAGSTER_HOME``). The API key is wrapped in ``Secret`` so
that printing, logging or formatting a settings object can never show it.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from langsmith_access.governance.durations import DurationError, parse_duration
from langsmith_access.quoting import KEY_BODY as _KEY_BODY
from langsmith_access.quoting import KEY_PREFIXES, NOT_A_KEY_SHAPE, holds_key, named, shown

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
DEFAULT_DUCKDB_PATH = "data/langsmith_access.duckdb"

# The org's slug where one org is configured by the variables of section 1 (DESIGN.md
# section 11); notifications name the org by it.
DEFAULT_ORG_SLUG = "default"
WEBHOOK_FORMATS = ("json", "slack")

SERVICE_KEY_PREFIX = "lsv2_sk_"
PERSONAL_TOKEN_PREFIX = "lsv2_pt_"


class SettingsError(ValueError):
    """Configuration is missing or malformed. The message says which variable and how to fix it."""

    fix = "correct the variable the message names, then run `langsmith-access doctor`"


class Secret:
    """A string that never shows itself in repr/str/format; call ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):
        # Refuse pickling: pickled settings could end up in Dagster run storage.
        raise TypeError("a Secret cannot be pickled")


def check_api_key(api_key: str, name: str = "LANGSMITH_API_KEY") -> None:
    """Refuse keys this project cannot use, before any request is sent. ``name`` is the variable
    the key came from, for the message (which never shows the key)."""
    if not api_key or not api_key.strip():
        raise SettingsError(
            f"{name} is empty: set it to an organization-scoped service key (lsv2_sk_...)."
        )
    unquoted = api_key.strip().strip("'\"")
    if unquoted != api_key.strip() and unquoted.startswith(KEY_PREFIXES):
        raise SettingsError(
            f"{name} holds the key inside quotes: set it to the key alone (the shell or the "
            ".env file kept the quotes as part of the value)."
        )
    if api_key.startswith(PERSONAL_TOKEN_PREFIX):
        raise SettingsError(
            f"{name} is a personal access token (lsv2_pt_...). langsmith-access needs an "
            "organization-scoped service key (lsv2_sk_...): create one under Settings > API Keys "
            f"> Service Keys with organization scope, then set {name} to it."
        )
    if not api_key.startswith(SERVICE_KEY_PREFIX):
        raise SettingsError(
            f"{name} does not look like a LangSmith service key: it must start with "
            "'lsv2_sk_' (an organization-scoped service key)."
        )
    if any(ch.isspace() for ch in api_key):
        raise SettingsError(f"{name} contains whitespace: paste the key without spaces.")
    secret = api_key[len(SERVICE_KEY_PREFIX):]
    if not secret.strip(".…"):
        raise SettingsError(
            f"{name} is only a key's prefix (lsv2_sk_, or the docs' placeholder lsv2_sk_...): set it "
            "to the whole organization-scoped service key."
        )
    if "..." in secret or "…" in secret:
        raise SettingsError(
            f"{name} is a key's short form as LangSmith lists it (lsv2_sk_...a1b2), not the key: "
            "LangSmith shows a whole key only once, when it is created. Create a service key with "
            f"organization scope under Settings > API Keys and set {name} to it."
        )
    if not _KEY_CHARACTERS.fullmatch(secret):
        raise SettingsError(
            f"{name} holds characters no LangSmith key has (a key is lsv2_sk_ and then letters, "
            "digits, '_' and '-' only): paste the key as LangSmith showed it when it was created."
        )


def mask_keys(text: str) -> str:
    """``text`` with anything that looks like an API key cut to its prefix (``lsv2_***``): a key
    typed or pasted where a name, an email or a reason belongs is never echoed or stored."""
    return _KEY_BODY.sub("***", _KEY_LIKE.sub(lambda match: match.group(1) + "***", text))


# The shortest run of the key's characters cut from a text: shorter ones occur by chance (in
# ids and hashes); any longer is a piece of the key, with or without its prefix.
KEY_RUN_CHARACTERS = 12
_SIEVE_STEP = 6


def without_runs_of(key: str, text: str) -> str:
    """``text`` with every run of at least ``KEY_RUN_CHARACTERS`` characters of ``key`` cut to
    ``***`` (the prefix-based masking misses a piece of the key's secret quoted without it)."""
    # Every run of KEY_RUN_CHARACTERS characters of the key holds one of the shorter pieces that
    # start at every _SIEVE_STEP-th character: a text holding none of them (nearly every text, a
    # page of 500 members too) is returned after a few fast scans.
    sieve = KEY_RUN_CHARACTERS - _SIEVE_STEP + 1
    if not any(key[start:start + sieve] in text for start in range(0, len(key) - sieve + 1, _SIEVE_STEP)):
        return text
    pieces = [key[start:start + KEY_RUN_CHARACTERS] for start in range(len(key) - KEY_RUN_CHARACTERS + 1)]
    if not any(piece in text for piece in pieces):
        return text
    hidden = [False] * len(text)
    for piece in pieces:
        at = text.find(piece)
        while at != -1:
            hidden[at:at + KEY_RUN_CHARACTERS] = [True] * KEY_RUN_CHARACTERS
            at = text.find(piece, at + 1)
    return "".join("***" if hide else "".join(char for char, _ in run)
                   for hide, run in itertools.groupby(zip(text, hidden, strict=True), key=lambda pair: pair[1]))


def mask_url_credentials(text: str) -> str:
    """``text`` with every URL's ``user:password@`` cut to ``<credentials>@`` and its query string
    to ``?<query>`` (where tokens travel: a signed link, an ``?access_token=``); scheme, host and
    path stay."""
    return _URL_QUERY.sub(r"\1?<query>", _URL_USERINFO.sub(r"\1<credentials>@", text))


def mask_key_fragments(text: str) -> str:
    """``text`` with every key or long fragment of one cut to its prefix (``lsv2_***``), and the
    product's own mentions of a prefix (``lsv2_sk_...``) left as they are: for messages that mix
    both, like the doctor's."""
    return _KEY_BODY.sub("***", _KEY_FRAGMENT.sub(lambda match: match.group(1) + "***", text))


def _pasted_key(raw: str) -> bool:
    return (raw.strip().startswith(KEY_PREFIXES) or _KEY_FRAGMENT.search(raw) is not None
            or _KEY_BODY.search(raw) is not None)


def yaml_line(mark: yaml.Mark, text: str) -> int:
    """The 1-based line of a YAML parser's ``mark`` in ``text``. A problem found at the end of the
    file (an unclosed bracket) is marked on the line after the last newline, one past the file's
    lines: said as its last line."""
    return min(mark.line + 1, max(1, len(text.splitlines())))


def _unquoted(raw: str) -> str:
    """``raw`` without the spaces and the quotes around it (a shell or a .env file kept them)."""
    return raw.strip().strip("'\"").strip()


def check_organization_id(organization_id: str, name: str = "LANGSMITH_ORGANIZATION_ID") -> str:
    """Return the org id in canonical UUID form, or explain what is wrong with it (``name``: where
    the value came from, for the message)."""
    try:
        # Quotes a shell or .env file kept, as for LANGSMITH_ENDPOINT: the UUID inside is meant.
        return str(uuid.UUID(_unquoted(organization_id)))
    except (ValueError, AttributeError):
        value = organization_id if len(organization_id or "") <= 64 else organization_id[:64] + "…"
        raise SettingsError(
            f"{name} must be the organization's UUID "
            f"(like 00000000-0000-4000-8000-000000000001), got {shown(value)}. Find it in LangSmith "
            "under Settings > Organization."
        ) from None


def check_endpoint(endpoint: str, name: str = "LANGSMITH_ENDPOINT") -> str:
    """The API's origin (scheme, host, port and any basePath) from ``LANGSMITH_ENDPOINT`` as
    users write it.

    LangSmith's own docs tell self-hosted users to set ``https://<host>/api/v1`` (or
    ``https://<host>/api``) and Cloud users the bare host or the host with ``/api/v1``; every
    request path here starts with ``/api/v1``. So, as LangChain's Go SDK and Terraform provider
    do: trim spaces, quotes and trailing ``/``, then strip one trailing ``/api/v1`` or ``/api``
    (a bare ``/v1`` stays: it may be part of a basePath). One ending in the platform routes'
    prefix (``/api/v1/platform``, ``/v1/platform``) is refused, naming the value to set.
    """
    raw = endpoint
    endpoint = _unquoted(endpoint).rstrip("/")
    # The path's suffix only: a host named "api" (http://api, a container's name) is a host.
    path = urlsplit(endpoint).path.lower()
    for suffix in ("/api/v1", "/api"):
        if path.endswith(suffix) and endpoint.lower().endswith(suffix):
            endpoint = endpoint[: -len(suffix)].rstrip("/")
            break
    parts = urlsplit(endpoint)
    # A space or control character inside is no URL (http.client refuses it at every request).
    inside = any(ch.isspace() or not ch.isprintable() for ch in endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or inside:
        raise SettingsError(
            f"{name} must be an http(s) URL such as {DEFAULT_ENDPOINT} (US), "
            f"https://eu.api.smith.langchain.com (EU) or https://<your-host>/api/v1 (self-hosted), "
            f"got {shown(raw)}."
        )
    # A query, a fragment or a user and password may hold a secret: refused, and not shown. An
    # empty one too ("...?" or "...#"): every request path is appended, and went into it.
    if "?" in endpoint or "#" in endpoint:
        raise SettingsError(
            f"{name} must be the API's base URL without a query or fragment "
            f"(like {DEFAULT_ENDPOINT}); the value set has one (not shown)."
        )
    if parts.username is not None or parts.password is not None:
        raise SettingsError(
            f"{name} must not carry a user name or password (not shown): LangSmith takes the key "
            f"from LANGSMITH_API_KEY; set the base URL alone (like {DEFAULT_ENDPOINT})."
        )
    try:
        # 0 parses, but no server listens there: every request would fail to connect.
        usable_port = parts.port != 0
    except ValueError:  # not a number from 0 to 65535
        usable_port = False
    if not usable_port:
        raise SettingsError(
            f"{name} has an invalid port: {shown(raw)}. Give a port from 1 to 65535 after the host "
            "(like https://langsmith.example.com:8443), or none for the scheme's own (443 for https)."
        )
    # The prefix of the platform routes, copied from a request's URL: kept as a basePath, every
    # request went to <it>/api/v1/... and was answered 404 (or a self-hosted UI's page),
    # and LangChain's SDKs, which read the same variable, fail on it alike. Said here, with the
    # value to set, rather than guessed: no LangChain client documents this form.
    platform = next((suffix for suffix in _PLATFORM_PREFIXES if parts.path.lower().endswith(suffix)), None)
    if platform is not None:
        base = endpoint[: -len(platform)].rstrip("/")
        raise SettingsError(
            f"{name} ends in {platform}, the prefix of LangSmith's platform routes, not the API's base "
            f"URL (every request would miss the API: a 404, or a web page): set it to {named(base)} or "
            f"{named(base + '/api/v1')}, as for LangChain's SDKs; the platform routes are found from there."
        )
    return endpoint


# The prefixes of the platform routes (``langsmith-api.md``, "Deployments and base URLs"): the
# API's base URL never ends in one.
_PLATFORM_PREFIXES = ("/api/v1/platform", "/v1/platform")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, each default written here once (DESIGN.md section 1);
    ``from_env`` reads the variables of ``ENVIRONMENT`` over these defaults."""

    endpoint: str = DEFAULT_ENDPOINT
    duckdb_path: Path = Path(DEFAULT_DUCKDB_PATH)
    api_key: Secret | None = field(default=None, repr=False)
    organization_id: str | None = None
    # Sustained request rate; the API allows about 2000/min per key, stay well below it.
    requests_per_minute: int = 1500
    # Parallel calls when fanning out over workspaces.
    max_concurrency: int = 8
    read_timeout_seconds: float = 30.0
    max_retries: int = 6
    # LangSmith's rate limit is a fixed window per key; a 429 without Retry-After is waited out
    # until this long after the refused request was sent (the window had begun by then).
    rate_limit_window_seconds: float = 60.0
    sync_cron: str = "0 * * * *"
    # The inventory (DESIGN.md section 9): credentials, policies, SSO, the audit log. Hourly, at
    # minute 30, between two syncs.
    inventory_cron: str = "30 * * * *"
    max_shrink_share: float = 0.2
    # A grant or credential unused this many days is "unused" (report_unused_access,
    # report_credential_hygiene); the audit log's first load reaches back as far.
    unused_days: int = 90
    # The sensors' minimum interval (provisioning queue, expiry, outbox). Dagster's sensor daemon
    # evaluates sensors in a loop that runs every 5 s at most (MIN_INTERVAL_LOOP_TIME in
    # dagster/_daemon/sensor.py) and skips a sensor whose last tick is younger than its interval;
    # the ticks of one loop are ~5 s after the last loop's, give or take the shuffled order of
    # the sensors, so 5 would skip every other loop (10 s) and 4 is every loop. Issue 15 wants a
    # median time to access under 15 s, and the sensor's wait is most of it at 30 s
    # (benchmarks/time_to_access.py); each tick reads each org's analysts' copy read-only, for
    # milliseconds, and the idle daemon's CPU did not change measurably between 30 and 5.
    provisioning_interval_seconds: int = 4
    # The access policy file (DESIGN.md section 10); None: nothing needs approval, nothing
    # expires unless asked.
    policy_path: Path | None = None
    # Where notifications are POSTed; a secret (a Slack webhook URL is its own credential).
    webhook_url: Secret | None = field(default=None, repr=False)
    webhook_format: str = "json"
    # How long before a grant expires its `access.expiring` notification is sent.
    expiry_warning: timedelta = timedelta(hours=24)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        settings, problems = cls._read(environ)
        if problems:
            raise problems[0][1]
        return settings

    @classmethod
    def problems_of_env(cls, environ: Mapping[str, str] | None = None) -> list[str]:
        """Every problem of the single-org variables, in ``ENVIRONMENT``'s order, then what
        ``client()`` would refuse of the rest: where ``from_env`` and ``client()`` stop at the
        first, the doctor names them all, so one run shows everything to fix. (With an orgs file
        only the variables are checked: each org's key and id are its entry's.)"""
        settings, problems = cls._read(environ)
        unread = {name for name, _ in problems}  # kept their defaults: "not set" would be wrong
        if (os.environ if environ is None else environ).get(ORGS_FILE_VARIABLE):
            return [str(problem) for _, problem in problems]
        return [str(problem) for _, problem in problems] + [
            str(problem) for name, problem in settings.client_problems() if name not in unread]

    @classmethod
    def _read(cls, environ: Mapping[str, str] | None) -> tuple[Settings, list[tuple[str, SettingsError]]]:
        """The settings of the variables that could be read (one that could not keeps its
        default) and, by field name, the problem of each that could not."""
        env = os.environ if environ is None else environ
        # Field name -> its value, of the type ENVIRONMENT's parser for that field returns (a
        # correspondence mypy cannot follow through the table; the dataclass names each field).
        values: dict[str, Any] = {}
        problems: list[tuple[str, SettingsError]] = []
        for name, variable, parse in ENVIRONMENT:
            if name in ORG_OWN_FIELDS and env.get(ORGS_FILE_VARIABLE):
                continue  # each org of the file has its own; these variables are not read at all
            raw = env.get(variable)
            if not raw and env.get(FALLBACK_VARIABLES.get(variable, "")):
                variable = FALLBACK_VARIABLES[variable]  # named in any error: it is what was set
                raw = env[variable]
            if raw:  # unset or empty: the default
                try:
                    # Without the quotes a .env loader or `docker run --env-file` kept around the
                    # value ("90", '0 * * * *'), as for a path: every parser reads the value inside.
                    values[name] = parse(variable, _unquoted(raw))
                except SettingsError as problem:
                    problems.append((name, problem))
        try:
            check_webhook_format(values.get("webhook_url"), values.get("webhook_format", cls.webhook_format),
                                 "LANGSMITH_ACCESS_WEBHOOK_URL", "LANGSMITH_ACCESS_WEBHOOK_FORMAT")
        except SettingsError as problem:
            problems.append(("webhook_format", problem))
        if not env.get(ORGS_FILE_VARIABLE):  # with an orgs file, each entry's endpoint is checked there
            try:
                check_webhook_is_not_endpoint(values.get("endpoint", cls.endpoint), values.get("webhook_url"),
                                              "LANGSMITH_ENDPOINT", "LANGSMITH_ACCESS_WEBHOOK_URL")
            except SettingsError as problem:
                problems.append(("webhook_url", problem))
        return cls(**values), problems

    def client_problems(self) -> list[tuple[str, SettingsError]]:
        """Why ``client()`` would refuse these settings, by field: the key's problem, then the
        org id's."""
        problems: list[tuple[str, SettingsError]] = []
        if self.api_key is None:
            problems.append(("api_key", SettingsError(
                "LANGSMITH_API_KEY is not set: set it to an organization-scoped service key (lsv2_sk_...)."
            )))
        else:
            try:
                check_api_key(self.api_key.reveal())
            except SettingsError as problem:
                problems.append(("api_key", problem))
        if not self.organization_id:
            problems.append(("organization_id", SettingsError(
                "LANGSMITH_ORGANIZATION_ID is not set: set it to your organization's UUID."
            )))
        else:
            try:
                check_organization_id(self.organization_id)
            except SettingsError as problem:
                problems.append(("organization_id", problem))
        return problems

    def client(self) -> ClientSettings:
        """Settings for the API client; raises ``SettingsError`` if the API is not configured."""
        problems = self.client_problems()
        if problems:
            raise problems[0][1]
        assert self.api_key is not None and self.organization_id is not None  # no problems: both set
        return ClientSettings(
            api_key=self.api_key,
            organization_id=check_organization_id(self.organization_id),
            **{name: getattr(self, name) for name in CLIENT_FIELDS},
        )


def cache_directory(environ: Mapping[str, str] | None = None) -> Path:
    """Where langsmith-access keeps files it can rebuild at any time (dbt's manifest of the
    installed project): ``LANGSMITH_ACCESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/langsmith-access``,
    else ``~/.cache/langsmith-access``. Never inside the package, which may be read-only."""
    env = os.environ if environ is None else environ
    chosen = _unquoted(env.get("LANGSMITH_ACCESS_CACHE_DIR") or "")  # as the path variables are read
    if chosen:
        return Path(chosen).expanduser().absolute()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().absolute() / "langsmith-access"


# What the API client takes from ``Settings``; its defaults are the ones above.
CLIENT_FIELDS = (
    "endpoint", "requests_per_minute", "max_concurrency", "read_timeout_seconds", "max_retries",
    "rate_limit_window_seconds",
)


@dataclass(frozen=True)
class ClientSettings:
    """How to reach LangSmith and how politely. Built by ``Settings.client()``."""

    api_key: Secret = field(repr=False)
    organization_id: str
    endpoint: str = Settings.endpoint
    requests_per_minute: int = Settings.requests_per_minute
    max_concurrency: int = Settings.max_concurrency
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = Settings.read_timeout_seconds
    max_retries: int = Settings.max_retries
    rate_limit_window_seconds: float = Settings.rate_limit_window_seconds


def _path(name: str, raw: str) -> Path:
    _refuse_a_pasted_key(name, raw)
    return Path(_path_text(name, raw))


def _path_text(name: str, raw: str) -> str:
    """A path variable's text without the spaces, newline or quotes an env file leaves around it
    (read as typed, " data/x.duckdb" is a folder named " data", and '"data/x.duckdb"' one named
    '"data', as `docker run --env-file` passes it: a database nobody else opens), and with a
    leading ``~`` made the home directory, as LANGSMITH_ACCESS_CACHE_DIR's (an env file or a
    systemd unit does not expand it: "~/data/x.duckdb" was a folder named "~" in the working
    directory)."""
    text = _unquoted(raw)
    if not text:
        raise SettingsError(f"{name} is blank: set it to a file's path, or unset it for the default.")
    return os.path.expanduser(text)


def _refuse_a_pasted_key(name: str, raw: str) -> None:
    """A path is printed and names a file on disk: a service key or personal token (or a key's
    body) pasted into a path variable is refused, not shown. A mere prefix (ls__archive) is a name."""
    if _SERVICE_KEY_OR_TOKEN.search(raw) or _KEY_BODY.search(raw):
        raise SettingsError(
            f"{name} holds what looks like an API key (not shown): set it to a file's path; the key "
            "belongs in LANGSMITH_API_KEY (revoke it if it was shared)."
        )


def file_among_the_folders(path: Path) -> Path | None:
    """The nearest existing folder of ``path`` when it is a file, not a directory (creating
    ``path``'s folders would fail saying only "File exists" or "Not a directory"); else None.
    Only looked at, never made."""
    for folder in path.parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None


def _stat_unless_missing(path: Path) -> None:
    """``os.stat(path)``: raises what stops looking at it, but not that it (or a folder above
    it) does not exist yet, nor that a folder above it is a file (said in the caller's words)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def _database_path(name: str, raw: str) -> Path:
    """The analysts' database file: refused, before anything is created beside it, when it is a
    directory or lies under a file."""
    _refuse_a_pasted_key(name, raw)
    text = _path_text(name, raw)
    path = Path(text)
    if text.endswith(("/", os.sep)) and not path.is_dir():
        # A trailing '/' means a directory, but Path drops it: "data/" not created yet was taken
        # as a database file named "data", its working files made beside it, where nobody looks.
        raise SettingsError(
            f"{name} is {text}, a directory (it ends in '/'): point it at the database file in it, "
            f"like {path / ORG_DATABASE_FILE}."
        )
    try:
        is_dir, folder = path.is_dir(), file_among_the_folders(path)
        _stat_unless_missing(path)
    except OSError as error:
        # A name longer than the file system takes (or a symlink to one: ENAMETOOLONG), a folder
        # this user may not enter, symlinks that lead round to each other (ELOOP: is_dir says
        # False): a bare OSError, naming no variable, stopped every command, or the database
        # was said not to exist yet.
        raise SettingsError(
            f"{name} is {named(str(path))}, which cannot be looked at ({error.strerror}): point it at "
            "a database file in a folder this user can enter, through no name (or symlink target) "
            "longer than the file system allows and no loop of symlinks, like data/langsmith_access.duckdb."
        ) from None
    if is_dir:
        raise SettingsError(
            f"{name} names the directory {path}: point it at the database file in it, like "
            f"{path / 'langsmith_access.duckdb'}."
        )
    if folder is not None:
        raise SettingsError(
            f"{name} is {path}, but {folder} is a file, not a directory: point it at a file "
            "in a directory this user can write, like data/langsmith_access.duckdb."
        )
    return path


def _organization_id(name: str, raw: str) -> str:
    """The org id in its canonical form where it is a UUID (a newline, quotes, capitals or braces
    around it): every copy of it (``sync_runs``, the database's owner, review sheets) is then the
    one LangSmith writes. Anything else is kept as set and refused, naming the variable, when a
    client is made from the settings (commands that call no API do not need it); but a key pasted
    here is refused now, as in a path variable: kept, it was in every repr of the settings and of
    their org."""
    try:
        return check_organization_id(raw, name)
    except SettingsError:
        if holds_key(raw):
            raise
        return raw


def _secret(name: str, raw: str) -> Secret:
    # ``raw`` comes without the spaces, newline and quotes around the value (``_read``): they are
    # the shell's, the secret file's or the .env file's, not the key's (a Kubernetes secret made
    # with `echo` ends in a newline).
    return Secret(raw)


def _endpoint(name: str, raw: str) -> str:
    return check_endpoint(raw, name)


def _whole_number(name: str, raw: str, least: int, wanted: str) -> int:
    """``raw`` as a whole number of at least ``least``. int() allows the spaces and newline
    around the value; str.isdigit() would pass digits int() refuses (a superscript '²')."""
    try:
        value = int(raw)
    except ValueError:
        value = least - 1
    if value < least:
        raise SettingsError(f"{name} must be {wanted}, got {shown(raw)}.")
    return value


def _positive_int(name: str, raw: str) -> int:
    return _whole_number(name, raw, 1, "a positive whole number")


# Ten years: LangSmith keeps audit logs up to 400 days (the audit log's first load reads one
# window a day back that far at most, one request each; the log kept grows older by itself), and
# a count past INT32 made every sync fail in dbt's day arithmetic, naming no variable.
MAX_UNUSED_DAYS = 3_650


def _unused_days(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > MAX_UNUSED_DAYS:
        raise SettingsError(f"{name} must be a number of days from 1 to {MAX_UNUSED_DAYS}, got {shown(raw)}.")
    return value


# An hour: a read timeout or a rate-limit window longer than that is a mistake (milliseconds
# written as seconds, or "never" as 9999999999), and past ~9.2e9 s every request failed in the
# socket layer ("OverflowError: timestamp out of range for platform time_t"), naming no
# variable, while the doctor, which caps its own timeout, said all was well.
MAX_SECONDS = 3_600


def _positive_seconds(name: str, raw: str) -> float:
    """A positive, finite number of seconds up to ``MAX_SECONDS``; a fraction is fine (2.5)."""
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number of seconds (such as 30 or 2.5), got {shown(raw)}.")
    if value > MAX_SECONDS:
        raise SettingsError(
            f"{name} must be a number of seconds from more than 0 to {MAX_SECONDS} (an hour), got "
            f"{shown(raw)}: write it in seconds (30, not 30000)."
        )
    return value


# LangSmith answers at most 1000 requests per 10 s per key on Cloud (langsmith-api.md, "Rate
# limits"), 100 a second: 100 calls in flight keep that busy even at a second per call. More only
# wait on the rate limit, each holding a thread and a connection (and 10000 started 10000 threads).
MAX_CONCURRENCY = 100


def _concurrency(name: str, raw: str) -> int:
    return _whole_number_up_to(
        name, raw, 1, MAX_CONCURRENCY,
        f"LangSmith answers at most 1000 requests per 10 seconds per key, which {MAX_CONCURRENCY} parallel "
        f"calls already keep busy; set it to {MAX_CONCURRENCY} or less, or unset it for the default "
        f"({Settings.max_concurrency})",
        wanted=f"a whole number from 1 to {MAX_CONCURRENCY}")


def _non_negative_int(name: str, raw: str) -> int:
    return _whole_number(name, raw, 0, "a whole number, 0 or more")


def _whole_number_up_to(name: str, raw: str, least: Literal[0, 1], most: int, why: str, *,
                        wanted: str | None = None) -> int:
    """``raw`` as a whole number from ``least`` (0 or 1) to ``most``; ``why`` says why not more,
    ``wanted`` what a value below ``least`` or no number is told it must be (by default, a
    positive whole number, or one of 0 or more)."""
    wanted = wanted or ("a positive whole number" if least == 1 else "a whole number, 0 or more")
    value = _whole_number(name, raw, least, wanted)
    if value > most:
        raise SettingsError(f"{name} must be a whole number from {least} to {most}, got {shown(raw)}: {why}.")
    return value


# Past these a number can only be a mistake, and some broke far from the variable: a
# requests-per-minute of 401 digits overflowed the client's pacer (OverflowError, naming no
# variable). A million a minute is past any install's rate limit (Cloud: ~2000 per key).
MAX_REQUESTS_PER_MINUTE = 1_000_000
MAX_RETRIES = 100
MAX_PROVISIONING_INTERVAL_SECONDS = 86_400


def _requests_per_minute(name: str, raw: str) -> int:
    return _whole_number_up_to(
        name, raw, 1, MAX_REQUESTS_PER_MINUTE,
        "LangSmith Cloud answers about 2000 requests a minute per key; set what your install allows, "
        f"or unset it for the default ({Settings.requests_per_minute})")


def _retries(name: str, raw: str) -> int:
    return _whole_number_up_to(
        name, raw, 0, MAX_RETRIES,
        f"each retry waits longer than the one before; unset it for the default ({Settings.max_retries})")


def _provisioning_interval(name: str, raw: str) -> int:
    return _whole_number_up_to(
        name, raw, 1, MAX_PROVISIONING_INTERVAL_SECONDS,
        "a queued grant would wait longer than a day for its run; write it in seconds (4, the default, "
        "looks on every loop of Dagster's sensor daemon)")


def _webhook_url(name: str, raw: str) -> Secret:
    # The URL is a secret: errors describe it without showing it. ``raw`` comes without the quotes
    # an env file kept around it (``_read``): only quotes is blank, said so (refused as no URL, the
    # message could not say why, as it cannot show the value).
    url = raw
    if not url:  # said so: "not an http(s) URL (not shown)" left nothing to see
        raise SettingsError(
            f"{name} is blank (only spaces or quotes): set it to the receiver's http(s) URL, or unset "
            "it for no notifications."
        )
    try:
        parts = urlsplit(url)
        # .port raises on a port that is no number from 0 to 65535; http.client refuses
        # whitespace and control characters in a URL: refused now, not at every delivery.
        usable = (parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
                  and not any(c.isspace() or not c.isprintable() for c in url))
    except ValueError:  # e.g. a malformed IPv6 host or port; its message would show the URL
        usable = False
    if not usable:
        raise SettingsError(
            f"{name} must be an http(s) URL (such as a Slack incoming-webhook URL); the value set "
            "is not one (not shown: the URL is a secret)."
        )
    return Secret(url)


def _webhook_format(name: str, raw: str, url_variable: str = "LANGSMITH_ACCESS_WEBHOOK_URL") -> str:
    """``raw`` as a webhook format. ``url_variable``: where the webhook's URL belongs, for the
    message when the URL itself was set here (the two settings sit side by side)."""
    value = raw.strip().lower()
    if value not in WEBHOOK_FORMATS:
        # No format has a '/' or a ':': such a value is most likely the webhook's URL, a secret
        # (a Slack URL's token is in its path): refused without being shown.
        if "/" in raw or ":" in raw:
            raise SettingsError(
                f"{name} must be one of {', '.join(WEBHOOK_FORMATS)}, and the value set looks like a URL "
                f"(not shown: a webhook's URL is a secret): the URL belongs in {url_variable} (revoke it "
                "if it was shared)."
            )
        raise SettingsError(f"{name} must be one of {', '.join(WEBHOOK_FORMATS)}, got {shown(raw)}.")
    return value


# Slack's incoming webhooks (https://hooks.slack.com/services/...) take only Slack's own body
# ({"text": ...}) and answer anything else 400; a Slack workflow's webhook (/triggers/...) takes
# any JSON, the payload included.
_SLACK_WEBHOOK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")


def check_webhook_format(url: Secret | None, webhook_format: str, url_name: str, format_name: str,
                         where: str = "") -> None:
    """Refuse a Slack incoming webhook with any format but ``slack``: Slack would refuse every
    notification, each retried from the outbox forever, and nothing said why but its last_error."""
    if url is None or webhook_format == "slack":
        return
    try:
        parts = urlsplit(url.reveal())
        slack = (parts.hostname or "").lower() in _SLACK_WEBHOOK_HOSTS and parts.path.startswith("/services/")
    except ValueError:
        return  # not a URL this can read: its own check says so
    if slack:
        raise SettingsError(
            f"{where}{url_name} is a Slack incoming webhook (https://hooks.slack.com/services/..., the rest not "
            f"shown: it is a secret), which takes only Slack's message body: set {format_name} to slack. "
            f"As {webhook_format}, Slack would refuse every notification."
        )


def _url_compared(url: str) -> tuple[str, str, int | None, str] | None:
    """What makes two URLs the same address: scheme, host and port (the scheme's own when none is
    given), and the path without a trailing '/' or the ``/api/v1`` (``/api``) ``check_endpoint``
    strips; None for what is no URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    path = parts.path.rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if path.lower().endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    return parts.scheme.lower(), (parts.hostname or "").lower(), port, path


def check_webhook_is_not_endpoint(endpoint: str, url: Secret | None, endpoint_name: str, url_name: str,
                                  where: str = "") -> None:
    """Refuse a webhook URL that is the LangSmith endpoint: one pasted into the other's place.
    Every request to LangSmith carries the API key, which would then reach the webhook's receiver
    (a Slack URL set as the endpoint), or every notification would go to LangSmith's API. The
    same address only (a receiver elsewhere on the same host may be deliberate), and neither
    shown: the URL is a webhook's, a secret."""
    if url is None:
        return
    compared = _url_compared(endpoint)
    if compared is None or compared != _url_compared(url.reveal()):
        return
    raise SettingsError(
        f"{where}{url_name} and {endpoint_name} are the same URL (not shown: a webhook's URL is a secret): "
        "LangSmith's API key would be sent to the webhook's receiver, or every notification to LangSmith. "
        f"Set {endpoint_name} to your LangSmith API's URL ({DEFAULT_ENDPOINT} for LangSmith Cloud US) and "
        f"{url_name} to the receiver's (revoke the webhook URL if the key was sent there)."
    )


def _duration(name: str, raw: str) -> timedelta:
    try:
        return parse_duration(raw, name)
    except DurationError as error:  # its message quotes the value as `shown` does: never a pasted key
        raise SettingsError(str(error)) from None


# Each cron field's range and the names it accepts (months, weekdays), as Dagster's schedules
# read them: checked here, so a bad value is a settings error naming the variable, not a
# traceback when the definitions load.
# The longest each month can be (February: in a leap year).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def _cron_field_values(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int] | None:
    """The values one field of a cron selects, or None when it is out of range or malformed."""
    def value(part: str) -> int | None:
        if part.lower() in names:
            return names.index(part.lower()) + (1 if low == 1 else 0)
        return int(part) if part.isdigit() else None

    selected: set[int] = set()
    for item in text.split(","):
        span, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return None
        if span == "*" or (span == "?" and low == 1):  # '?' only for a day (Dagster's rule)
            first, last = low, high
        else:
            start, _, end = span.partition("-")
            bounds = [value(start)] + ([value(end)] if end else [])
            if any(bound is None or not low <= bound <= high for bound in bounds):
                return None
            first = bounds[0] or 0  # (never None here: checked above)
            last = (bounds[1] or 0) if end else (high if step else first)
        # A range may wrap (22-2): from its first value to the field's end, then on from its start.
        values = list(range(first, last + 1)) if first <= last else [*range(first, high + 1), *range(low, last + 1)]
        selected.update(values[::int(step) if step else 1])
    return selected


# The shorthands Dagster's schedules accept besides five fields.
_CRON_SHORTHANDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")


# The five fields each shorthand stands for.
_CRON_SHORTHAND_FIELDS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}


def cron_field_values(cron: str) -> tuple[list[set[int]], list[str]] | None:
    """The values each of a cron's five fields selects (minute, hour, day of month, month,
    weekday with Sunday 0 or 7), and the fields as written (a shorthand as its five); None when
    ``cron`` is not a schedule ``_cron`` accepts."""
    written = _CRON_SHORTHAND_FIELDS.get(cron.strip().lower(), " ".join(cron.split())).split(" ")
    if len(written) != 5:
        return None
    values = [_cron_field_values(field, low, high, names)
              for field, (_, low, high, names) in zip(written, _CRON_FIELDS, strict=True)]
    if any(value is None for value in values):
        return None
    return [value for value in values if value is not None], written


def _cron(name: str, raw: str) -> str:
    """A cron schedule of five fields (minute hour day-of-month month day-of-week), or one of
    Dagster's shorthands such as ``@hourly``."""
    value = " ".join(raw.split())
    if value.lower() in _CRON_SHORTHANDS:
        return value.lower()
    fields = value.split(" ")
    selected = [_cron_field_values(field, low, high, names)
                for field, (_, low, high, names) in zip(fields, _CRON_FIELDS, strict=False)]
    bad = [what for values, (what, _, _, _) in zip(selected, _CRON_FIELDS, strict=False) if values is None]
    if len(fields) != 5 or bad:
        where = f" ({', '.join(bad)} out of range or malformed)" if len(fields) == 5 else ""
        raise SettingsError(
            f"{name} must be a cron schedule of five fields (minute hour day month weekday), "
            f"like '30 * * * *' (hourly at minute 30), got {shown(raw)}{where}."
        )
    days, months = selected[2], selected[3]
    if days is not None and months is not None \
            and not any(day <= _MONTH_DAYS[month - 1] for day in days for month in months):
        # Five valid fields can still name a date that never comes: Dagster then fails to load
        # the schedule, or never runs it, whatever weekday is given beside it.
        raise SettingsError(
            f"{name} never fires: {shown(raw)} names a day no month has (like 30 February or 31 "
            "April); pick a day that exists, like '0 0 28 2 *'."
        )
    return value


def _share(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be a share between 0 and 1 (0.2 = 20%), got {shown(raw)}.")
    return value


# (Settings field, environment variable, how to read its text). Unset or empty: the default.
ENVIRONMENT: tuple[tuple[str, str, Callable[[str, str], object]], ...] = (
    ("endpoint", "LANGSMITH_ENDPOINT", _endpoint),
    ("duckdb_path", "LANGSMITH_ACCESS_DUCKDB", _database_path),
    ("api_key", "LANGSMITH_API_KEY", _secret),
    ("organization_id", "LANGSMITH_ORGANIZATION_ID", _organization_id),
    ("requests_per_minute", "LANGSMITH_ACCESS_REQUESTS_PER_MINUTE", _requests_per_minute),
    ("max_concurrency", "LANGSMITH_ACCESS_MAX_CONCURRENCY", _concurrency),
    ("read_timeout_seconds", "LANGSMITH_ACCESS_TIMEOUT_SECONDS", _positive_seconds),
    ("max_retries", "LANGSMITH_ACCESS_MAX_RETRIES", _retries),
    ("rate_limit_window_seconds", "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS", _positive_seconds),
    ("sync_cron", "LANGSMITH_ACCESS_SYNC_CRON", _cron),
    ("inventory_cron", "LANGSMITH_ACCESS_INVENTORY_CRON", _cron),
    ("max_shrink_share", "LANGSMITH_ACCESS_MAX_SHRINK_SHARE", _share),
    ("unused_days", "LANGSMITH_ACCESS_UNUSED_DAYS", _unused_days),
    ("provisioning_interval_seconds", "LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", _provisioning_interval),
    ("policy_path", "LANGSMITH_ACCESS_POLICY", _path),
    ("webhook_url", "LANGSMITH_ACCESS_WEBHOOK_URL", _webhook_url),
    ("webhook_format", "LANGSMITH_ACCESS_WEBHOOK_FORMAT", _webhook_format),
    ("expiry_warning", "LANGSMITH_ACCESS_EXPIRY_WARNING", _duration),
)

# Read where the variable is unset, as LangChain's SDKs do: an EU org whose shell sets only
# LANGCHAIN_ENDPOINT must not be sent to the US. Not the key: LANGCHAIN_API_KEY is usually a
# tracing key (a personal token or a workspace key), which this project cannot use.
FALLBACK_VARIABLES = {"LANGSMITH_ENDPOINT": "LANGCHAIN_ENDPOINT"}


def single_org_endpoint_variable(environ: Mapping[str, str] | None = None) -> str:
    """The variable the single-org endpoint is read from (as ``Settings.from_env`` reads it):
    LANGSMITH_ENDPOINT, or its fallback where it is unset or empty and the fallback is set."""
    env = os.environ if environ is None else environ
    fallback = FALLBACK_VARIABLES["LANGSMITH_ENDPOINT"]
    if env.get(ORGS_FILE_VARIABLE):  # each org's endpoint is its entry's: neither variable is read
        return "LANGSMITH_ENDPOINT"
    return fallback if not env.get("LANGSMITH_ENDPOINT") and env.get(fallback) else "LANGSMITH_ENDPOINT"


# ---------------------------------------------------------------- organizations (DESIGN.md section 11)

ORGS_FILE_VARIABLE = "LANGSMITH_ACCESS_ORGS_FILE"
# What each entry of the orgs file gives its org (endpoint, key, org id): with the file, the
# single-org variables of these are not read, so a stale or wrong one stops nothing.
ORG_OWN_FIELDS = ("endpoint", "api_key", "organization_id")
POLICY_VARIABLE = "LANGSMITH_ACCESS_POLICY"
# Where notifications are POSTed, unless an org of the orgs file names its own (webhook_url_env).
WEBHOOK_URL_VARIABLE = "LANGSMITH_ACCESS_WEBHOOK_URL"
SINGLE_ORG_KEY_VARIABLE = "LANGSMITH_API_KEY"
# A slug is the Dagster partition key and the name of the org's database folder: short, lowercase,
# nothing a path could misread.
ORG_SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
ORG_DATABASE_FILE = "langsmith_access.duckdb"
# The keys of one entry of the orgs file; all but ``ORG_ENTRY_OPTIONAL_KEYS`` are required.
ORG_ENTRY_KEYS = ("slug", "organization_id", "endpoint", "api_key_env", "policy", "webhook_url_env", "webhook_format")
# An org's own policy file, and its own webhook (the name of the variable holding its URL, and
# its format): without them, LANGSMITH_ACCESS_POLICY and LANGSMITH_ACCESS_WEBHOOK_URL/_FORMAT.
ORG_ENTRY_OPTIONAL_KEYS = ("policy", "webhook_url_env", "webhook_format")
# What looks like an API key inside a text (mask_keys): a prefix and the characters of a key,
# and the stars of an earlier mask (a message masked again stays lsv2_***, not lsv2_******).
_KEY_LIKE = re.compile(f"({'|'.join(map(re.escape, KEY_PREFIXES))}){NOT_A_KEY_SHAPE}[A-Za-z0-9_\\-]*(?:\\*\\*\\*)?")
# A key, or a fragment of one long enough to matter (a server can quote part of a key it was
# sent): a prefix and at least 12 more characters. "lsv2_sk_..." in the product's own help
# text is shorter and stays.
_KEY_FRAGMENT = re.compile(f"({'|'.join(map(re.escape, KEY_PREFIXES))})[A-Za-z0-9_\\-]{{12,}}")
# A service key or a personal token as LangSmith shows it: its prefix and at least 12 more characters.
_SERVICE_KEY_OR_TOKEN = re.compile(r"lsv2_(?:sk|pt)_[A-Za-z0-9_\-]{12,}")
# user:password@ in a URL (up to the authority's last '@', as urllib reads it: a password may
# hold one), and a URL's query string (where tokens travel).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]+@")
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*)\?[^\s#]*")
# What follows a key's prefix: letters, digits, '_' (and '-', which no key has shown yet but
# costs nothing to allow).
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9_\-]+")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ORGS_FILE_EXAMPLE = (
    "- slug: us\n"
    "  organization_id: 00000000-0000-4000-8000-000000000001\n"
    "  endpoint: https://api.smith.langchain.com\n"
    "  api_key_env: LANGSMITH_API_KEY_US"
)


# The single-org variables an org's own settings stand in for, as messages name them (whole
# names only: LANGSMITH_API_KEY_US is already an org's own).
_SINGLE_ORG_NAMES = re.compile(r"\bLANGSMITH_(API_KEY|ENDPOINT|ORGANIZATION_ID)\b")
# The commands that take --org, as messages suggest them ("run `langsmith-access sync`"): with
# several orgs configured, a suggestion without --org would act on no org, or on another.
_ORG_COMMANDS = re.compile(
    r"\blangsmith-access (request (?:grant|revoke)|review (?:export|queue-revokes)|requests|sync|provision"
    r"|approve|deny|doctor|access-at|export)\b(?! --org)"
)


@dataclass(frozen=True)
class Org:
    """One LangSmith organization served here: its slug (the Dagster partition key and the folder
    of its database) and the ``Settings`` that reach it (its endpoint, key, org id and database
    over the shared settings). Everything that takes a ``Settings`` works for one org given
    ``org.settings``. The key stays a ``Secret`` inside ``settings``: no repr shows it."""

    slug: str
    settings: Settings
    # The name of the variable the key was read from (never the key): for messages.
    api_key_env: str = SINGLE_ORG_KEY_VARIABLE
    # This org's access policy file (section 10); None: no policy.
    policy_path: Path | None = None
    # The orgs file this org comes from; None: the single-org variables.
    orgs_file: Path | None = None
    # Why this org has no usable key (its variable unset, or not a service key), when it was
    # loaded with load_orgs(refuse_unusable_keys=False); None otherwise. client() raises it.
    key_problem: str | None = None
    # Why the webhook its entry names (webhook_url_env) cannot be used (the variable unset, or not
    # a URL), when loaded so: its notifications are still queued, and wait until it is fixed.
    webhook_problem: str | None = None
    # The name of the variable its entry's webhook_url_env names (never the URL); None: the
    # shared LANGSMITH_ACCESS_WEBHOOK_URL, if any. For messages.
    webhook_url_env: str | None = None

    @property
    def notifies(self) -> bool:
        """Whether events are queued for a webhook: one is set, or its own is named but cannot
        be used yet (``webhook_problem``)."""
        return self.settings.webhook_url is not None or self.webhook_problem is not None

    @property
    def organization_id(self) -> str | None:
        return self.settings.organization_id

    def client(self) -> ClientSettings:
        """``settings.client()``: how to reach this org's API; raises ``SettingsError`` naming
        what is missing (``key_problem``, when the org was loaded without a usable key)."""
        if self.key_problem:
            raise SettingsError(self.key_problem)
        return self.settings.client()

    def in_its_own_terms(self, text: str) -> str:
        """``text`` (an error or its fix, written for the single-org variables) naming where
        this org's settings really come from: its key variable (``api_key_env``), and its
        entry's ``endpoint`` / ``organization_id`` in the orgs file; the commands it suggests
        get ``--org`` with this org's slug. Unchanged for the default org, whose settings are
        those variables."""
        if self.orgs_file is None:
            return text

        def own_name(match: re.Match) -> str:
            if match.group(1) == "API_KEY":
                return self.api_key_env
            field = "endpoint" if match.group(1) == "ENDPOINT" else "organization_id"
            return f"the {field} of org {self.slug!r} in {self.orgs_file}"

        text = _SINGLE_ORG_NAMES.sub(own_name, text)
        return _ORG_COMMANDS.sub(lambda match: f"{match.group(0)} --org {self.slug}", text)

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    @property
    def duckdb_path(self) -> Path:
        return self.settings.duckdb_path

    @property
    def orgs_root(self) -> Path | None:
        """With an orgs file, the directory that holds every org's folder; None otherwise."""
        return self.duckdb_path.parent.parent if self.orgs_file is not None else None


@dataclass(frozen=True)
class Orgs:
    """Every org this deployment serves, in the order configured; ``source`` is the orgs file
    they came from (None: the single-org variables)."""

    orgs: tuple[Org, ...]
    source: Path | None = None
    # With an orgs file: LANGSMITH_ACCESS_DUCKDB itself, the database the single-org variables
    # used (its directory holds the org folders), which an org moved into the file may leave behind.
    single_org_duckdb_path: Path | None = None

    def __iter__(self) -> Iterator[Org]:
        return iter(self.orgs)

    def __len__(self) -> int:
        return len(self.orgs)

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(org.slug for org in self.orgs)

    def get(self, slug: str | None = None) -> Org:
        """The org of ``slug``; without one, the only org (an error when there are several)."""
        known = ", ".join(self.slugs)
        where = f"the orgs file {self.source}" if self.source else "the single-org variables"
        if slug is None:
            if len(self.orgs) == 1:
                return self.orgs[0]
            raise SettingsError(
                f"{len(self.orgs)} orgs are configured in {where} ({known}): name one with --org SLUG "
                f"(from Python: org={self.slugs[0]!r})."
            )
        for org in self.orgs:
            if org.slug == slug:
                return org
        raise SettingsError(f"Unknown org {shown(slug)}: the orgs configured in {where} are {known}.")


def load_orgs(environ: Mapping[str, str] | None = None, *, refuse_unusable_keys: bool = True) -> Orgs:
    """The orgs to serve: those of ``LANGSMITH_ACCESS_ORGS_FILE`` when it is set, else one org,
    slug ``default``, from the single-org variables exactly as ``Settings.from_env`` reads them.

    An orgs file is checked whole before anything uses it: every refusal raises ``SettingsError``
    naming the file, the entry and the fix, and never shows a key. ``refuse_unusable_keys=False``
    (the Dagster definitions, ``defs.orgs.deployment_orgs``): an entry whose key variable is unset
    or holds no service key is still an org, without a key; its ``key_problem`` says why, and
    ``Org.client()`` raises that, so one org's missing key stops only that org's runs. The single
    org of the variables gets its ``key_problem`` alike, where they cannot reach the API. An
    entry's own webhook variable (``webhook_url_env``) unset or not a URL is its
    ``webhook_problem`` so, its notifications queued and waiting."""
    env = os.environ if environ is None else environ
    shared = Settings.from_env(env)
    default_policy = shared.policy_path  # read as the variables are: without the spaces around it
    if not env.get(ORGS_FILE_VARIABLE):
        key_problem = None
        if not refuse_unusable_keys:  # (the CLI says so when a command needs the API)
            try:
                shared.client()
            except SettingsError as problem:
                key_problem = str(problem)
        return Orgs((Org(DEFAULT_ORG_SLUG, shared, SINGLE_ORG_KEY_VARIABLE, default_policy, key_problem=key_problem),))
    path = Path(_path_text(ORGS_FILE_VARIABLE, env[ORGS_FILE_VARIABLE]))
    return Orgs(_read_orgs_file(path, shared, env, default_policy, refuse_unusable_keys), source=path,
                single_org_duckdb_path=shared.duckdb_path)


def org_database_path(shared_duckdb_path: Path, slug: str) -> Path:
    """An org's database when an orgs file is used: ``<dir of LANGSMITH_ACCESS_DUCKDB>/<slug>/``."""
    return shared_duckdb_path.parent / slug / ORG_DATABASE_FILE


def _read_orgs_file(
    path: Path, shared: Settings, env: Mapping[str, str], default_policy: Path | None,
    refuse_unusable_keys: bool = True,
) -> tuple[Org, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(
            # A key set in the variable by mistake is not repeated.
            f"{ORGS_FILE_VARIABLE} names {named(str(path))}, which "
            f"cannot be read ({error.strerror}): point it at the YAML list of your orgs, or unset it "
            "to use the single-org variables."
        ) from None
    except UnicodeDecodeError as error:
        raise SettingsError(
            f"The orgs file {path} is not UTF-8 text (byte {error.start + 1} is not): save it as "
            "UTF-8, a YAML list of your orgs."
        ) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        own_keys = _own_keys(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        # Only the position and the problem (a key in it masked: an undefined alias or an unknown
        # tag is quoted there): the parser's excerpt of the line could show a key someone pasted
        # into the file.
        mark = error.problem_mark
        position = ("somewhere" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
                    if yaml_line(mark, text) == mark.line + 1 else f"the end of the file, line {yaml_line(mark, text)}")
        raise SettingsError(
            f"The orgs file {path} is not valid YAML ({position}: {mask_keys(str(error.problem))}). "
            f"Fix the file: it must be a YAML list of orgs, like\n{_ORGS_FILE_EXAMPLE}"
        ) from None
    except yaml.YAMLError:
        raise SettingsError(f"The orgs file {path} is not valid YAML: fix the file.") from None
    finally:
        loader.dispose()
    if not isinstance(data, list) or not data:
        raise SettingsError(
            f"The orgs file {path} must be a non-empty YAML list of orgs, one entry per org, like\n"
            f"{_ORGS_FILE_EXAMPLE}"
        )
    assert isinstance(root, yaml.SequenceNode)
    orgs: list[Org] = []
    seen: dict[str, tuple[str, str]] = {}  # org id -> (endpoint, slug)
    for number, (entry, node, names) in enumerate(zip(data, root.value, own_keys, strict=True), start=1):
        where = f"The orgs file {path}, entry {number} (line {node.start_mark.line + 1})"
        org = _read_org_entry(entry, names, where, path, shared, env, default_policy, refuse_unusable_keys)
        for earlier in orgs:
            if earlier.slug == org.slug:
                raise SettingsError(
                    f"{where}: slug {org.slug!r} is already used by an earlier entry: give each org its "
                    "own slug (it names the org's database folder and its Dagster partition)."
                )
        # An organization's id is a random UUID: the same id is the same org, whatever URL
        # reaches it (a proxy, localhost for 127.0.0.1), and two entries would provision it
        # from two queues that one org's run limit cannot keep apart.
        earlier_org = seen.get(org.organization_id or "")
        if earlier_org is not None:
            earlier_endpoint, earlier_slug = earlier_org
            where_else = ("on the same endpoint" if earlier_endpoint == org.endpoint
                          else f"reached through another endpoint ({org.endpoint}, {earlier_slug!r} at "
                               f"{earlier_endpoint})")
            raise SettingsError(
                f"{where}: org {org.slug!r} is the same organization (organization_id "
                f"{org.organization_id}) as {earlier_slug!r}, {where_else}: list each org once "
                "(two entries would sync it twice, into two databases, and provision it from two queues)."
            )
        # A service key belongs to one organization: under two orgs' entries, it is the wrong
        # key for one of them, whose every run would fail (or read the other org, were the id
        # a mistake too).
        sharing = next((earlier.slug for earlier in orgs if earlier.api_key_env == org.api_key_env), None)
        if sharing is not None:
            raise SettingsError(
                f"{where}: org {org.slug!r} names api_key_env {org.api_key_env}, the key variable of "
                f"{sharing!r} too: a service key belongs to one organization, so give each org its own "
                f"variable (like LANGSMITH_API_KEY_{org.slug.upper().replace('-', '_')}) holding that "
                "org's organization-scoped service key."
            )
        if org.organization_id:
            seen[org.organization_id] = (org.endpoint, org.slug)
        orgs.append(org)
    return tuple(orgs)


def _own_keys(root: yaml.Node | None) -> list[list[str]]:
    """Each entry's own keys, before construction merges in those of a YAML merge key
    (``<<: *base``), which the entry's own may override: only its own can repeat."""
    if not isinstance(root, yaml.SequenceNode):
        return []
    return [
        [str(key.value) for key, _ in item.value if key.tag != "tag:yaml.org,2002:merge"]
        if isinstance(item, yaml.MappingNode) else []
        for item in root.value
    ]


def _read_org_entry(
    entry: object,
    names: list[str],
    where: str,
    path: Path,
    shared: Settings,
    env: Mapping[str, str],
    default_policy: Path | None,
    refuse_unusable_keys: bool = True,
) -> Org:
    if not isinstance(entry, dict):
        raise SettingsError(
            f"{where} must be a mapping with the keys {', '.join(ORG_ENTRY_KEYS)}, like\n{_ORGS_FILE_EXAMPLE}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        given_twice = ", ".join(named(name) for name in repeated)
        raise SettingsError(f"{where} gives {given_twice} more than once: keep one of each.")
    # At the start of a value, or a whole key anywhere in one (``api_key_env:
    # LANGSMITH_API_KEY_US=lsv2_sk_...``, a line copied from an env file) or in a key's name
    # (``lsv2_sk_...: 1``); a path that merely contains ``ls__`` is not one.
    pasted = [shown(str(name)) if _pasted_key(str(name)) else str(name) for name, value in entry.items()
              if _pasted_key(str(name)) or (isinstance(value, str) and _pasted_key(value))]
    if pasted:
        # Someone pasted a key into the file: say where, never what.
        raise SettingsError(
            f"{where}: {', '.join(pasted)} holds what looks like an API key. A key never goes in this "
            "file: remove it (and revoke it if the file was shared), put it in a variable such as "
            "LANGSMITH_API_KEY_<SLUG>, and name that variable in api_key_env."
        )
    unknown = [str(name) for name in entry if name not in ORG_ENTRY_KEYS]
    if unknown:
        raise SettingsError(
            f"{where} has unknown keys {', '.join(map(shown, unknown))}: the keys of an entry are "
            f"{', '.join(ORG_ENTRY_KEYS)} ({', '.join(ORG_ENTRY_OPTIONAL_KEYS)} optional). An org's API key "
            "never goes in this file: it stays in a variable, which api_key_env names."
        )
    required = [name for name in ORG_ENTRY_KEYS if name not in ORG_ENTRY_OPTIONAL_KEYS]
    missing = [name for name in required if entry.get(name) in (None, "")]
    if missing:
        raise SettingsError(f"{where} lacks {', '.join(missing)}: every entry needs {', '.join(required)}.")
    not_text = [name for name, value in entry.items() if value is not None and not isinstance(value, str)]
    if not_text:
        raise SettingsError(f"{where}: {', '.join(not_text)} must be text: put the value in quotes.")

    slug = entry["slug"]
    if "/" in slug or "\\" in slug or ".." in slug:
        raise SettingsError(
            f"{where}: slug {slug!r} has path characters: a slug names the org's database folder, so "
            "it is lowercase letters, digits, '-' and '_' only (like 'us' or 'eu-prod')."
        )
    if not ORG_SLUG_PATTERN.fullmatch(slug):
        raise SettingsError(
            f"{where}: slug {slug!r} must match {ORG_SLUG_PATTERN.pattern}: 1 to 32 lowercase letters, "
            "digits, '-' or '_', starting with a letter or digit (like 'us' or 'eu-prod')."
        )
    # The folders a single-org database keeps beside its file (logs/, <stem>_parquet/,
    # <stem>_docs/) share the directory the org folders go in: an org there would be written
    # into, or replaced by, a publish of the database the orgs file replaced.
    stem = shared.duckdb_path.stem
    if slug in ("logs", f"{stem}_parquet", f"{stem}_docs"):
        raise SettingsError(
            f"{where}: slug {slug!r} is the name of a folder a single-org database keeps beside "
            f"{shared.duckdb_path.name} in {shared.duckdb_path.parent}, where each org's folder goes: "
            "choose another slug (like 'us' or 'eu-prod')."
        )
    where = f"{where}, slug {slug!r}"
    organization_id = check_organization_id(entry["organization_id"], name=f"{where}: organization_id")
    endpoint = check_endpoint(entry["endpoint"], name=f"{where}: endpoint")

    variable = entry["api_key_env"]
    if not _VARIABLE_NAME.fullmatch(variable):
        raise SettingsError(
            f"{where}: api_key_env must be the name of an environment variable (letters, digits and "
            f"'_', like LANGSMITH_API_KEY_{slug.upper().replace('-', '_')}), got {shown(variable)}."
        )
    api_key = _unquoted(env.get(variable) or "") or None  # as _secret: the edges' spaces and quotes are not the key's
    key_problem = None
    try:
        if not api_key:
            raise SettingsError(
                f"{where}: the variable {variable} named by api_key_env is not set: set it to this "
                "org's organization-scoped service key (lsv2_sk_...) in the environment of every "
                "process that syncs or provisions."
            )
        check_api_key(api_key, name=f"{variable} (the key of org {slug!r} in {path})")
    except SettingsError as problem:
        if refuse_unusable_keys:
            raise
        key_problem = str(problem)

    # Without the spaces or quotes around it (read as typed, " eu.yaml" named a file nobody
    # wrote, and the org's requests were refused for a missing policy); blank: no policy of its own.
    policy = _unquoted(entry.get("policy") or "")
    if policy:
        # Relative to the orgs file, so the file and its policies can move together.
        # "~/..." is under the home directory, as in the path variables.
        written = Path(policy).expanduser()
        policy_path: Path | None = written if written.is_absolute() else path.parent / written
    else:
        policy_path = default_policy
    settings = replace(
        shared,
        endpoint=endpoint,
        api_key=Secret(api_key) if api_key and key_problem is None else None,
        organization_id=organization_id,
        duckdb_path=org_database_path(shared.duckdb_path, slug),
    )
    settings, webhook_problem = _own_webhook(settings, entry, where, slug, env, refuse_unusable_keys)
    # Refused even for a deployment (not an org's webhook_problem): the endpoint is wrong as
    # often as the webhook, and syncs would send the key there.
    own_variable = _unquoted(entry.get("webhook_url_env") or "")
    check_webhook_is_not_endpoint(
        settings.endpoint, settings.webhook_url, "endpoint",
        f"the variable {own_variable} named by webhook_url_env" if own_variable
        else "the shared webhook, LANGSMITH_ACCESS_WEBHOOK_URL,", f"{where}: ")
    return Org(slug, settings, variable, policy_path, orgs_file=path, key_problem=key_problem,
               webhook_problem=webhook_problem, webhook_url_env=own_variable or None)


def _own_webhook(settings: Settings, entry: Mapping[str, Any], where: str, slug: str, env: Mapping[str, str],
                 refuse_unusable: bool) -> tuple[Settings, str | None]:
    """``settings`` with the entry's own webhook (unchanged without one): the URL from the
    variable ``webhook_url_env`` names (a secret, like the key: never in the file), and
    ``webhook_format``; and the org's ``webhook_problem``. A variable unset or not a URL is
    refused like an unusable key; loaded for a deployment, it is the problem instead, and the
    shared webhook is not used (its notifications would reach another org's receiver)."""
    own: dict[str, Any] = {}
    written_format = _unquoted(entry.get("webhook_format") or "")
    if written_format:
        own["webhook_format"] = _webhook_format(f"{where}: webhook_format", written_format,
                                                "the variable webhook_url_env names")
    variable = _unquoted(entry.get("webhook_url_env") or "")
    if not variable:
        # The shared webhook, in this entry's own format: refused where Slack would refuse it.
        check_webhook_format(settings.webhook_url, own.get("webhook_format", settings.webhook_format),
                             "the shared webhook, LANGSMITH_ACCESS_WEBHOOK_URL,", "its webhook_format", f"{where}: ")
        return replace(settings, **own), None
    if not _VARIABLE_NAME.fullmatch(variable):
        # Not shown: the value typed here is most likely the URL itself, a secret.
        raise SettingsError(
            f"{where}: webhook_url_env must be the name of an environment variable (letters, digits and "
            f"'_', like LANGSMITH_ACCESS_WEBHOOK_URL_{slug.upper().replace('-', '_')}), and the value "
            "given is not one (not shown: if it is the webhook's URL, it is a secret that never goes in "
            "this file; put it in that variable, and revoke it if the file was shared)."
        )
    own["webhook_url"] = None
    problem = None
    try:
        url = _unquoted(env.get(variable) or "")
        if not url:
            raise SettingsError(
                f"{where}: the variable {variable} named by webhook_url_env is not set: set it to this "
                "org's webhook URL in the environment of every process that serves the org, or remove "
                "webhook_url_env from the entry to use LANGSMITH_ACCESS_WEBHOOK_URL."
            )
        usable = _webhook_url(f"{where}: the variable {variable} named by webhook_url_env", url)
        check_webhook_format(usable, own.get("webhook_format", settings.webhook_format),
                             f"the variable {variable} named by webhook_url_env", "its webhook_format", f"{where}: ")
        own["webhook_url"] = usable
    except SettingsError as unusable:
        if refuse_unusable:
            raise
        problem = f"{unusable} Its notifications wait until then."
    return replace(settings, **own), problem
