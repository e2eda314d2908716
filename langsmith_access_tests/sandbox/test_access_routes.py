"""The access picture's routes (DESIGN.md section 9) as the sandbox serves them: every answer of
every new route, in every plan and key mode, is checked against the official schemas (the
caller fixture does it); 403 where the plan or the key's role rules a section out, 404 where an
older install lacks it; listings never carry a secret, except in the fault mode that
misbehaves on purpose; creations answer the secret once and land in the audit log."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time

import pytest
import requests

from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org
from langsmith_access.sandbox.access_api import ROUTED_SECTIONS
from langsmith_access.sandbox.access_generator import ACTIVITY_REFERENCE
from langsmith_access.sandbox.access_records import PERSONAL_ACCESS_TOKEN, SERVICE_KEY, WORKSPACE_SERVICE_KEY
from langsmith_access.sandbox.org_state import format_timestamp
from langsmith_access_tests.helpers import in_time_zone
from langsmith_access_tests.sandbox.conftest import SandboxCaller
from langsmith_access_tests.sandbox.schema import load_spec
from langsmith_access_tests.sandbox.test_cli import CLI

POLICIES = "/v1/platform/orgs/current/access-policies"
API_POLICIES = "/api" + POLICIES
SCIM_TOKENS = "/v1/platform/orgs/current/scim/tokens"
SERVICE_KEYS = "/api/v1/orgs/current/service-keys"
PATS = "/api/v1/orgs/current/personal-access-tokens"
WORKSPACE_KEYS = "/api/v1/api-key"
SERVICE_ACCOUNTS = "/api/v1/service-accounts"
SSO = "/api/v1/orgs/current/sso-settings"
TAGS = "/api/v1/workspaces/current/tags"
TAGGINGS = "/api/v1/workspaces/current/taggings"
AUDIT = "/api/v1/audit-logs"
PLATFORM_INFO = "/v1/platform/orgs/current/info"
WINDOW = {"start_time": "2024-01-01T00:00:00Z", "end_time": "2030-01-01T00:00:00Z", "limit": 100}

# Every read route of a section, with its section, the query it needs, and whether it is a Go
# platform route (errors {"error": ...}) or a FastAPI one (errors {"detail": ...}).
READS = [
    ("access_policies", POLICIES, {}, True),
    ("access_policies", API_POLICIES, {}, True),
    ("scim_tokens", SCIM_TOKENS, {}, True),
    ("scim_tokens", "/api" + SCIM_TOKENS, {}, True),
    ("service_keys", SERVICE_KEYS, {}, False),
    ("personal_access_tokens", PATS, {}, False),
    ("workspace_service_keys", WORKSPACE_KEYS, {}, False),
    ("service_accounts", SERVICE_ACCOUNTS, {}, False),
    ("sso_settings", SSO, {}, False),
    ("audit_events", AUDIT, WINDOW, False),
    ("resource_tags", TAGS, {}, False),
    ("resource_tags", TAGGINGS, {}, False),
]

# What each mode may read: (plan, key_role) -> sections refused with 403.
PLUS_REFUSED = {"access_policies", "scim_tokens", "sso_settings", "audit_events"}
REFUSED = {
    ("enterprise", "org-admin"): set(),
    ("enterprise", "org-user"): {"audit_events"},
    ("enterprise", "org-viewer"): {"audit_events", "personal_access_tokens"},
    ("plus", "org-admin"): PLUS_REFUSED,
    ("plus", "org-user"): PLUS_REFUSED,
    ("plus", "org-viewer"): PLUS_REFUSED | {"personal_access_tokens"},
}


@pytest.fixture
def start():
    """``start(plan=..., **options)``: a sandbox on an org generated for that plan, and its caller."""
    started = []

    def make(plan: str = "enterprise", **options):
        org = generate_org(seed=7, members=40, workspaces=5, plan=plan)
        # The clock starts at the date the org is seen, not today's: its audit history stays
        # within the 400 days the route serves, whatever day the tests run.
        offset = ACTIVITY_REFERENCE - time.time()
        org.clock = lambda: time.time() + offset
        server = SandboxServer(org, plan=plan, **options)
        server.start()
        caller = SandboxCaller(server)
        started.append((server, caller))
        return server, caller

    yield make
    for server, caller in started:
        caller.session.close()
        server.stop()


def read(caller: SandboxCaller, sandbox: SandboxServer, path: str, params: dict) -> requests.Response:
    tenant = sandbox.org.shared_workspaces()[0].id if path in (WORKSPACE_KEYS, TAGS, TAGGINGS) else None
    return caller.get(path, params=params, tenant_id=tenant)


@pytest.mark.parametrize(("plan", "key_role"), sorted(REFUSED))
def test_every_read_route_answers_its_schema_or_refuses_as_the_plan_and_key_say(start, plan, key_role):
    sandbox, caller = start(plan, key_role=key_role)
    for section, path, params, platform in READS:
        response = read(caller, sandbox, path, params)  # checked against the spec by the caller
        if section in REFUSED[(plan, key_role)]:
            assert response.status_code == 403, (section, path, response.text)
            body = response.json()
            message = body["error"] if platform else body["detail"]
            if section in PLUS_REFUSED and plan == "plus":
                assert "plan" in message and "config.can_use_" in message
            else:
                assert "role" in message
        else:
            assert response.status_code == 200, (section, path, response.text)
            if section == "audit_events":
                assert response.json()["items"], "no audit item was checked against the schema"
    info = caller.get(PLATFORM_INFO)
    assert info.status_code == 200 and info.json()["config"]["can_use_abac"] is (plan == "enterprise")


def test_listings_are_the_orgs_records_with_short_keys_only(start):
    sandbox, caller = start()
    org = sandbox.org
    listed = {row["id"]: row for row in caller.get(SERVICE_KEYS).json()}
    assert set(listed) == {k.id for k in org.api_keys.values() if k.kind == SERVICE_KEY}
    pats = {row["id"] for row in caller.get(PATS).json()}
    assert pats == {k.id for k in org.api_keys.values() if k.kind == "personal_access_token"}
    workspace = org.shared_workspaces()[0]
    in_workspace = {row["id"] for row in caller.get(WORKSPACE_KEYS, tenant_id=workspace.id).json()}
    assert in_workspace == {
        k.id for k in org.api_keys.values()
        if k.kind == WORKSPACE_SERVICE_KEY and k.workspace_ids == [workspace.id]
    }
    assert in_workspace, "the first workspace has a workspace key"
    for key in org.api_keys.values():
        if key.id in listed:
            row = listed[key.id]
            assert row["short_key"] == key.short_key and row["revoked_at"] == key.revoked_at
            assert row["expires_at"] == key.expires_at
            assert row["workspace_names"] is None if key.workspace_ids is None else row["workspace_names"]
    everything = "".join(
        read(caller, sandbox, path, params).text for _, path, params, _ in READS
    )
    for key in org.api_keys.values():
        assert key.secret not in everything
    for token in org.scim_tokens.values():
        assert token.token not in everything
    # (A tag listing's "key" is the tag's name, TagKeyWithValues.key: no secret field.)
    credential_listings = "".join(
        read(caller, sandbox, path, params).text for section, path, params, _ in READS if section != "resource_tags"
    )
    assert '"key"' not in credential_listings and '"token"' not in credential_listings
    policies = caller.get(POLICIES).json()["access_policies"]
    assert {p["id"] for p in policies} == set(org.access_policies)
    assert {a["id"] for a in caller.get(SERVICE_ACCOUNTS).json()} == set(org.service_accounts)
    assert sorted((s["id"], s["provider_id"]) for s in caller.get(SSO).json()) == sorted(
        (p.id, p.provider_id) for p in org.sso_providers.values()
    )



def test_listed_rows_carry_every_field_of_their_records(start):
    sandbox, caller = start()
    org = sandbox.org
    workspace = org.shared_workspaces()[0]
    # What the generated org of this seed lacks: an account with a default workspace, a SCIM
    # token never used (its row has no last_used_at), a provider without attribute mapping.
    next(iter(org.service_accounts.values())).default_workspace_id = workspace.id
    next(iter(org.scim_tokens.values())).last_used_at = None
    next(iter(org.sso_providers.values())).attribute_mapping_keys = None
    rows = {
        row["id"]: row
        for path, tenant in ((SERVICE_KEYS, None), (PATS, None), (WORKSPACE_KEYS, workspace.id))
        for row in caller.get(path, tenant_id=tenant).json()
    }
    scope = {SERVICE_KEY: "organization", WORKSPACE_SERVICE_KEY: "workspace", PERSONAL_ACCESS_TOKEN: None}
    compared = set()
    for key in org.api_keys.values():
        if key.id not in rows:
            continue
        default = org.workspaces.get(key.default_workspace_id or "")
        assert rows[key.id] == {
            "id": key.id, "short_key": key.short_key, "description": key.description,
            "created_at": key.created_at, "last_used_at": key.last_used_at, "expires_at": key.expires_at,
            "read_only": key.read_only, "role_id": key.role_id, "org_role_id": key.org_role_id,
            "workspace_names": None if key.workspace_ids is None
            else [org.workspaces[w].display_name for w in key.workspace_ids],
            "default_workspace_name": default.display_name if default else None,
            "access_scope": scope[key.kind], "created_by": key.created_by, "revoked_at": key.revoked_at,
        }
        compared.add(key.kind)
    assert compared == set(scope)
    tokens = {row["id"]: row for row in caller.get(SCIM_TOKENS).json()}
    assert set(tokens) == set(org.scim_tokens)
    for token in org.scim_tokens.values():
        used = {"last_used_at": token.last_used_at} if token.last_used_at else {}
        assert tokens[token.id] == {
            "id": token.id, "short_token": token.short_token, "description": token.description,
            "created_at": token.created_at, "updated_at": token.updated_at, **used,
        }
    for row in caller.get(SERVICE_ACCOUNTS).json():
        account = org.service_accounts[row["id"]]
        assert row == {
            "id": account.id, "name": account.name, "organization_id": org.organization_id,
            "default_workspace_id": account.default_workspace_id,
            "created_at": account.created_at, "updated_at": account.updated_at,
        }
    for row in caller.get(POLICIES).json()["access_policies"]:
        policy = org.access_policies[row["id"]]
        assert (row["name"], row["effect"], row["role_ids"]) == (policy.name, policy.effect, list(policy.role_ids))
        assert row["condition_groups"] == [
            {"permission": g.permission, "resource_type": g.resource_type, "conditions": [
                {"attribute_name": c.attribute_name, "attribute_key": c.attribute_key,
                 "operator": c.operator, "attribute_value": c.attribute_value} for c in g.conditions]}
            for g in policy.condition_groups
        ]
    for row in caller.get(SSO).json():
        provider = org.sso_providers[row["id"]]
        assert row["default_workspace_ids"] == list(provider.default_workspace_ids)
        assert row["attribute_mapping_load_error"] == provider.attribute_mapping_load_error
        mapping = provider.attribute_mapping_keys
        keys = None if mapping is None else {name: {"name": name, "array": array} for name, array in mapping.items()}
        assert row["attribute_mapping"] == (None if keys is None else {"keys": keys})


def test_a_members_personal_access_tokens_die_when_they_leave_the_org(start):
    sandbox, caller = start()
    org = sandbox.org
    owner = next(k.owner_ls_user_id for k in org.api_keys.values()
                 if k.kind == "personal_access_token" and k.revoked_at is None)
    # One of theirs revoked earlier keeps the time it was revoked (as a second DELETE does).
    old = org.create_api_key(PERSONAL_ACCESS_TOKEN, "old laptop", owner_ls_user_id=owner)
    revoked_at = caller.delete(f"{PATS}/{old.id}").json()["revoked_at"]
    clock = org.clock
    org.clock = lambda: clock() + 3600
    theirs = {k.id for k in org.api_keys.values() if k.kind == "personal_access_token" and k.owner_ls_user_id == owner}
    others = {row["id"]: row["revoked_at"] for row in caller.get(PATS).json() if row["id"] not in theirs}
    org.remove_member(owner)
    listed = {row["id"]: row["revoked_at"] for row in caller.get(PATS).json()}
    assert all(listed[key_id] is not None for key_id in theirs)
    assert listed[old.id] == revoked_at
    assert {key_id: listed[key_id] for key_id in others} == others  # nobody else's changed


def test_the_sandboxs_own_key_is_a_listed_service_key_whose_use_shows(start):
    sandbox, caller = start(key_role="org-user")
    org = sandbox.org
    own = org.api_key_by_secret(sandbox.api_key)
    assert own is not None and own.kind == SERVICE_KEY
    assert org.roles[own.org_role_id].name == "ORGANIZATION_USER"
    org.clock = lambda: 1_900_000_000  # 2030-03-17: a later request moves last_used_at there
    row = next(r for r in caller.get(SERVICE_KEYS).json() if r["id"] == own.id)
    assert row["short_key"] == own.short_key and sandbox.api_key not in json.dumps(row)
    assert row["last_used_at"] == "2030-03-17T17:46:40Z"


def test_a_revoked_or_expired_key_is_refused_as_a_bad_key(start):
    # langsmith-api.md: 401 for a bad key; a revoked key stays listed (with revoked_at) but no
    # longer authenticates, and neither does one past its expires_at.
    sandbox, caller = start()
    org = sandbox.org
    own = org.api_key_by_secret(sandbox.api_key)
    assert caller.get(SERVICE_KEYS).status_code == 200
    own.expires_at = format_timestamp(int(org.clock()) - 1)
    expired = caller.get(SERVICE_KEYS)
    assert expired.status_code == 401 and "detail" in expired.json(), expired.text
    # Expired from the second its expires_at names, valid up to the second before.
    org.clock = lambda: 1_900_000_000
    own.expires_at = format_timestamp(1_900_000_001)
    assert caller.get(SERVICE_KEYS).status_code == 200
    own.expires_at = format_timestamp(1_900_000_000)
    assert caller.get(SERVICE_KEYS).status_code == 401
    own.expires_at = None
    assert caller.delete(f"{SERVICE_KEYS}/{own.id}").status_code == 200  # the last thing it does
    for path in (SERVICE_KEYS, POLICIES, "/api/v1/orgs/current/info"):
        refused = caller.get(path)  # the caller checks the 401's shape: {"error"} on the platform
        assert refused.status_code == 401, (path, refused.text)
    assert org.api_keys[own.id].last_used_at is not None and org.api_keys[own.id].revoked_at is not None


def test_the_leak_fault_puts_full_secrets_in_listings(start):
    sandbox, caller = start(faults=FaultConfig(leak_full_keys=True))
    org = sandbox.org
    text = caller.get(SERVICE_KEYS).text + caller.get(PATS).text + caller.get(SCIM_TOKENS).text
    leaked = [k.secret for k in org.api_keys.values() if k.kind != WORKSPACE_SERVICE_KEY]
    leaked += [t.token for t in org.scim_tokens.values()]
    assert leaked and all(secret in text for secret in leaked)
    # In both fields FaultConfig names: short_key/short_token and key/token.
    for row in caller.get(SERVICE_KEYS).json() + caller.get(PATS).json():
        assert row["short_key"] == row["key"] == org.api_keys[row["id"]].secret
    for row in caller.get(SCIM_TOKENS).json():
        assert row["short_token"] == row["token"] == org.scim_tokens[row["id"]].token
    sandbox.faults.leak_full_keys = False
    assert not any(secret in caller.get(SERVICE_KEYS).text for secret in leaked)


@pytest.mark.parametrize("section", ROUTED_SECTIONS)
def test_a_missing_section_answers_404_and_the_others_stay(start, section):
    sandbox, caller = start(missing_sections=(section,))
    for other, path, params, _ in READS:
        response = read(caller, sandbox, path, params)
        assert response.status_code == (404 if other == section else 200), (other, path)
    with pytest.raises(ValueError, match="missing_sections"):
        SandboxServer(generate_org(seed=1, members=2, workspaces=1), missing_sections=("groups",))


def test_creating_a_service_key_answers_its_secret_once_and_is_audited(start):
    sandbox, caller = start()
    org = sandbox.org
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    workspace = org.shared_workspaces()[1]
    before = len(org.audit_log)
    created = caller.post(SERVICE_KEYS, json={
        "description": "made by a test", "role_id": viewer, "workspaces": [workspace.id],
        "expires_at": format_timestamp(int(org.clock()) + 10 * 86400),  # within any cap
    })
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["key"].startswith("lsv2_sk_") and body["short_key"] == f"lsv2_sk_...{body['key'][-4:]}"
    assert body["workspace_names"] == [workspace.display_name] and body["role_id"] == viewer
    assert body["key"] not in caller.get(SERVICE_KEYS).text
    event = org.audit_log.events()[-1]
    assert len(org.audit_log) == before + 1
    assert event.operation == "create_service_key" and event.resource_ids == (body["id"],)
    assert event.actor.api_key_id == org.api_key_by_secret(sandbox.api_key).id
    revoked = caller.delete(f"{SERVICE_KEYS}/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert org.audit_log.events()[-1].operation == "delete_service_key"
    assert caller.delete(f"{SERVICE_KEYS}/{org.shared_workspaces()[0].id}").status_code == 404
    # A personal access token is no service key: this route neither finds nor revokes it.
    pat = next(k for k in org.api_keys.values() if k.kind == PERSONAL_ACCESS_TOKEN and k.revoked_at is None)
    assert caller.delete(f"{SERVICE_KEYS}/{pat.id}").status_code == 404 and pat.revoked_at is None


def test_a_key_created_read_only_without_a_role_gets_the_reader_role(start):
    # APIKeyCreateRequest: without role_id, WORKSPACE_ADMIN, or the reader when read_only is true.
    sandbox, caller = start()
    org = sandbox.org
    made = caller.post(SERVICE_KEYS, json={"description": "reader", "read_only": True})
    assert made.status_code == 200, made.text
    assert made.json()["role_id"] == org.role_by_name("WORKSPACE_VIEWER").id
    assert made.json()["read_only"] is True
    listed = next(row for row in caller.get(SERVICE_KEYS).json() if row["id"] == made.json()["id"])
    assert listed["read_only"] is True and listed["role_id"] == made.json()["role_id"]
    admin = caller.post(SERVICE_KEYS, json={"description": "writer"}).json()
    assert admin["role_id"] == org.role_by_name("WORKSPACE_ADMIN").id and admin["read_only"] is False
    # Body fields of the wrong type are FastAPI's 422s, not silently coerced.
    for body, name in (({"read_only": "perhaps"}, "read_only"), ({"description": 7}, "description")):
        bad = caller.post(SERVICE_KEYS, json=body)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", name], bad.text


def test_an_org_admin_changes_a_service_keys_roles_without_rotating_it(start):
    # langsmith-api.md: PATCH /api/v1/orgs/current/service-keys/{id} {role_id, org_role_id}
    # (LangChain's later spec and Terraform; not in the vendored one, so no schema to check).
    sandbox, caller = start()
    org = sandbox.org
    made = caller.post(SERVICE_KEYS, json={"description": "ci"}).json()
    viewer, org_viewer = org.role_by_name("WORKSPACE_VIEWER").id, org.role_by_name("ORGANIZATION_VIEWER").id
    changed = caller.patch(f"{SERVICE_KEYS}/{made['id']}", json={"role_id": viewer, "org_role_id": org_viewer})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["role_id"], changed.json()["org_role_id"]) == (viewer, org_viewer)
    listed = next(row for row in caller.get(SERVICE_KEYS).json() if row["id"] == made["id"])
    assert listed["short_key"] == made["short_key"] and listed["role_id"] == viewer  # not rotated
    # Not audited here: `update_service_key` is outside the vendored AuditLogOperation enum, and
    # the log must still read as the schema says (the caller checks it).
    assert org.audit_log.events()[-1].operation == "create_service_key"
    assert caller.get(AUDIT, params=WINDOW).status_code == 200
    assert caller.patch(f"{SERVICE_KEYS}/{made['id']}", json={"role_id": org_viewer}).status_code == 404
    assert caller.patch(f"{SERVICE_KEYS}/{viewer}", json={"role_id": viewer}).status_code == 404
    # Only an org service key's roles change here: a workspace key or a PAT is no service key.
    for kind in (WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN):
        other_kind = next(k for k in org.api_keys.values() if k.kind == kind and k.revoked_at is None)
        refused = caller.patch(f"{SERVICE_KEYS}/{other_kind.id}", json={"role_id": viewer})
        assert refused.status_code == 404 and "detail" in refused.json(), refused.text
    bad = caller.patch(f"{SERVICE_KEYS}/{made['id']}", json={"role_id": "admin"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "role_id"]
    _, user_caller = start(key_role="org-user")  # Organization User: no organization:manage
    other = user_caller.sandbox.org.api_key_by_secret(user_caller.sandbox.api_key)
    assert user_caller.patch(f"{SERVICE_KEYS}/{other.id}", json={"role_id": viewer}).status_code == 403


def test_key_creation_follows_the_orgs_expiry_cap_and_the_plan(start):
    sandbox, caller = start()
    sandbox.org.settings.max_service_key_expiry_days = 30
    no_expiry = caller.post(SERVICE_KEYS, json={"description": "forever"})
    assert no_expiry.status_code == 400 and "30 days" in no_expiry.json()["detail"]
    too_long = caller.post(SERVICE_KEYS, json={"description": "long", "expires_at": "2099-01-01T00:00:00Z"})
    assert too_long.status_code == 400
    bad = caller.post(SERVICE_KEYS, json={"description": "x", "expires_at": "soon"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "expires_at"]
    # pydantic's lax reading, as FastAPI's: Unix time as a JSON number is a datetime too.
    in_a_week = int(sandbox.org.clock()) + 7 * 86400
    as_number = caller.post(SERVICE_KEYS, json={"description": "unix", "expires_at": in_a_week})
    assert as_number.status_code == 200, as_number.text
    assert as_number.json()["expires_at"].startswith(format_timestamp(in_a_week)[:19])
    plus, plus_caller = start("plus")
    viewer = plus.org.role_by_name("WORKSPACE_VIEWER").id
    refused = plus_caller.post(SERVICE_KEYS, json={"description": "x", "role_id": viewer})
    assert refused.status_code == 403 and "Enterprise" in refused.json()["detail"]
    assert plus_caller.post(SERVICE_KEYS, json={"description": "admin key"}).status_code == 200
    # Workspace Admin, named or not, is every plan's; so is read_only's reader (it predates RBAC).
    admin = plus.org.role_by_name("WORKSPACE_ADMIN").id
    named_admin = plus_caller.post(SERVICE_KEYS, json={"description": "admin", "role_id": admin})
    assert named_admin.status_code == 200 and named_admin.json()["role_id"] == admin, named_admin.text
    reader = plus_caller.post(SERVICE_KEYS, json={"description": "reader", "read_only": True})
    assert reader.status_code == 200 and reader.json()["role_id"] == viewer, reader.text


def test_each_kind_of_key_follows_its_own_expiry_cap(start):
    # max_service_key_expiry_days caps org service keys, max_api_key_expiry_days workspace keys.
    sandbox, caller = start()
    settings, workspace = sandbox.org.settings, sandbox.org.shared_workspaces()[0]
    settings.max_service_key_expiry_days, settings.max_api_key_expiry_days = None, 30
    assert caller.post(SERVICE_KEYS, json={"description": "forever"}).status_code == 200
    capped = caller.post(WORKSPACE_KEYS, tenant_id=workspace.id, json={"description": "forever"})
    assert capped.status_code == 400 and "30 days" in capped.json()["detail"], capped.text
    settings.max_service_key_expiry_days, settings.max_api_key_expiry_days = 30, None
    assert caller.post(WORKSPACE_KEYS, tenant_id=workspace.id, json={"description": "forever"}).status_code == 200
    assert caller.post(SERVICE_KEYS, json={"description": "forever"}).status_code == 400


def test_workspace_keys_are_created_and_revoked_in_their_workspace(start):
    sandbox, caller = start()
    workspace, other = sandbox.org.shared_workspaces()[:2]
    in_ten_days = format_timestamp(int(sandbox.org.clock()) + 10 * 86400)  # within any cap
    created = caller.post(WORKSPACE_KEYS, tenant_id=workspace.id,
                          json={"description": "ws key", "expires_at": in_ten_days})
    assert created.status_code == 200 and created.json()["access_scope"] == "workspace"
    # A workspace key acts in its workspace only: no org role, even when the body names one.
    assert created.json()["org_role_id"] is None
    org_viewer = sandbox.org.role_by_name("ORGANIZATION_VIEWER").id
    named = caller.post(WORKSPACE_KEYS, tenant_id=workspace.id,
                        json={"description": "ws key", "expires_at": in_ten_days, "org_role_id": org_viewer})
    assert named.status_code == 200 and named.json()["org_role_id"] is None, named.text
    key_id = created.json()["id"]
    assert key_id in {r["id"] for r in caller.get(WORKSPACE_KEYS, tenant_id=workspace.id).json()}
    assert key_id not in {r["id"] for r in caller.get(WORKSPACE_KEYS, tenant_id=other.id).json()}
    assert caller.delete(f"{WORKSPACE_KEYS}/{key_id}", tenant_id=other.id).status_code == 404
    made = sandbox.org.audit_log.events()[-1]
    assert made.operation == "create_api_key" and made.workspace_id == workspace.id
    assert caller.delete(f"{WORKSPACE_KEYS}/{key_id}", tenant_id=workspace.id).status_code == 200
    event = sandbox.org.audit_log.events()[-1]
    assert event.operation == "delete_api_key" and event.workspace_id == workspace.id


def test_a_workspace_key_created_without_a_body_takes_the_specs_defaults(start):
    # POST /api/v1/api-key's body is optional in the spec (default {"description": "Default API
    # key", ...}): no body is a key with those defaults, not a 422. The org route's body is required.
    sandbox, caller = start()
    sandbox.org.settings.max_api_key_expiry_days = None  # the default body sets no expiry
    workspace = sandbox.org.shared_workspaces()[0]
    created = caller.post(WORKSPACE_KEYS, tenant_id=workspace.id)
    assert created.status_code == 200, created.text
    assert created.json()["description"] == "Default API key"
    assert created.json()["id"] in {r["id"] for r in caller.get(WORKSPACE_KEYS, tenant_id=workspace.id).json()}
    refused = caller.post(SERVICE_KEYS)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body"]


def test_revoking_a_personal_access_token_answers_as_the_spec_names_it(start):
    # DELETE /api/v1/orgs/current/personal-access-tokens/{pat_id}: 200 with the revoked row (the
    # caller checks it against APIKeyGetResponse), 404 for no such token, and FastAPI's 422 for a
    # malformed id, whose loc names the path parameter as the spec does: pat_id.
    sandbox, caller = start()
    pat = next(k for k in sandbox.org.api_keys.values()
               if k.kind == "personal_access_token" and k.revoked_at is None)
    revoked = caller.delete(f"{PATS}/{pat.id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["id"] == pat.id and revoked.json()["revoked_at"] is not None
    assert list(sandbox.org.audit_log.events()[-1].resource_ids) == [pat.id]
    service_key = next(k.id for k in sandbox.org.api_keys.values() if k.kind == SERVICE_KEY)
    assert caller.delete(f"{PATS}/{service_key}").status_code == 404  # a service key is no PAT
    malformed = caller.delete(f"{PATS}/not-an-id")
    assert malformed.status_code == 422
    assert [error["loc"] for error in malformed.json()["detail"]] == [["path", "pat_id"]]
    for path in (f"{SERVICE_KEYS}/not-an-id", f"{WORKSPACE_KEYS}/not-an-id"):
        tenant = sandbox.org.shared_workspaces()[0].id if path.startswith(WORKSPACE_KEYS) else None
        refused = caller.delete(path, tenant_id=tenant)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["path", "api_key_id"]


def test_access_policy_routes(start):
    sandbox, caller = start()
    org = sandbox.org
    editor = org.role_by_name("WORKSPACE_USER").id
    payload = {
        "name": "No staging deletes", "description": "", "effect": "deny", "role_ids": [editor],
        "condition_groups": [{"permission": "datasets:delete", "resource_type": "dataset", "conditions": [
            {"attribute_name": "resource_tag_key", "attribute_key": "env", "operator": "equals",
             "attribute_value": "staging"}]}],
    }
    created = caller.post(POLICIES, json=payload)
    assert created.status_code == 201
    policy_id = created.json()["id"]
    one = caller.get(f"{API_POLICIES}/{policy_id}").json()
    assert one["effect"] == "deny" and one["role_ids"] == [editor]
    assert one["condition_groups"] == payload["condition_groups"]
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    assert caller.post(f"{POLICIES}/roles/{viewer}/access-policies",
                       json={"access_policy_ids": [policy_id]}).status_code == 204
    assert caller.get(f"{POLICIES}/{policy_id}").json()["role_ids"] == [editor, viewer]
    assert caller.post(POLICIES, json={**payload, "effect": "maybe"}).status_code == 400
    unknown = caller.get(f"{POLICIES}/{org.shared_workspaces()[0].id}")
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert caller.get(f"{POLICIES}/not-an-id").status_code == 400
    # A malformed id is the same 400 on every access-policy route, not a 204 or a 404.
    for method, path, body in (("DELETE", f"{POLICIES}/not-an-id", None),
                               ("POST", f"{POLICIES}/roles/not-a-role/access-policies",
                                {"access_policy_ids": [policy_id]}),
                               ("POST", f"{POLICIES}/roles/{viewer}/access-policies",
                                {"access_policy_ids": ["not-a-policy"]})):
        malformed = caller.request(method, path, json=body)
        assert malformed.status_code == 400 and "invalid" in malformed.json()["error"], (path, malformed.text)
    assert caller.delete(f"{POLICIES}/{policy_id}").status_code == 204
    assert caller.get(f"{POLICIES}/{policy_id}").status_code == 404
    operations = [e.operation for e in org.audit_log.events()[-3:]]
    assert operations == ["create_access_policy", "attach_access_policies", "delete_access_policy"]


def test_an_access_policy_body_of_the_wrong_shape_is_a_bad_request(start):
    # CreateAccessPolicyPayload: role_ids an array of strings, description and the conditions'
    # fields strings, conditions objects. A body that is not that shape is the spec's 400 "Bad
    # request" ({"error": ...}), not a 404 "Role not found" and not a policy with a condition
    # silently dropped (a deny without its condition denies everything).
    sandbox, caller = start()
    editor = sandbox.org.role_by_name("WORKSPACE_USER").id
    condition = {"attribute_name": "resource_tag_key", "attribute_key": "env", "operator": "equals",
                 "attribute_value": "staging"}
    good = {"name": "No staging deletes", "effect": "deny", "role_ids": [editor],
            "condition_groups": [{"permission": "datasets:delete", "resource_type": "dataset",
                                  "conditions": [condition]}]}
    before = set(sandbox.org.access_policies)
    for wrong in (
        {"name": ""},  # a policy needs a name
        {"name": 7},
        {"role_ids": editor},  # one id, not a list of them
        {"role_ids": [7]},
        {"description": 42},
        {"condition_groups": [{**good["condition_groups"][0], "conditions": ["env=staging"]}]},
        {"condition_groups": [{**good["condition_groups"][0], "conditions": [{**condition, "attribute_value": 3}]}]},
    ):
        refused = caller.post(POLICIES, json={**good, **wrong})
        assert refused.status_code == 400, (wrong, refused.text)
        assert set(refused.json()) == {"error"}
    assert set(sandbox.org.access_policies) == before
    assert caller.post(POLICIES, json={**good, "description": None}).status_code == 201  # null: the zero value


def test_an_access_policy_names_only_the_specs_operators_attributes_and_permissions(start):
    # authz_internal.AccessPolicy serves each condition's operator as an AbacOperator, its
    # attribute_name as an AbacAttributeName and each group's permission as a Permission (enums):
    # a creation with another value (or none) is the 400 "Bad request", never a policy that every
    # later GET of it, and of the listing, would serve outside the schema (the caller checks both).
    sandbox, caller = start()
    group = {"permission": "datasets:delete", "resource_type": "dataset", "conditions": [
        {"attribute_name": "resource_tag_key", "attribute_key": "env", "operator": "equals",
         "attribute_value": "staging"}]}
    condition = group["conditions"][0]
    before = set(sandbox.org.access_policies)
    for wrong_group in (
        {**group, "conditions": [{**condition, "operator": "contains"}]},
        {**group, "conditions": [{**condition, "attribute_name": "resource_name"}]},
        {**group, "conditions": [{key: value for key, value in condition.items() if key != "operator"}]},
        {**group, "permission": "datasets:destroy"},
        {key: value for key, value in group.items() if key != "permission"},
    ):
        refused = caller.post(POLICIES, json={"name": "x", "effect": "deny", "condition_groups": [wrong_group]})
        assert refused.status_code == 400, (wrong_group, refused.text)
        assert set(refused.json()) == {"error"}
    assert set(sandbox.org.access_policies) == before
    assert caller.get(POLICIES).status_code == 200
    kept = caller.post(POLICIES, json={"name": "x", "effect": "deny", "condition_groups": [
        {**group, "conditions": [{key: value for key, value in condition.items() if key != "attribute_name"}]}]})
    assert kept.status_code == 201, kept.text  # attribute_name's one value is the default
    served = caller.get(f"{POLICIES}/{kept.json()['id']}").json()
    assert served["condition_groups"][0]["conditions"][0]["attribute_name"] == "resource_tag_key"
    # And every value those enums list is taken: each operator, each permission.
    schemas = load_spec()["components"]["schemas"]
    operators, permissions = (schemas[f"authz_internal.{name}"]["enum"] for name in ("AbacOperator", "Permission"))
    every = caller.post(POLICIES, json={"name": "every value", "effect": "allow", "condition_groups": [
        {**group, "permission": permission, "conditions": [{**condition, "operator": op} for op in operators]}
        for permission in permissions]})
    assert every.status_code == 201, every.text


TAGS = "/api/v1/workspaces/current/tags"
TAGGINGS = "/api/v1/workspaces/current/taggings"
RESOURCE_TAGS = "/api/v1/workspaces/current/tags/resource"


def test_workspace_tags_taggings_and_a_resources_tags(start):
    # langsmith-api.md documents the three tag reads (X-Tenant-Id, workspaces:read); the caller
    # checks TagKeyWithValues, TaggingsResponse and TagKeyWithValuesAndTaggings.
    sandbox, caller = start("plus")  # tags are on every plan
    org = sandbox.org
    workspace, other = org.shared_workspaces()[:2]
    project = "0f0f0f0f-0000-4000-8000-000000000001"
    for key, value in (("env", "production"), ("team", "search-ranking")):
        org.tag_resource(workspace.id, key, value, "project", project, "ranking-traces")
    org.tag_resource(workspace.id, "env", "staging", "evaluator", project, "judge")
    org.tag_resource(other.id, "env", "production", "dataset", project, "elsewhere")
    org.tag_resource(workspace.id, "owner", "alice", "dataset", "0f0f0f0f-0000-4000-8000-000000000002", "evals")
    queue = "0f0f0f0f-0000-4000-8000-000000000003"
    org.tag_resource(workspace.id, "env", "production", "queue", queue, "review")

    tags = caller.get(TAGS, tenant_id=workspace.id)
    assert tags.status_code == 200, tags.text
    keys = {row["key"]: {v["value"] for v in row["values"]} for row in tags.json()}
    assert {"production", "staging"} <= keys["env"] and "search-ranking" in keys["team"]
    assert len({row["id"] for row in tags.json()}) == len(workspace.tag_keys)  # this workspace's only

    production = next(v for k in workspace.tag_keys.values() if k.key == "env"
                      for v in k.values.values() if v.value == "production")
    one = caller.get(TAGGINGS, tenant_id=workspace.id, params={"tag_value_id": production.id}).json()
    assert [row["tag_value"] for row in one] == ["production"]
    projects = {r["resource_id"]: r["resource_name"] for r in one[0]["resources"]["projects"]}
    assert projects[project] == "ranking-traces"
    assert project not in {r["resource_id"] for r in one[0]["resources"]["datasets"]}  # the other workspace's
    assert [r["resource_id"] for r in one[0]["resources"]["queues"]] == [queue]  # a queue's bucket is "queues"
    assert caller.get(TAGGINGS, tenant_id=other.id, params={"tag_value_id": production.id}).json() == []
    everything = caller.get(TAGGINGS, tenant_id=workspace.id).json()
    assert {row["tag_value_id"] for row in everything} == {v.id for k in workspace.tag_keys.values()
                                                          for v in k.values.values()}

    on_project = caller.get(RESOURCE_TAGS, tenant_id=workspace.id,
                            params={"resource_type": "project", "resource_id": project}).json()
    assert {(row["key"], v["value"]) for row in on_project for v in row["values"]} == {
        ("env", "production"), ("team", "search-ranking")}  # not the evaluator's env=staging
    assert {row["key"] for row in on_project} == {"env", "team"}  # no key of values elsewhere only
    assert all(t["resource_id"] == project and t["resource_type"] == "project"
               for row in on_project for v in row["values"] for t in v["taggings"])

    for path, params, loc in (
        (TAGGINGS, {"tag_value_id": "x"}, ["query", "tag_value_id"]),
        (RESOURCE_TAGS, {"resource_id": project}, ["query", "resource_type"]),
        (RESOURCE_TAGS, {"resource_type": "run", "resource_id": project}, ["query", "resource_type"]),
        (RESOURCE_TAGS, {"resource_type": "project"}, ["query", "resource_id"]),
        (RESOURCE_TAGS, {"resource_type": "project", "resource_id": "x"}, ["query", "resource_id"]),
    ):
        bad = caller.get(path, tenant_id=workspace.id, params=params)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == loc, (params, bad.text)
    # A required parameter left out is FastAPI's "missing", not a malformed value.
    for params in ({"resource_id": project}, {"resource_type": "project"}):
        left_out = caller.get(RESOURCE_TAGS, tenant_id=workspace.id, params=params).json()["detail"][0]
        assert (left_out["type"], left_out["msg"]) == ("missing", "Field required"), (params, left_out)
    missing = caller.get(TAGS)
    assert missing.status_code == 403 and missing.json()["error"] == "org_scoped_key_requires_workspace"


def test_generated_orgs_tag_what_their_policies_name(start):
    sandbox, caller = start()
    org = sandbox.org
    named = {c.attribute_key for p in org.access_policies.values() for g in p.condition_groups for c in g.conditions}
    workspace = next(w for w in org.shared_workspaces() if w.tag_keys)
    listed = {row["key"] for row in caller.get(TAGS, tenant_id=workspace.id).json()}
    assert listed and listed <= named


def test_scim_token_routes(start):
    sandbox, caller = start()
    created = caller.post(SCIM_TOKENS, json={"description": "Okta"})
    assert created.status_code == 201
    token = created.json()
    assert token["token"].startswith("lsv2_scim_") and token["token"][-4:] in token["short_token"]
    listed = caller.get(SCIM_TOKENS).text
    assert token["id"] in listed and token["token"] not in listed
    one = caller.get(f"{SCIM_TOKENS}/{token['id']}")  # checked against scim.ScimTokenResponse
    assert one.status_code == 200 and one.json()["short_token"] == token["short_token"]
    assert token["token"] not in one.text
    clock = sandbox.org.clock
    sandbox.org.clock = lambda: clock() + 3600  # the change is dated an hour after the creation
    renamed = caller.patch(f"{SCIM_TOKENS}/{token['id']}", json={"description": "Okta prod"})
    assert renamed.status_code == 200 and renamed.json()["description"] == "Okta prod"
    assert renamed.json()["updated_at"] > renamed.json()["created_at"] == token["created_at"]
    event = sandbox.org.audit_log.events()[-1]
    assert (event.operation, event.resource_ids, event.http_method) == ("update_scim_token", (token["id"],), "PATCH")
    assert "last_used_at" not in renamed.json(), "a token never used has no last_used_at"
    # The platform parses the id as Go's uuid.Parse does: any case finds the token; a malformed id
    # is its 400 (as the access-policy routes answer), where the sandbox matched the text exactly.
    upper = caller.get(f"{SCIM_TOKENS}/{token['id'].upper()}")
    assert upper.status_code == 200 and upper.json()["id"] == token["id"], upper.text
    malformed = caller.get(f"{SCIM_TOKENS}/not-a-uuid")
    assert malformed.status_code == 400 and set(malformed.json()) == {"error"}, malformed.text
    assert caller.delete(f"{SCIM_TOKENS}/{token['id']}").status_code == 204
    event = sandbox.org.audit_log.events()[-1]
    assert (event.operation, event.resource_ids, event.http_method) == ("delete_scim_token", (token["id"],), "DELETE")
    assert caller.get(f"{SCIM_TOKENS}/{token['id']}").status_code == 404
    # A body the Go service cannot read is its 400 {"error": ...} (undocumented for these routes;
    # the caller checks the shape), and makes no token.
    before = set(sandbox.org.scim_tokens)
    for body in (b"{", b"[]"):
        unreadable = caller.post(SCIM_TOKENS, data=body, headers={"Content-Type": "application/json"})
        assert unreadable.status_code == 400 and set(unreadable.json()) == {"error"}, unreadable.text
    assert set(sandbox.org.scim_tokens) == before


def test_a_scim_token_description_that_is_no_string_is_a_bad_request(start):
    # scim.CreateScimTokenPayload / UpdateScimTokenPayload type description as a string: Go's
    # decoder refuses another JSON type (400), where the sandbox used to store str(value) or
    # drop it and answer 200.
    sandbox, caller = start()
    before = set(sandbox.org.scim_tokens)
    for description in (42, {"team": "okta"}, ["okta"], True):
        made = caller.post(SCIM_TOKENS, json={"description": description})
        assert made.status_code == 400 and set(made.json()) == {"error"}, made.text
    assert set(sandbox.org.scim_tokens) == before
    token = caller.post(SCIM_TOKENS, json={"description": "Okta"}).json()
    changed = caller.patch(f"{SCIM_TOKENS}/{token['id']}", json={"description": 7})
    assert changed.status_code == 400 and set(changed.json()) == {"error"}, changed.text
    assert sandbox.org.scim_tokens[token["id"]].description == "Okta"
    assert caller.post(SCIM_TOKENS, json={"description": None}).status_code == 201  # null: Go's zero value


def test_service_accounts_are_listed_only(start):
    """langsmith-api.md documents the listing only (DESIGN 6: the sandbox serves only documented
    routes): creating and deleting are not served; the org state still changes them for tests."""
    sandbox, caller = start()
    assert caller.post(SERVICE_ACCOUNTS, json={"name": "exporter"}).status_code == 405
    account = sandbox.org.create_service_account("exporter")
    assert account.id in {a["id"] for a in caller.get(SERVICE_ACCOUNTS).json()}
    assert caller.delete(f"{SERVICE_ACCOUNTS}/{account.id}").status_code == 404
    # (the path is a member's, /members/{identity_id}, which GET is not)
    assert caller.get("/api/v1/workspaces/current/members/pending",
                      tenant_id=sandbox.org.shared_workspaces()[0].id).status_code == 405


def test_writes_need_organization_manage_and_a_read_only_key_manages_no_members(start):
    sandbox, caller = start(key_role="org-user")
    assert caller.post(SERVICE_KEYS, json={"description": "x"}).status_code == 403
    assert caller.post(POLICIES, json={"name": "x", "effect": "allow"}).status_code == 403
    viewer_sandbox, viewer = start(key_role="org-viewer")
    org = viewer_sandbox.org
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if org.membership(workspace.id, m.ls_user_id) is None)
    refused = viewer.post("/api/v1/workspaces/current/members", tenant_id=workspace.id,
                          json={"org_identity_id": outsider.id, "role_id": org.role_by_name("WORKSPACE_ADMIN").id})
    assert refused.status_code == 403 and org.membership(workspace.id, outsider.ls_user_id) is None
    own = viewer.get("/api/v1/workspaces").json()
    assert own and all(w["role_name"] == "Viewer" for w in own)


PLAN_FLAGS = ("can_use_rbac", "can_use_abac", "can_use_audit_logs", "can_use_saml_sso", "can_set_api_key_max_expiry")


def test_org_info_carries_the_orgs_settings_per_plan(start):
    sandbox, caller = start()
    info = caller.get("/api/v1/orgs/current/info").json()
    settings = sandbox.org.settings
    assert info["max_pat_expiry_days"] == settings.max_pat_expiry_days
    assert info["scim_group_name_separator"] == settings.scim_group_name_separator
    assert info["config"]["can_set_api_key_max_expiry"] is True
    platform = caller.get("/api" + PLATFORM_INFO).json()
    assert None not in platform.values(), "the Go twin leaves out what is null"
    assert platform["sso_login_slug"] == settings.sso_login_slug
    # Every security setting is the org's own, and the plan's flags are all on.
    for name, value in dataclasses.asdict(settings).items():
        assert info[name] == (list(value) if isinstance(value, tuple) else value), name
    assert all(info["config"][flag] is True for flag in PLAN_FLAGS)
    assert info["tier"] == info["config"]["plan_tier"] == "enterprise"
    plus, plus_caller = start("plus")
    plus_info = plus_caller.get("/api/v1/orgs/current/info").json()
    assert plus_info["config"]["can_use_saml_sso"] is False and plus_info["max_pat_expiry_days"] is None
    # Plus has none of the Enterprise features (langsmith-api.md, "Key permissions and plan limits").
    assert not any(plus_info["config"][flag] for flag in PLAN_FLAGS)
    assert plus_info["tier"] == plus_info["config"]["plan_tier"] == "plus"


def test_members_carry_login_methods_and_the_enriched_route_scim_groups(start):
    sandbox, caller = start()
    org = sandbox.org
    rows = caller.get("/api/v1/orgs/current/members/active", params={"limit": 500}).json()
    for row in rows:
        member = org.members[row["ls_user_id"]]
        fields = ("provider", "provisioning_method", "saml_provider_id", "provider_user_id", "username")
        assert [[m[name] for name in fields] for m in row["linked_login_methods"]] == [
            [getattr(m, name) for name in fields] for m in member.linked_login_methods
        ]
    enriched = caller.get("/v1/platform/orgs/current/members", params={"limit": 500}).json()
    active = [row for row in enriched if not row["is_pending"]]
    assert any(row["scim_groups"] for row in active)
    for row in active:
        member = org.members[row["ls_user_id"]]
        assert [g["name"] for g in row["scim_groups"]] == [g.name for g in member.scim_groups]
        assert [m.get("provisioning") for m in row["linked_login_methods"]] == [
            m.provisioning_method for m in member.linked_login_methods
        ]


def test_cli_plays_missing_sections_leaks_and_read_only_keys():
    process = subprocess.Popen(
        [CLI, "sandbox", "--members", "10", "--workspaces", "2", "--missing-sections",
         "audit_events,access_policies", "--leak-full-keys", "--key-role", "org-viewer"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = json.loads(process.stdout.readline())
        headers = {"X-API-Key": first["api_key"], "X-Organization-Id": first["organization_id"]}
        get = lambda path, **params: requests.get(first["url"] + path, headers=headers, params=params, timeout=10)  # noqa: E731
        assert get(AUDIT, **WINDOW).status_code == 404
        assert get(POLICIES).status_code == 404
        assert get(PATS).status_code == 403
        keys = get(SERVICE_KEYS).json()
        own = first["api_key"]
        assert any(row["short_key"] == own and row["key"] == own for row in keys), "leaked on purpose"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    refused = subprocess.run([CLI, "sandbox", "--missing-sections", "groups"], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "--missing-sections" in refused.stderr and "groups" in refused.stderr


def test_the_platform_write_routes_documented_refusals(start):
    # Every refusal the spec documents for the access-policy and SCIM-token routes (403, 404,
    # 401), each checked against its schema by the caller. Those schemas (abac.ErrorResponse,
    # scim.ErrorResponse) require nothing, so the Go service's {"error": ...} is asserted here.
    sandbox, caller = start()
    org = sandbox.org
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    unknown = "0f0f0f0f-0000-4000-8000-00000000abcd"
    policy = {"name": "Read prod only", "effect": "allow", "role_ids": [viewer], "condition_groups": []}
    policy_id = caller.post(POLICIES, json=policy).json()["id"]
    token_id = caller.post(SCIM_TOKENS, json={"description": "Okta"}).json()["id"]
    not_found = [
        caller.post(POLICIES, json={**policy, "role_ids": [unknown]}),
        caller.post(f"{POLICIES}/roles/{unknown}/access-policies", json={"access_policy_ids": [policy_id]}),
        caller.post(f"{POLICIES}/roles/{viewer}/access-policies", json={"access_policy_ids": [unknown]}),
        caller.get(f"{SCIM_TOKENS}/{unknown}"),
        caller.patch(f"{SCIM_TOKENS}/{unknown}", json={"description": "x"}),
        caller.delete(f"{SCIM_TOKENS}/{unknown}"),
    ]
    # An org-wide key with default roles (Organization User) reads them but may not change them.
    sandbox.api.key_role = "org-user"
    forbidden = [
        caller.post(POLICIES, json=policy),
        caller.delete(f"{POLICIES}/{policy_id}"),
        caller.post(f"{POLICIES}/roles/{viewer}/access-policies", json={"access_policy_ids": [policy_id]}),
        caller.post(SCIM_TOKENS, json={"description": "x"}),
        caller.patch(f"{SCIM_TOKENS}/{token_id}", json={"description": "x"}),
        caller.delete(f"{SCIM_TOKENS}/{token_id}"),
    ]
    assert caller.get(f"{POLICIES}/{policy_id}").status_code == 200
    assert caller.get(f"{SCIM_TOKENS}/{token_id}").status_code == 200
    bad_key = {"X-API-Key": "lsv2_sk_wrong"}
    unauthorized = [
        caller.request(method, path, json=body, headers=bad_key)
        for method, path, body in (("GET", SCIM_TOKENS, None), ("POST", SCIM_TOKENS, {}),
                                   ("GET", f"{SCIM_TOKENS}/{token_id}", None),
                                   ("PATCH", f"{SCIM_TOKENS}/{token_id}", {"description": "x"}),
                                   ("DELETE", f"{SCIM_TOKENS}/{token_id}", None))
    ]
    for status, responses in ((404, not_found), (403, forbidden), (401, unauthorized)):
        for response in responses:
            assert response.status_code == status, (response.request.method, response.request.url, response.text)
            assert list(response.json()) == ["error"] and response.json()["error"], response.text
    assert policy_id in org.access_policies and token_id in org.scim_tokens
    assert org.access_policies[policy_id].role_ids == [viewer]


def test_a_key_expiry_without_a_zone_is_utc_whatever_the_servers_zone(start):
    # FastAPI reads a datetime without a zone as UTC; the sandbox must not take its host's zone.
    sandbox, caller = start()
    in_a_week = int(sandbox.org.clock()) + 7 * 86400
    naive = format_timestamp(in_a_week)[:19]  # "YYYY-MM-DDTHH:MM:SS", no zone
    with in_time_zone():
        created = caller.post(SERVICE_KEYS, json={"description": "naive", "expires_at": naive})
    assert created.status_code == 200, created.text
    assert created.json()["expires_at"].startswith(naive)


def test_attaching_a_policy_again_leaves_its_roles_as_they_were(start):
    # POST .../roles/{role_id}/access-policies answers 204 each time; a policy already attached
    # to the role stays attached once, not twice.
    sandbox, caller = start()
    org = sandbox.org
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    created = caller.post(POLICIES, json={"name": "Twice", "effect": "allow", "role_ids": [], "condition_groups": []})
    policy_id = created.json()["id"]
    made_at = caller.get(f"{POLICIES}/{policy_id}").json()["updated_at"]
    clock = org.clock
    updates = []
    for hours in (1, 2):
        org.clock = lambda hours=hours: clock() + hours * 3600
        attached = caller.post(f"{POLICIES}/roles/{viewer}/access-policies", json={"access_policy_ids": [policy_id]})
        assert attached.status_code == 204, attached.text
        updates.append(caller.get(f"{POLICIES}/{policy_id}").json()["updated_at"])
    assert caller.get(f"{POLICIES}/{policy_id}").json()["role_ids"] == [viewer]
    # The first attachment changes the policy (updated_at moves); the second changes nothing.
    assert made_at < updates[0] == updates[1], (made_at, updates)


def test_revoking_a_key_again_keeps_the_time_it_was_revoked(start):
    # A revoked key stays listed with the time it was revoked; a second DELETE does not move it.
    sandbox, caller = start()
    org = sandbox.org
    pat = next(k for k in org.api_keys.values() if k.kind == "personal_access_token" and k.revoked_at is None)
    first = caller.delete(f"{PATS}/{pat.id}")
    assert first.status_code == 200, first.text
    revoked_at = first.json()["revoked_at"]
    clock = org.clock
    org.clock = lambda: clock() + 3600
    again = caller.delete(f"{PATS}/{pat.id}")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked_at
    assert org.api_keys[pat.id].revoked_at == revoked_at


def test_a_service_key_takes_the_default_org_role_and_unknown_ids_are_404(start):
    # langsmith-api.md: an org-scoped service key created without roles has Organization User
    # (APIKeyCreateRequest); an unknown workspace id is a 404; a revoked key (still listed, with
    # revoked_at) is no longer a key whose roles change: 404 there too.
    sandbox, caller = start()
    org = sandbox.org
    made = caller.post(SERVICE_KEYS, json={"description": "defaults"})
    assert made.status_code == 200, made.text
    assert made.json()["org_role_id"] == org.role_by_name("ORGANIZATION_USER").id
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    nowhere = caller.post(SERVICE_KEYS, json={"description": "nowhere", "workspaces": [viewer]})  # no workspace id
    assert nowhere.status_code == 404 and "detail" in nowhere.json(), nowhere.text
    assert caller.delete(f"{SERVICE_KEYS}/{made.json()['id']}").status_code == 200
    gone = caller.patch(f"{SERVICE_KEYS}/{made.json()['id']}", json={"role_id": viewer})
    assert gone.status_code == 404, gone.text
    assert org.api_keys[made.json()["id"]].role_id == made.json()["role_id"]


def test_a_key_may_expire_exactly_at_the_orgs_cap(start):
    # max_service_key_expiry_days caps a key's life: an expiry that many days away is within
    # the cap, one second more is not.
    sandbox, caller = start()
    org = sandbox.org
    now = int(org.clock())
    org.clock = lambda: now  # the cap is counted from the same second the test counts from
    org.settings.max_service_key_expiry_days = 30
    cap = now + 30 * 86400
    at_cap = caller.post(SERVICE_KEYS, json={"description": "cap", "expires_at": format_timestamp(cap)})
    assert at_cap.status_code == 200, at_cap.text
    beyond = caller.post(SERVICE_KEYS, json={"description": "over", "expires_at": format_timestamp(cap + 1)})
    assert beyond.status_code == 400, beyond.text


def test_an_access_policy_applies_to_workspace_roles_only(start):
    # AccessPolicy.role_ids are "the workspace roles it applies to": an organization role there
    # is a role the route does not find (404, {"error": ...}), and no policy is made.
    sandbox, caller = start()
    org = sandbox.org
    org_role = org.role_by_name("ORGANIZATION_VIEWER").id
    before = set(org.access_policies)
    refused = caller.post(POLICIES, json={"name": "Org", "effect": "allow", "role_ids": [org_role],
                                          "condition_groups": []})
    assert refused.status_code == 404 and "error" in refused.json(), refused.text
    assert set(org.access_policies) == before
    attach = caller.post(f"{POLICIES}/roles/{org_role}/access-policies", json={"access_policy_ids": []})
    assert attach.status_code == 404 and "error" in attach.json(), attach.text


def test_access_policy_routes_read_ids_in_any_case_and_refuse_malformed_role_ids(start):
    # The platform parses every id as Go's uuid.Parse does (as the SCIM-token routes do): an
    # upper-case role or policy id names the same record, in the path or in the body; a
    # malformed role id in a creation is the same 400 as in the attach path, not a 404.
    sandbox, caller = start()
    org = sandbox.org
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    created = caller.post(POLICIES, json={"name": "Upper", "effect": "allow", "role_ids": [viewer.upper()],
                                          "condition_groups": []})
    assert created.status_code == 201, created.text
    policy_id = created.json()["id"]
    assert caller.get(f"{POLICIES}/{policy_id}").json()["role_ids"] == [viewer]
    editor = org.role_by_name("WORKSPACE_USER").id
    attached = caller.post(f"{POLICIES}/roles/{editor.upper()}/access-policies",
                           json={"access_policy_ids": [policy_id.upper()]})
    assert attached.status_code == 204, attached.text
    assert caller.get(f"{POLICIES}/{policy_id}").json()["role_ids"] == [viewer, editor]
    assert org.audit_log.events()[-1].resource_ids == (editor, policy_id)
    before = set(org.access_policies)
    malformed = caller.post(POLICIES, json={"name": "Bad", "effect": "allow", "role_ids": ["not-a-role"]})
    assert malformed.status_code == 400 and "invalid" in malformed.json()["error"], malformed.text
    assert set(org.access_policies) == before


def test_tag_reads_need_workspaces_read_in_the_workspace(start):
    # langsmith-api.md: tags and taggings need workspaces:read there. Every built-in workspace
    # role holds it, so the key's workspace role (Viewer, for an Organization Viewer's key) loses
    # it here: the three tag reads answer 403 {"detail": ...} naming the permission.
    sandbox, caller = start(key_role="org-viewer")
    workspace = sandbox.org.shared_workspaces()[0]
    project = "0f0f0f0f-0000-4000-8000-000000000001"
    reads = ((TAGS, {}), (TAGGINGS, {}), (RESOURCE_TAGS, {"resource_type": "project", "resource_id": project}))
    for path, params in reads:
        assert caller.get(path, tenant_id=workspace.id, params=params).status_code == 200
    sandbox.org.role_by_name("WORKSPACE_VIEWER").permissions.remove("workspaces:read")
    for path, params in reads:
        refused = caller.get(path, tenant_id=workspace.id, params=params)
        assert refused.status_code == 403 and "workspaces:read" in refused.json()["detail"], (path, refused.text)


def test_a_service_key_reaches_every_workspace_it_names_and_keeps_its_default(start):
    # APIKeyCreateRequest: `workspaces` lists every workspace the key reaches and
    # `default_workspace_id` its default one; the answer names them (workspace_names,
    # default_workspace_name), and so does the listing.
    sandbox, caller = start()
    first, second = sandbox.org.shared_workspaces()[:2]
    made = caller.post(SERVICE_KEYS, json={"description": "two", "workspaces": [first.id, second.id],
                                           "default_workspace_id": second.id})
    assert made.status_code == 200, made.text
    listed = next(row for row in caller.get(SERVICE_KEYS).json() if row["id"] == made.json()["id"])
    for row in (made.json(), listed):
        assert row["workspace_names"] == [first.display_name, second.display_name]
        assert row["default_workspace_name"] == second.display_name
