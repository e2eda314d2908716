"""The one place that reads configuration (DESIGN.md section 1).

Everything else receives a ``Settings`` (or the pieces of it it needs); nothing else reads
``os.environ``. The API key is wrapped in ``Secret`` so that printing, logging or formatting a
settings object can never show it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from langsmith_access.governance.durations import DurationError, parse_duration

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


def check_api_key(api_key: str) -> None:
    """Refuse keys this project cannot use, before any request is sent."""
    if not api_key or not api_key.strip():
        raise SettingsError(
            "LANGSMITH_API_KEY is empty: set it to an organization-scoped service key (lsv2_sk_...)."
        )
    if api_key.startswith(PERSONAL_TOKEN_PREFIX):
        raise SettingsError(
            "LANGSMITH_API_KEY is a personal access token (lsv2_pt_...). langsmith-access needs an "
            "organization-scoped service key (lsv2_sk_...): create one under Settings > API Keys "
            "> Service Keys with organization scope, then set LANGSMITH_API_KEY to it."
        )
    if not api_key.startswith(SERVICE_KEY_PREFIX):
        raise SettingsError(
            "LANGSMITH_API_KEY does not look like a LangSmith service key: it must start with "
            "'lsv2_sk_' (an organization-scoped service key)."
        )
    if any(ch.isspace() for ch in api_key):
        raise SettingsError("LANGSMITH_API_KEY contains whitespace: paste the key without spaces.")


def check_organization_id(organization_id: str) -> str:
    """Return the org id in canonical UUID form, or explain what is wrong with it."""
    try:
        return str(uuid.UUID(organization_id.strip()))
    except (ValueError, AttributeError):
        shown = organization_id if len(organization_id or "") <= 64 else organization_id[:64] + "…"
        raise SettingsError(
            f"LANGSMITH_ORGANIZATION_ID must be the organization's UUID "
            f"(like 00000000-0000-4000-8000-000000000001), got {shown!r}. Find it in LangSmith "
            "under Settings > Organization."
        ) from None


def check_endpoint(endpoint: str) -> str:
    """The API's origin (scheme, host, port and any basePath) from ``LANGSMITH_ENDPOINT`` as
    users write it.

    LangSmith's own docs tell self-hosted users to set ``https://<host>/api/v1`` (or
    ``https://<host>/api``) and Cloud users the bare host or the host with ``/api/v1``; every
    request path here starts with ``/api/v1``. So, as LangChain's Go SDK and Terraform provider
    do: trim spaces, quotes and trailing ``/``, then strip one trailing ``/api/v1`` or ``/api``
    (a bare ``/v1`` stays: it may be part of a basePath).
    """
    raw = endpoint
    endpoint = endpoint.strip().strip("'\"").strip().rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if endpoint.lower().endswith(suffix):
            endpoint = endpoint[: -len(suffix)].rstrip("/")
            break
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"LANGSMITH_ENDPOINT must be an http(s) URL such as {DEFAULT_ENDPOINT} (US), "
            f"https://eu.api.smith.langchain.com (EU) or https://<your-host>/api/v1 (self-hosted), "
            f"got {raw!r}."
        )
    if parts.query or parts.fragment:
        raise SettingsError(
            f"LANGSMITH_ENDPOINT must be the API's base URL without a query or fragment "
            f"(like {DEFAULT_ENDPOINT}), got {raw!r}."
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise SettingsError(f"LANGSMITH_ENDPOINT has an invalid port: {raw!r}.") from None
    return endpoint


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
    max_shrink_share: float = 0.2
    provisioning_interval_seconds: int = 30
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
        env = os.environ if environ is None else environ
        # Field name -> its value, of the type ENVIRONMENT's parser for that field returns (a
        # correspondence mypy cannot follow through the table; the dataclass names each field).
        values: dict[str, Any] = {}
        for name, variable, parse in ENVIRONMENT:
            raw = env.get(variable)
            if raw:  # unset or empty: the default
                values[name] = parse(variable, raw)
        return cls(**values)

    def client(self) -> ClientSettings:
        """Settings for the API client; raises ``SettingsError`` if the API is not configured."""
        if self.api_key is None:
            raise SettingsError(
                "LANGSMITH_API_KEY is not set: set it to an organization-scoped service key (lsv2_sk_...)."
            )
        check_api_key(self.api_key.reveal())
        if not self.organization_id:
            raise SettingsError(
                "LANGSMITH_ORGANIZATION_ID is not set: set it to your organization's UUID."
            )
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
    if env.get("LANGSMITH_ACCESS_CACHE_DIR"):
        return Path(env["LANGSMITH_ACCESS_CACHE_DIR"]).expanduser().absolute()
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


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _secret(name: str, raw: str) -> Secret:
    return Secret(raw)


def _endpoint(name: str, raw: str) -> str:
    return check_endpoint(raw)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive whole number, got {raw!r}.") from None
    if value <= 0:
        raise SettingsError(f"{name} must be a positive whole number, got {raw!r}.")
    return value


def _positive_seconds(name: str, raw: str) -> float:
    return float(_positive_int(name, raw))


def _non_negative_int(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise SettingsError(f"{name} must be a whole number, 0 or more, got {raw!r}.")
    return int(raw)


def _webhook_url(name: str, raw: str) -> Secret:
    # The URL is a secret: errors describe it without showing it.
    try:
        parts = urlsplit(raw.strip())
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host; its message would show the URL
        usable = False
    if not usable:
        raise SettingsError(
            f"{name} must be an http(s) URL (such as a Slack incoming-webhook URL); the value set "
            "is not one (not shown: the URL is a secret)."
        )
    return Secret(raw.strip())


def _webhook_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in WEBHOOK_FORMATS:
        raise SettingsError(f"{name} must be one of {', '.join(WEBHOOK_FORMATS)}, got {raw!r}.")
    return value


def _duration(name: str, raw: str) -> timedelta:
    try:
        return parse_duration(raw, name)
    except DurationError as error:
        raise SettingsError(str(error)) from None


def _share(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be a share between 0 and 1 (0.2 = 20%), got {raw!r}.")
    return value


# (Settings field, environment variable, how to read its text). Unset or empty: the default.
ENVIRONMENT: tuple[tuple[str, str, Callable[[str, str], object]], ...] = (
    ("endpoint", "LANGSMITH_ENDPOINT", _endpoint),
    ("duckdb_path", "LANGSMITH_ACCESS_DUCKDB", _path),
    ("api_key", "LANGSMITH_API_KEY", _secret),
    ("organization_id", "LANGSMITH_ORGANIZATION_ID", _text),
    ("requests_per_minute", "LANGSMITH_ACCESS_REQUESTS_PER_MINUTE", _positive_int),
    ("max_concurrency", "LANGSMITH_ACCESS_MAX_CONCURRENCY", _positive_int),
    ("read_timeout_seconds", "LANGSMITH_ACCESS_TIMEOUT_SECONDS", _positive_seconds),
    ("max_retries", "LANGSMITH_ACCESS_MAX_RETRIES", _non_negative_int),
    ("rate_limit_window_seconds", "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS", _positive_seconds),
    ("sync_cron", "LANGSMITH_ACCESS_SYNC_CRON", _text),
    ("max_shrink_share", "LANGSMITH_ACCESS_MAX_SHRINK_SHARE", _share),
    ("provisioning_interval_seconds", "LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", _positive_int),
    ("policy_path", "LANGSMITH_ACCESS_POLICY", _path),
    ("webhook_url", "LANGSMITH_ACCESS_WEBHOOK_URL", _webhook_url),
    ("webhook_format", "LANGSMITH_ACCESS_WEBHOOK_FORMAT", _webhook_format),
    ("expiry_warning", "LANGSMITH_ACCESS_EXPIRY_WARNING", _duration),
)
