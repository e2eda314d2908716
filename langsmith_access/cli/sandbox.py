"""``langsmith-access sandbox``: the LangSmith-compatible sandbox server (DESIGN.md section 6)."""

from __future__ import annotations

import argparse

from langsmith_access.cli.common import org_size
from langsmith_access.sandbox.api import KEY_ROLES
from langsmith_access.sandbox.server import serve_from_cli


def add_commands(commands: argparse._SubParsersAction) -> None:
    sandbox = commands.add_parser(
        "sandbox", help="run the LangSmith-compatible sandbox server until stopped"
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sandbox.add_argument("--seed", type=int, default=42, help="seed of the generated org: the same seed, the same org")
    sandbox.add_argument("--members", type=org_size, default=50, help="active org members")
    sandbox.add_argument("--workspaces", type=org_size, default=8, help="shared workspaces")
    sandbox.add_argument("--api-key", default=None, help="service key to accept (default: generated)")
    sandbox.add_argument("--organization-id", default=None, help="org UUID (default: from the seed)")
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    sandbox.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests answered 5xx or 429"
    )
    sandbox.add_argument(
        "--pending-invites",
        type=org_size,
        default=None,
        help="pending org invites (default: members / 40 + 2)",
    )
    sandbox.add_argument(
        "--rate-limit-per-minute",
        type=int,
        default=None,
        help="answer 429 once a key sent more than N requests in its current 60 s window "
        "(default: no limit)",
    )
    sandbox.add_argument(
        "--rate-limit-per-10-seconds",
        type=int,
        default=None,
        help="answer 429 once a key sent more than N requests in its current 10 s window, "
        "a sixth of --rate-limit-window-seconds (LangSmith Cloud: 1000; default: no limit)",
    )
    sandbox.add_argument(
        "--deployment",
        choices=["cloud", "self-hosted"],
        default="cloud",
        help="self-hosted: platform routes only under /api/v1/platform/, other paths outside "
        "/api answer the web UI's HTML page with 200",
    )
    sandbox.add_argument(
        "--key-role",
        choices=KEY_ROLES,
        default="org-admin",
        help="what the accepted key is: Organization Admin, a default-role org key "
        "(Organization User + Workspace Admin), a read-only org key (Organization Viewer + "
        "Workspace Viewer), a workspace-scoped key, or an org key managing members through a "
        "custom workspace role ('Member Manager', refused on restricted roles)",
    )
    sandbox.add_argument(
        "--plan",
        choices=["enterprise", "plus"],
        default="enterprise",
        help="plus: no workspace RBAC (no custom roles, everyone is Admin in their workspaces and "
        "only the Admin workspace role can be granted), no access policies, audit log, SAML SSO "
        "or SCIM (their routes answer 403)",
    )
    sandbox.add_argument(
        "--missing-sections",
        default="",
        metavar="SECTION[,SECTION...]",
        help="sections whose routes answer 404, as an older self-hosted version without them "
        "(access_policies, audit_events, service_keys, personal_access_tokens, "
        "workspace_service_keys, scim_tokens, service_accounts, sso_settings, resource_tags)",
    )
    sandbox.add_argument(
        "--leak-full-keys",
        action="store_true",
        help="misbehave: key and token listings carry the full secret (to prove nothing stores it)",
    )
    sandbox.add_argument(
        "--rate-limit-mode",
        choices=["rolling", "fixed-window"],
        default="rolling",
        help="fixed-window: 429 without Retry-After until the window ends",
    )
    sandbox.add_argument(
        "--rate-limit-window-seconds",
        type=float,
        default=60,
        help="length of the rate-limit window (default 60)",
    )
    sandbox.add_argument(
        "--pagination-totals",
        choices=["all", "enriched-only"],
        default="all",
        help="enriched-only: X-Pagination-Total only on the enriched members route, the one "
        "listing LangSmith's schemas document it on (default: on every member listing)",
    )
    sandbox.add_argument(
        "--anonymity-restricted",
        action="store_true",
        help="members answers are anonymity-restricted (emails and names withheld)",
    )
    sandbox.set_defaults(handler=serve_from_cli)
