"""The connection doctor: "will this work, and if not, what do I fix?" (DESIGN.md section 8).

Nine checks, in order, with read-only calls only; each ends ``ok``, ``warn``, ``fail`` or
``skip`` (not run because an earlier check it needs failed), with a detail and, for warn and
fail, a one-line fix. Plain Python: the CLI (``langsmith-access doctor``) and the op job
``check_langsmith_connection`` both call ``run_checks``. The API key is never shown.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from langsmith_access.governance.policy import PolicyError, load_policy
from langsmith_access.langsmith import (
    ConnectionFailedError,
    EndpointRedirectError,
    LangSmithClient,
    LangSmithError,
    NotFoundError,
    NotLangSmithAPIError,
    PermissionDeniedError,
    ProxyRefusalError,
    Role,
    TransientError,
    UnexpectedResponseError,
    Workspace,
)
from langsmith_access.langsmith.client import (
    MAX_RETRY_AFTER_SECONDS,
    ORGANIZATION_INFO_PATH,
)
from langsmith_access.langsmith.errors import one_line
from langsmith_access.langsmith.refusals import MANAGE_MEMBERS, WORKSPACE_ADMIN, WORKSPACES_READ, workspace_rbac
from langsmith_access.settings import (
    DEFAULT_ENDPOINT,
    ORGS_FILE_VARIABLE,
    SINGLE_ORG_KEY_VARIABLE,
    WEBHOOK_URL_VARIABLE,
    Org,
    Settings,
    SettingsError,
    mask_key_fragments,
    single_org_endpoint_variable,
    without_runs_of,
)
from langsmith_access.sync.extract import (
    ORG_MANAGE,
    NotEveryWorkspaceListed,
    answers_anonymity_restricted,
    enriched_route_fallback,
    require_every_workspace_listed,
)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
CHECK_NAMES = (
    "configuration",
    "endpoint",
    "authentication",
    "organization",
    "read_members",
    "read_all_workspaces",
    "read_roles",
    "manage_workspace_members",
    "workspace_rbac",
)
ENDPOINT_FIX = (
    f"set LANGSMITH_ENDPOINT to your LangSmith API: {DEFAULT_ENDPOINT} (US), "
    "https://eu.api.smith.langchain.com (EU), https://apac.api.smith.langchain.com (APAC), "
    "https://aws.api.smith.langchain.com (AWS US), or https://<your-host>/api/v1 (self-hosted; "
    "https://<your-host>/<basePath>/api/v1 for an install served under a base path)"
)
# A 404 on a route every LangSmith serves: the endpoint's path is wrong, not the key.
ENDPOINT_PATH_FIX = (
    "set LANGSMITH_ENDPOINT to the LangSmith API's host root (with a self-hosted install's base "
    "path, if it has one), or that with a trailing /api/v1 (or /api), and no other path: "
    f"{DEFAULT_ENDPOINT} (US), https://eu.api.smith.langchain.com (EU), "
    "https://langsmith.example.com/api/v1 (self-hosted; https://example.com/<basePath>/api/v1 with a "
    "base path)"
)
# A 404 on a read after the organization info answered at the same endpoint (every read the
# checks make after it): the base path is proven, so the route itself is missing behind it.
ROUTE_MISSING_FIX = (
    "LANGSMITH_ENDPOINT is right (the organization info answers there), but this route is not "
    "served behind it: let every /api/v1/ path through any proxy or ingress in front of LangSmith, "
    "or upgrade a self-hosted install too old to have the route"
)
TRANSIENT_FIX = (
    "run the doctor again in a minute; if it persists, check that LANGSMITH_ENDPOINT is reachable "
    "from here and LangSmith's status"
)
# Declared JSON but not what LangSmith sends: something between here and LangSmith, or a bug.
GARBLED_FIX = (
    "check that LANGSMITH_ENDPOINT reaches the LangSmith API itself (no proxy rewriting its "
    "answers), then run the doctor again"
)
# JSON that is not what this version reads there: a proxy rewriting it, or a newer LangSmith
# (a value or shape this version does not know), which no check of the endpoint fixes.
UNREADABLE_ANSWER_FIX = (
    f"{GARBLED_FIX}; if it does, this LangSmith answers in a form this version of langsmith-access "
    "does not read yet (the detail names the field): upgrade langsmith-access"
)
# Why no answer came decides what to change: the endpoint only where it is the likely culprit.
CONNECTION_FIXES = {
    "dns": "correct the host name in LANGSMITH_ENDPOINT (US: api.smith.langchain.com, EU: "
    "eu.api.smith.langchain.com, APAC: apac.api.smith.langchain.com, AWS US: aws.api.smith.langchain.com, "
    "self-hosted: your install's host), or this machine's DNS",
    "refused": "correct the host and port in LANGSMITH_ENDPOINT (Cloud: https:// and no port; "
    "self-hosted: the port its ingress serves), and check the install is running",
    # REQUESTS_CA_BUNDLE replaces every root the process trusts: the CA's file alone would cut
    # off the Cloud orgs an orgs file serves beside a self-hosted one.
    "tls-untrusted": "if the install (or a proxy that inspects TLS) uses a private certificate "
    "authority, set REQUESTS_CA_BUNDLE to a file holding that CA's certificate appended to a copy "
    "of the public roots (the file `python -m certifi` names): it replaces the roots trusted for "
    "every LangSmith this process reaches, every org of an orgs file included; otherwise check "
    "the host in LANGSMITH_ENDPOINT is LangSmith's",
    "tls": "check the scheme and port in LANGSMITH_ENDPOINT: https:// to a port that serves plain "
    "http fails like this",
    "proxy": "check HTTPS_PROXY / HTTP_PROXY (or add the LangSmith host to NO_PROXY if it is "
    "reached directly)",
    "connect-timeout": "check that this machine may reach the host of LANGSMITH_ENDPOINT (a "
    "firewall, or HTTPS_PROXY if it must use a proxy) and that the host and port are right",
    "read-timeout": TRANSIENT_FIX,
    "broken": GARBLED_FIX,
    "not-http": "correct the host and port in LANGSMITH_ENDPOINT: another service answers there, not "
    "LangSmith's web server (check the scheme too: a port that serves https:// can answer http:// so)",
}
# A plain http:// request closed unanswered, or answered with a 400 page: most often the port
# serves https:// (LangSmith Cloud and most installs do), whose TLS server closes a plain request
# without a word, or, behind nginx, answers it "The plain HTTP request was sent to HTTPS port".
PLAIN_HTTP_TO_TLS_FIX = (
    "check the scheme in LANGSMITH_ENDPOINT: a port that serves https:// closes a plain http:// request "
    "unanswered or answers it with a 400 page, so write https:// (LangSmith Cloud and most installs); if "
    "http:// is right, check any proxy or firewall between here and LangSmith (HTTPS_PROXY / HTTP_PROXY)"
)


def connection_fix(cause: str | None, endpoint: str) -> str:
    """The fix for a request to ``endpoint`` that got no answer for ``cause``
    (``ConnectionFailedError.cause``; None: not known)."""
    if cause == "dropped" and urllib.parse.urlsplit(endpoint).scheme == "http":
        return PLAIN_HTTP_TO_TLS_FIX
    return CONNECTION_FIXES.get(cause or "", ENDPOINT_FIX)


# LangSmith Cloud's web app (the address in the browser's bar) and the API of its region: the
# web app answers its own pages where the API was asked (langsmith-api.md, "Deployments").
WEB_APP_API_HOSTS = {
    "smith.langchain.com": "api.smith.langchain.com",
    "eu.smith.langchain.com": "eu.api.smith.langchain.com",
    "apac.smith.langchain.com": "apac.api.smith.langchain.com",
    "aws.smith.langchain.com": "aws.api.smith.langchain.com",
}
ORG_SELECTION_FIX = "name one of them with --org SLUG"
ORG_READ = "organization:read"  # all an organization read needs (langsmith-api.md)
# LangSmith refused an organization read although the organization info lists organization:read
# among the key's permissions: a role with it is no fix, the key has one.
HELD_PERMISSION_REFUSED_FIX = (
    f"nothing to change in the key's roles: the organization info says it holds {ORG_READ}, which "
    "this route needs; let this path through any proxy or firewall in front of LangSmith that "
    "refuses it, then run the doctor again, and if LangSmith itself still refuses, report the "
    "detail to LangSmith support"
)


def key_fix(variable: str = SINGLE_ORG_KEY_VARIABLE) -> str:
    """How to get a usable key into ``variable`` (the single-org one, or an org's own)."""
    return (
        "create an organization-scoped service key (Settings > API Keys > Service Keys, "
        f"organization scope, Organization Admin role) and set {variable} to it"
    )


KEY_FIX = key_fix()
# A doctor answers promptly: one retry at most, short timeouts.
DOCTOR_MAX_RETRIES = 1
# How long the doctor waits before asking again after a server error that names no time, and
# the longest it waits at all (LangSmith's fixed window is a minute; a longer Retry-After is
# reported, not waited for).
TRANSIENT_RETRY_SECONDS = 2.0
DOCTOR_MAX_WAIT_SECONDS = 60.0
DOCTOR_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str | None = None

    def lines(self) -> list[str]:
        out = [f"{self.status} {self.name}: {self.detail}"]
        if self.fix and self.status in (WARN, FAIL):
            out.append(f"  fix: {self.fix}")
        return out


@dataclass(frozen=True)
class Diagnosis:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def text(self) -> str:
        return "\n".join(line for check in self.checks for line in check.lines())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def worded_for(self, org: Org) -> Diagnosis:
        """The checks written for the single-org variables, naming ``org``'s own settings."""
        return Diagnosis([
            replace(check, detail=org.in_its_own_terms(check.detail),
                    fix=org.in_its_own_terms(check.fix) if check.fix else None)
            for check in self.checks
        ])

    def with_webhook_problem(self, problem: str | None) -> Diagnosis:
        """An org's own webhook that cannot be used yet (``Org.webhook_problem``): LangSmith
        works, but its notifications wait, so a passing configuration check warns, saying why."""
        return self._configuration_warned(problem, WEBHOOK_VARIABLE_FIX)

    def _configuration_warned(self, problem: str | None, fix: str) -> Diagnosis:
        """A passing configuration check (one that warns already included: each warning is told)
        warning of ``problem`` too, with its ``fix``; a failed one, or no problem, unchanged."""
        if not problem:
            return self
        return Diagnosis([
            replace(check, status=WARN, detail=f"{check.detail}; but {_mid_sentence(problem)}",
                    fix=f"{check.fix}; {fix}" if check.fix else fix)
            if check.name == "configuration" and check.status in (OK, WARN) else check
            for check in self.checks
        ])

    def with_policy_problem(self, problem: str | None) -> Diagnosis:
        """An access policy file that cannot be read or parsed (``policy_problem``): LangSmith
        works, but every grant is rejected until the file is fixed (revokes are not governed), so
        a passing configuration check warns, saying why."""
        return self._configuration_warned(problem, PolicyError.fix)


def _mid_sentence(text: str) -> str:
    """``text``, written as sentences of its own (an org's webhook problem: "The orgs file ...
    until then."), as it reads after "; but": its first word in lower case (a name in capitals,
    a path, is kept as written), without its full stop."""
    text = text.rstrip().removesuffix(".")
    return text[:1].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text


def policy_problem(org: Org) -> str | None:
    """Why ``org``'s access policy file cannot be used, as far as reading it tells (its YAML, keys
    and durations; the roles and workspaces it names are checked against a sync, when a grant is
    queued); None without a policy or when it reads."""
    if org.policy_path is None:
        return None
    try:
        load_policy(org.policy_path)
    except PolicyError as refused:
        reasons = "; ".join(f"line {line}: {reason}" if line is not None else reason
                            for line, reason in refused.problems)
        return f"the access policy {refused.path} is refused ({reasons}): every grant is rejected until it is fixed"
    return None


WEBHOOK_VARIABLE_FIX = (
    "set the variable the org's webhook_url_env names to its webhook's http(s) URL in every process that "
    "serves the org (then reload the code location), or remove webhook_url_env from its entry to use "
    "LANGSMITH_ACCESS_WEBHOOK_URL"
)


def run_checks(
    environ: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
    org: Org | None = None,
    client_factory: Callable[..., LangSmithClient] = LangSmithClient,
    webhook_variable: str = WEBHOOK_URL_VARIABLE,
    endpoint_variable: str = "LANGSMITH_ENDPOINT",
) -> Diagnosis:
    """Run the nine checks against the LangSmith that ``org``, else ``settings``, else
    ``environ`` (default: the process environment) configures. For an org, the details and
    fixes name where its settings come from (its key variable, its orgs file entry, the variable
    its webhook URL comes from; ``webhook_variable`` for ``settings``; ``endpoint_variable``, the
    variable ``settings``' endpoint was read from, found in ``environ`` for the single-org ones)."""
    if org is not None and org.key_problem:  # loaded for a deployment without a usable key
        problems = [org.key_problem]
        if org.orgs_file is None:  # the single-org variables: the key's problem and the org id's
            problems = [str(problem) for _, problem in org.settings.client_problems()] or problems
        return configuration_failure(*problems)
    if org is not None:
        # The default org is the single-org variables: its endpoint may be LANGCHAIN_ENDPOINT's.
        endpoint_variable = single_org_endpoint_variable(environ) if org.orgs_file is None else endpoint_variable
        diagnosis = run_checks(settings=org.settings, client_factory=client_factory,
                               webhook_variable=org.webhook_url_env or WEBHOOK_URL_VARIABLE,
                               endpoint_variable=endpoint_variable).worded_for(org)
        return diagnosis.with_webhook_problem(org.webhook_problem).with_policy_problem(policy_problem(org))
    doctor = _Doctor()
    try:
        from_environment = settings is None
        settings = settings if settings is not None else Settings.from_env(environ)
        client_settings = replace(
            settings.client(),
            max_retries=DOCTOR_MAX_RETRIES,
            read_timeout_seconds=min(settings.read_timeout_seconds, DOCTOR_TIMEOUT_SECONDS),
        )
    except SettingsError as error:
        if from_environment:  # every problem of the variables, not only the first: one round of fixes
            return configuration_failure(*(Settings.problems_of_env(environ) or [str(error)]))
        return configuration_failure(str(error))
    doctor.key = client_settings.api_key.reveal()
    doctor.read_timeouts = (client_settings.read_timeout_seconds, settings.read_timeout_seconds)
    if from_environment:
        endpoint_variable = single_org_endpoint_variable(environ)
    # An endpoint the operator did not write in LANGSMITH_ENDPOINT (a tracing setup's
    # LANGCHAIN_ENDPOINT) is said to come from where it came from.
    endpoint_from = "" if endpoint_variable == "LANGSMITH_ENDPOINT" else (
        f" from {endpoint_variable} (LANGSMITH_ENDPOINT is unset)")
    configured = (f"service key set (not shown), organization {client_settings.organization_id}, "
                  f"endpoint {client_settings.endpoint}{endpoint_from}")
    if settings.webhook_url is not None and _in_the_clear(settings.webhook_url.reveal()):
        # As the endpoint's warning: not refused, since a receiver on an internal network may be
        # plain http on purpose, but said, with the URL kept out (a secret).
        doctor.add("configuration", WARN,
                   f"{configured}; but the webhook ({webhook_variable}, not shown: a secret) is plain http to "
                   "another machine: every notification (who was granted or refused which role, where) crosses "
                   "the network unencrypted",
                   f"set {webhook_variable} to the receiver's https:// address (plain http is for a receiver on "
                   "this machine, or on a network you trust)")
    else:
        doctor.add("configuration", OK, configured)
    with client_factory(client_settings) as client:
        doctor.run(client)
    return doctor.finish()


def configuration_failure(message: str, *more: str, fix: str | None = None) -> Diagnosis:
    """The diagnosis of settings that cannot be used (a bad orgs file, or an org that cannot be
    chosen, too): the configuration check fails with ``message`` (and the ``more`` problems after
    it) and ``fix`` (default: the fix for what each message names), and every other check is
    skipped."""
    messages = (message, *more)
    fixes = [fix] if fix else list(dict.fromkeys(configuration_fix(m) for m in messages))
    doctor = _Doctor()
    doctor.add("configuration", FAIL, " ".join(messages), "; ".join(fixes))
    return doctor.finish()


class _Doctor:
    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.key = ""  # the key the checks send, once known: any long run of it is cut from details
        # How long the doctor waits for an answer, and a sync (LANGSMITH_ACCESS_TIMEOUT_SECONDS).
        self.read_timeouts: tuple[float, float] | None = None
        self.roles: list[Role] = []  # as read_roles read them
        # The shared workspaces, as read_all_workspaces listed them (None: not listed).
        self.workspaces: list[Workspace] | None = None
        self.workspaces_error: LangSmithError | None = None  # why they could not be listed
        self.org_info: dict[str, Any] | None = None
        self.probe_status: int | None = None
        self.probe_detail = ""
        # The fix when organization routes refuse the key (None: they did not): a refusal of the
        # member listing then has the same cause, not a missing role.
        self.organization_refused: str | None = None

    def refusal_fix(self, fix: str) -> str:
        """``fix`` (give the key a role with organization:read) for an organization read
        LangSmith refused, unless the organization info says the key holds organization:read
        already: then its roles are not the cause."""
        permissions = (self.org_info or {}).get("permissions")
        if isinstance(permissions, list) and ORG_READ in permissions:
            return HELD_PERMISSION_REFUSED_FIX
        return fix

    def add(self, name: str, status: str, detail: str, fix: str | None = None) -> None:
        # Details quote what the server answered (headers, bodies, where it redirects): a key it
        # echoed, whole or in part, never reaches the output.
        # A line break (or a terminal's control sequence) in what the server said would forge a
        # check line of its own: one line per check.
        detail = without_runs_of(self.key, mask_key_fragments(one_line(detail)))
        self.checks.append(Check(name, status, detail, fix))

    def finish(self) -> Diagnosis:
        done = {check.name for check in self.checks}
        failed = next((c.name for c in self.checks if c.status == FAIL), None)
        for name in CHECK_NAMES:
            if name not in done:
                self.add(name, SKIP, f"not run: {failed} failed" if failed else "not run")
        order = {name: index for index, name in enumerate(CHECK_NAMES)}
        return Diagnosis(sorted(self.checks, key=lambda c: order[c.name]))

    # ------------------------------------------------------------------ the checks

    def run(self, client: LangSmithClient) -> None:
        if not self.endpoint_and_key(client):
            self.name_the_web_app(client.endpoint)
            return
        if not self.organization(client):
            self.read_members(client)  # shows what the key is refused, for the record
            return
        if self.read_members(client):
            self.read_all_workspaces(client)
        self.read_roles(client)
        self.manage_workspace_members(client)
        self.workspace_rbac()

    def name_the_web_app(self, endpoint: str) -> None:
        """A failed endpoint check at LangSmith Cloud's web app: the fix names its region's API
        (in place of the list of every region's, else before the fix for how it failed)."""
        host = (urllib.parse.urlsplit(endpoint).hostname or "").lower()
        api = WEB_APP_API_HOSTS.get(host)
        failed = next((c for c in self.checks if c.name == "endpoint" and c.status == FAIL), None)
        if api is None or failed is None:
            return
        web_app_fix = (f"{host} is LangSmith's web app (the browser's address), not its API: set "
                       f"LANGSMITH_ENDPOINT to https://{api}")
        generic = failed.fix in (ENDPOINT_FIX, ENDPOINT_PATH_FIX)
        fixed = replace(failed, fix=web_app_fix if generic else f"{web_app_fix}; if it still fails, {failed.fix}")
        self.checks[self.checks.index(failed)] = fixed

    def endpoint_and_key(self, client: LangSmithClient) -> bool:
        """``endpoint`` and ``authentication`` from one GET of the org info: any JSON answer,
        a 401 included, proves a LangSmith API."""
        # For a 429 or 5xx answer: what the detail says of asking again, and the fix.
        again, retry_fix = "again when asked again", TRANSIENT_FIX
        try:
            probe = client.probe(ORGANIZATION_INFO_PATH)
            for _ in range(DOCTOR_MAX_RETRIES):
                wait = probe.retry_after if probe.retry_after is not None else TRANSIENT_RETRY_SECONDS
                if probe.status_code != 429 and probe.status_code < 500:
                    break
                if wait > DOCTOR_MAX_WAIT_SECONDS:
                    # Not asked again: the answer names a longer wait than the doctor's.
                    more = " or more" if wait >= MAX_RETRY_AFTER_SECONDS else ""  # the client's cap
                    again = f"and it asks to wait {wait:.0f} s{more} (Retry-After) before asking again"
                    retry_fix = (f"run the doctor again in {wait:.0f} s{more}, when LangSmith said it "
                                 "would answer; if it persists, check LangSmith's status")
                    break
                # Rate limited (a 429 without Retry-After waits out the fixed window, as a sync
                # would) or a server error: asked again once before telling anything.
                time.sleep(wait)
                probe = client.probe(ORGANIZATION_INFO_PATH)
        except TransientError as error:
            cause = error.cause if isinstance(error, ConnectionFailedError) else None
            fix = connection_fix(cause, client.endpoint)
            if cause == "read-timeout" and self.read_timeouts and self.read_timeouts[1] > self.read_timeouts[0]:
                # Slower than the doctor waits is not slower than a sync waits: said, or the
                # operator runs the doctor again and again against a LangSmith that syncs.
                waits, sync_waits = self.read_timeouts
                fix = (f"{fix}; the doctor waits {waits:g} s for an answer, a sync {sync_waits:g} s "
                       "(LANGSMITH_ACCESS_TIMEOUT_SECONDS): a LangSmith this slow may still sync, so try "
                       "`langsmith-access sync`")
            self.add("endpoint", FAIL, f"cannot reach {client.endpoint}: {error}", fix)
            return False
        except EndpointRedirectError as error:
            self.add("endpoint", FAIL, f"{client.endpoint} is not where the API answers: {error}",
                     error.fix)
            return False
        if not probe.is_json:
            answered = (f"GET {ORGANIZATION_INFO_PATH} at {client.endpoint} answered {probe.status_code} "
                        f"with {probe.content_type or 'no content type'}")
            if probe.status_code >= 500 or probe.status_code == 429:
                # A gateway's error page (a load balancer or ingress whose LangSmith backend is
                # down), not proof of a wrong endpoint: only a 2xx that is not JSON is that.
                detail = (f"{answered}, {again}: a gateway's error page, so the LangSmith API behind "
                          "it is not answering now")
                fix = retry_fix
            elif probe.status_code in (401, 403, 407):
                # LangSmith refuses with JSON: a page is a proxy or firewall on the way
                # (langsmith-api.md), a 401 page one that wants its own login (a single sign-on
                # gateway before a self-hosted install), not a key LangSmith judged.
                detail = (f"{answered}, not LangSmith's JSON: a proxy or firewall refused the request "
                          "before it reached LangSmith"
                          + (" (one that asks for its own login)" if probe.status_code == 401 else ""))
                fix = ProxyRefusalError.fix
            elif probe.status_code == 400 and urllib.parse.urlsplit(client.endpoint).scheme == "http":
                detail = (f"not a LangSmith API: {answered}, not JSON, as a port that serves https:// answers a "
                          "plain http:// request")
                fix = PLAIN_HTTP_TO_TLS_FIX
            else:
                detail, fix = f"not a LangSmith API: {answered}, not JSON", ENDPOINT_FIX
            self.add("endpoint", FAIL, detail, fix)
            return False
        if probe.status_code == 404:
            # Every LangSmith serves the org info (a wrong key or org id gets 401 or 403): a 404
            # is a JSON API without that route at this base path.
            self.add(
                "endpoint",
                FAIL,
                f"no LangSmith API at {client.endpoint}: GET {ORGANIZATION_INFO_PATH} answered 404 "
                f"({probe.detail}), a route every LangSmith serves, so the endpoint's path is wrong",
                ENDPOINT_PATH_FIX,
            )
            return False
        if probe.status_code >= 500 or probe.status_code == 429:
            # A LangSmith API, but not answering now: nothing is known of the key yet.
            self.add(
                "endpoint",
                FAIL,
                f"{client.endpoint} answers as a LangSmith API but not usefully now: GET "
                f"{ORGANIZATION_INFO_PATH} answered {probe.status_code} ({probe.detail}), {again}",
                retry_fix,
            )
            return False
        if _in_the_clear(client.endpoint):
            self.add("endpoint", WARN,
                     f"{client.endpoint} answers as a LangSmith API, over plain http: the key and "
                     "every answer cross the network unencrypted",
                     "set LANGSMITH_ENDPOINT to the install's https:// address (plain http is for "
                     "this machine only)")
        else:
            self.add("endpoint", OK, f"{client.endpoint} answers as a LangSmith API")
        if probe.status_code == 401:
            self.add(
                "authentication",
                FAIL,
                f"LangSmith refused the API key (401: {probe.detail})",
                "check the key is a current, unrevoked service key of this LangSmith "
                "(region or self-hosted install), and that LANGSMITH_ENDPOINT names the LangSmith the "
                "key belongs to (a key sent to another region or install is refused alike); " + KEY_FIX,
            )
            return False
        if probe.status_code in (200, 403):  # answered for the key's org, or refused it: the key itself is known
            self.add("authentication", OK, "the API key is accepted")
        else:  # an answer LangSmith does not give there (a 400, 405, 422...) says nothing of the key
            self.add("authentication", SKIP,
                     f"not known: GET {ORGANIZATION_INFO_PATH} answered {probe.status_code}, which neither "
                     "accepts nor refuses the key (see organization)")
        self.probe_status = probe.status_code
        self.probe_detail = probe.detail
        self.org_info = probe.body if probe.status_code == 200 and isinstance(probe.body, dict) else None
        return True

    def organization(self, client: LangSmithClient) -> bool:
        if self.org_info is None and self.probe_status != 403:
            # Not a refusal (a 200 that is not an object, or a 4xx LangSmith does not document
            # there): blaming the key or the org id would send the operator the wrong way.
            self.add(
                "organization",
                FAIL,
                f"GET {ORGANIZATION_INFO_PATH} answered {self.probe_status} "
                + (f"({self.probe_detail})" if self.probe_detail else "without an organization")
                + ", not what LangSmith answers there",
                GARBLED_FIX,
            )
            return False
        if self.org_info is None:
            self.organization_refused = (
                "use an organization-scoped service key of organization "
                f"{client.organization_id} (or set LANGSMITH_ORGANIZATION_ID to the key's "
                "organization; check the region too)"
            )
            self.add(
                "organization",
                FAIL,
                f"organization routes refuse the key ({self.probe_status}: {self.probe_detail}): "
                "it is a workspace-scoped key, or LANGSMITH_ORGANIZATION_ID is not its "
                "organization",
                self.organization_refused,
            )
            return False
        found = str(self.org_info.get("id") or "")
        if found and found.lower() != client.organization_id:
            self.add(
                "organization",
                FAIL,
                f"the key answers for organization {found}, not LANGSMITH_ORGANIZATION_ID "
                f"{client.organization_id}",
                "set LANGSMITH_ORGANIZATION_ID to the key's organization, or use a key of yours",
            )
            return False
        name = self.org_info.get("display_name") or "(no name)"
        tier = self.org_info.get("tier")
        about = f"{name} ({client.organization_id})" + (f", plan {tier}" if tier else "")
        if not found:
            # The schema lets the id be null: the key is accepted on organization routes with
            # this org id, but which org answered cannot be confirmed.
            self.add(
                "organization",
                WARN,
                f"{about}: the organization info names no id, so the key's organization could "
                "not be compared with LANGSMITH_ORGANIZATION_ID",
                "check in LangSmith (Settings > Organization) that LANGSMITH_ORGANIZATION_ID is "
                "the organization this key was created in",
            )
            return True
        self.add("organization", OK, about)
        return True

    def read_members(self, client: LangSmithClient) -> bool:
        try:
            page = client.first_page_of_org_members()
        except LangSmithError as error:
            self.add(
                "read_members",
                FAIL,
                f"cannot list organization members: {error}",
                _fix_for(
                    error,
                    refused=self.organization_refused
                    or self.refusal_fix("give the key a role with organization:read (any organization "
                                        "role), on an organization-scoped service key"),
                ),
            )
            return False
        total = page.reported_total
        self.add(
            "read_members",
            OK,
            f"organization members can be listed ({total} active)"
            if total is not None
            else "organization members can be listed",
        )
        return True

    def read_all_workspaces(self, client: LangSmithClient) -> None:
        """The workspace listing every sync reads, then the members route: warn exactly where the
        sync falls back to reading each workspace (its own rule, ``enriched_route_fallback``),
        saying why, and fail where it would then be refused a workspace; any other error fails
        the sync, so fails here."""
        try:
            self.shared_workspaces(client)
        except LangSmithError as error:
            self.add(
                "read_all_workspaces",
                FAIL,
                f"cannot list workspaces, which every sync reads: {error}",
                _fix_for(error, refused=self.refusal_fix(
                    "give the key a role with organization:read (any organization role)")),
            )
            return
        try:
            page = client.list_enriched_members(first_page_only=True)
            require_every_workspace_listed(page.headers, client)
        except (LangSmithError, NotEveryWorkspaceListed) as error:
            reason = enriched_route_fallback(error)
            why = error.why if isinstance(error, NotEveryWorkspaceListed) else reason
            if why is not None and self.refused_workspaces(why):  # None: the sync fails anyway
                return
            if isinstance(error, NotEveryWorkspaceListed):
                self.add(
                    "read_all_workspaces",
                    WARN,
                    f"{error.why}: one listing does not show every workspace, so the sync "
                    "reads each workspace" + _anonymity_note(error.anonymity_restricted),
                    "give the key the Organization Admin role so one listing covers every "
                    "workspace; without it the sync reads each workspace: complete, slower",
                )
            elif reason is None:
                self.add(
                    "read_all_workspaces",
                    FAIL,
                    f"the enriched members route failed, and the sync fails with it: {error}",
                    _fix_for(
                        error,
                        refused=self.refusal_fix(
                            "give the key a role with organization:read (Organization Admin to list "
                            "every workspace at once), on an organization-scoped service key"),
                    ),
                )
            else:
                self.add(
                    "read_all_workspaces",
                    WARN,
                    f"{reason}; the sync reads each workspace instead: complete, slower",
                    "nothing is wrong; a newer LangSmith (self-hosted: a newer chart) has the "
                    "faster route",
                )
            return
        self.add(
            "read_all_workspaces",
            OK,
            "one listing shows every workspace's members"
            + _anonymity_note(answers_anonymity_restricted(page.headers)),
        )

    def shared_workspaces(self, client: LangSmithClient) -> list[Workspace]:
        """The shared workspaces, listed once for the checks that need them (a listing that
        failed is not asked again: its error is raised again)."""
        if self.workspaces_error is not None:
            raise self.workspaces_error
        if self.workspaces is None:
            try:
                self.workspaces = [w for w in client.list_workspaces(include_deleted=False) if not w.is_personal]
            except LangSmithError as error:
                self.workspaces_error = error
                raise
        return self.workspaces

    def refused_workspaces(self, why: str) -> bool:
        """Where the sync reads each workspace: fail (and say True) if the key may not read
        some of them (their listing says so), which fails every sync."""
        unreadable = [w.display_name for w in self.workspaces or []
                      if w.permissions is not None and WORKSPACES_READ not in w.permissions]
        if not unreadable:
            return False
        self.add(
            "read_all_workspaces",
            FAIL,
            f"{why}: the sync reads each workspace, and the key may not read {len(unreadable)} of "
            f"them ({', '.join(unreadable[:5])}{' ...' if len(unreadable) > 5 else ''}): every sync "
            f"fails there (403)",
            f"give the service key a role with {WORKSPACES_READ} in those workspaces (Workspace Admin, "
            "the default for an organization-scoped key), or the Organization Admin role, with which "
            "one listing covers every workspace",
        )
        return True

    def read_roles(self, client: LangSmithClient) -> None:
        try:
            roles = client.list_roles()
        except LangSmithError as error:
            self.add(
                "read_roles",
                FAIL,
                f"cannot list roles: {error}",
                _fix_for(
                    error, refused=self.refusal_fix(
                        "give the key a role with organization:read (any organization role)")
                ),
            )
            return
        self.roles = roles
        workspace_roles = sum(1 for role in roles if role.access_scope == "workspace")
        self.add("read_roles", OK, f"{len(roles)} roles ({workspace_roles} workspace roles)")

    def manage_workspace_members(self, client: LangSmithClient) -> None:
        fix = (
            "give the service key the Workspace Admin role in every workspace (the default for "
            "an organization-scoped key) or the Organization Admin role"
        )
        permissions = (self.org_info or {}).get("permissions") or []
        if ORG_MANAGE in permissions:
            self.add(
                "manage_workspace_members",
                OK,
                f"the key has {ORG_MANAGE} (Organization Admin: Admin in every workspace)",
            )
            return
        try:
            workspaces = self.shared_workspaces(client)
        except LangSmithError as error:
            self.add(
                "manage_workspace_members",
                FAIL,
                f"cannot list workspaces: {error}",
                _fix_for(error, refused=self.refusal_fix("give the key a role with organization:read")),
            )
            return
        if not workspaces:
            self.add("manage_workspace_members", OK, "the organization has no shared workspace yet")
            return
        unknown = [w for w in workspaces if w.permissions is None]
        allowed = [w for w in workspaces if w.permissions and MANAGE_MEMBERS in w.permissions]
        restricted_note = self.restricted_roles_note(allowed)
        if len(allowed) == len(workspaces):
            if restricted_note:
                self.add(
                    "manage_workspace_members",
                    WARN,
                    f"the key has {MANAGE_MEMBERS} in all {len(workspaces)} workspaces, but "
                    + restricted_note,
                    "give the service key the built-in Workspace Admin role in those workspaces, "
                    "or the Organization Admin role",
                )
            else:
                self.add(
                    "manage_workspace_members",
                    OK,
                    f"the key has {MANAGE_MEMBERS} in all {len(workspaces)} workspaces",
                )
        elif len(unknown) == len(workspaces):
            self.add(
                "manage_workspace_members",
                WARN,
                "cannot tell: LangSmith does not say the key's permissions in its workspaces",
                fix,
            )
        elif allowed or unknown:
            # Where LangSmith said the key lacks it, and where it said nothing: not the same news.
            refused = [w.display_name for w in workspaces if w.permissions is not None and w not in allowed]
            where_not = "; ".join(
                f"{label}: {', '.join(names[:5])}" + (" ..." if len(names) > 5 else "")
                for label, names in (("not in", refused), ("not said in", [w.display_name for w in unknown]))
                if names
            )
            has = (f"in {len(allowed)} of {len(workspaces)} workspaces" if allowed else
                   f"in none of the {len(workspaces) - len(unknown)} workspaces LangSmith says its permissions in")
            self.add(
                "manage_workspace_members",
                WARN,
                f"the key has {MANAGE_MEMBERS} {has}; {where_not}"
                + (f"; and where it has it, {restricted_note}" if restricted_note else ""),
                fix,
            )
        else:
            self.add(
                "manage_workspace_members",
                FAIL,
                f"the key has {MANAGE_MEMBERS} in none of the {len(workspaces)} workspaces: "
                "provisioning cannot change any membership",
                fix,
            )

    def restricted_roles_note(self, allowed: list[Workspace]) -> str | None:
        """What the key cannot do in the workspaces of ``allowed`` (where it may manage members)
        in which it holds a role other than the built-in Workspace Admin, while the org has
        restricted roles, which only that role may grant or take away (langsmith-api.md); None
        where that is nothing."""
        restricted = sorted(r.display_name for r in self.roles if r.is_restricted)
        by_id = {role.id: role for role in self.roles}
        other = [w for w in allowed if w.role_id in by_id and by_id[w.role_id].name != WORKSPACE_ADMIN]
        if not restricted or not other:
            return None
        held = sorted({by_id[w.role_id or ""].display_name for w in other})
        names = ", ".join(w.display_name for w in other[:5]) + (" ..." if len(other) > 5 else "")
        return (
            f"through {', '.join(repr(h) for h in held)}, not the built-in Workspace Admin, in "
            f"{len(other)} of them ({names}): there it cannot grant the restricted roles "
            f"{', '.join(repr(r) for r in restricted)}, nor change or remove their holders"
        )

    def workspace_rbac(self) -> None:
        rbac = workspace_rbac(self.org_info)
        tier = (self.org_info or {}).get("tier")
        if rbac is True:
            self.add("workspace_rbac", OK, "workspace roles other than Admin can be granted")
        elif rbac is False:
            self.add(
                "workspace_rbac",
                FAIL,
                f"this organization's plan{f' ({tier})' if tier else ''} has no workspace RBAC "
                "(config.can_use_rbac is false): only the Admin workspace role can be granted; "
                "requests for other workspace roles will fail",
                "request only the Admin role, or move the organization to the Enterprise plan",
            )
        else:
            self.add(
                "workspace_rbac",
                WARN,
                "unknown: the organization info does not say config.can_use_rbac",
                "if requests for non-Admin roles fail with 'not in plan', the plan lacks "
                "workspace RBAC (Enterprise only)",
            )


def _in_the_clear(endpoint: str) -> bool:
    """Plain http to another machine (on this one, as with the sandbox, nothing crosses a network)."""
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme != "http":
        return False
    host = url.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return True


def _anonymity_note(restricted: bool) -> str:
    return (
        "; answers are anonymity-restricted (emails and names may be withheld: the sync keeps the "
        "values it knew)"
        if restricted
        else ""
    )


def _fix_for(error: LangSmithError, *, refused: str) -> str:
    """The fix for a read that failed with ``error``: ``refused`` (the permission the check
    needs) only when LangSmith refused the key; otherwise the fix for that kind of error."""
    if isinstance(error, ProxyRefusalError):
        return error.fix  # a proxy refused it, not LangSmith: not the key's roles
    if isinstance(error, PermissionDeniedError):
        return refused
    if isinstance(error, NotFoundError):
        # The checks read only after the organization info answered at this endpoint (a 404 there
        # fails the endpoint check): the base path is right, so no new endpoint fixes this.
        return ROUTE_MISSING_FIX
    if isinstance(error, NotLangSmithAPIError):
        return error.fix
    if isinstance(error, UnexpectedResponseError):
        return UNREADABLE_ANSWER_FIX
    if isinstance(error, TransientError):
        return TRANSIENT_FIX
    if type(error).fix != LangSmithError.fix:
        return error.fix  # its kind names one (a refused key: AuthenticationError)
    return "LangSmith rejected the request as the detail says; " + TRANSIENT_FIX


# A settings message starts with what it is about: a variable, or an orgs file entry.
_LEADING_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*\b")
_UNSET_KEY_VARIABLE = re.compile(r"the variable (\w+) named by api_key_env is not set")
# An org's key refused as read: "<its api_key_env> (the key of org 'eu' in <file>) is ...", the
# variable named whatever the entry chose (not always LANGSMITH_API_KEY_<SLUG>).
_ORG_KEY_VARIABLE = re.compile(r"(\w+) \(the key of org ")


def configuration_fix(message: str) -> str:
    """The fix for what a settings message names: one of the single-org variables, an org's own
    key variable, the orgs file variable, or an entry of the orgs file."""
    if message.startswith("The orgs file "):
        unset = _UNSET_KEY_VARIABLE.search(message)
        if unset:
            return key_fix(unset.group(1)) + " (or name the right variable in that entry's api_key_env)"
        what = "that entry of the orgs file" if ", entry " in message else "the orgs file"
        return f"correct {what} as the message says ({ORGS_FILE_VARIABLE} names the file)"
    own_key = _ORG_KEY_VARIABLE.match(message)
    if own_key:
        return key_fix(own_key.group(1))
    leading = _LEADING_VARIABLE.match(message)
    variable = leading.group() if leading else ""
    if variable == "LANGSMITH_ENDPOINT":
        return ENDPOINT_FIX
    if variable == "LANGSMITH_ORGANIZATION_ID":
        return "set LANGSMITH_ORGANIZATION_ID to your organization's UUID (Settings > Organization)"
    if variable == ORGS_FILE_VARIABLE:
        return f"point {ORGS_FILE_VARIABLE} at the YAML list of your orgs, or unset it"
    if variable.startswith(SINGLE_ORG_KEY_VARIABLE):
        return key_fix(variable)  # LANGSMITH_API_KEY, or an org's own such as LANGSMITH_API_KEY_EU
    if variable:
        return f"correct {variable} as the message says"
    return "fix the setting named above"
