"""The whole access picture (DESIGN.md section 9), for real: the sandbox over HTTP, both Dagster
jobs in-process through ``langsmith-access sync --all-sections``, dbt on DuckDB files.

Every table is compared with what the sandbox holds, computed from its org (never from the
pipeline). Three deployments: an Enterprise org read with an Organization Admin key (everything
read; LangSmith values this project has never seen kept as they come); a Plus org (sections the
plan lacks skipped with their reason, never a failed run); a default-role key on an install
without the access-policy routes and with a server that leaks whole keys in its listings
(skipped by the key, the route and the install; no secret anywhere; the run metadata read back
from a real Dagster instance). Then the faults: a credential listing and an audit window that
fail mid-run.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from langsmith_access import cli, runner
from langsmith_access.names import INVENTORY_JOB, INVENTORY_OP, SYNC_JOB
from langsmith_access.sandbox import FaultConfig, OrgState, SandboxServer, generate_org
from langsmith_access.sandbox.access_records import (
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    WORKSPACE_SERVICE_KEY,
    AccessPolicy,
    PolicyCondition,
    PolicyConditionGroup,
)
from langsmith_access.sandbox.org_state import parse_timestamp
from langsmith_access_tests.helpers import file_digest, point_at, query, tables_holding

DAY = timedelta(days=1)
UNUSED_DAYS = 90


@dataclass
class Synced:
    org: OrgState
    sandbox: SandboxServer
    database: Path
    output: str  # what `sync --all-sections` printed
    started: datetime  # just before the run: the audit log's first window starts 90 days before
    finished: datetime


def creator_of(org: OrgState, created_by: str | None, *, usernames: bool = False) -> str | None:
    """The user id of the one current member ``created_by`` names, in any case: by user id,
    identity id, legacy user id, email, or login user name where the members were read from a
    route that sends those (``/orgs/current/members/active``; the enriched route, read when the
    key may, sends none): credentials.created_by_user_id."""
    def names(member):
        logins = [lm.username for lm in member.linked_login_methods] if usernames else []
        return {n.lower() for n in (member.ls_user_id, member.id, member.user_id, member.email, *logins) if n}
    named = {m.ls_user_id for m in org.active_members() if (created_by or "").lower() in names(m)}
    return named.pop() if len(named) == 1 else None


def sync_all_sections(monkeypatch, sandbox, database) -> tuple[str, datetime, datetime]:
    """``langsmith-access sync --all-sections`` in this process; what it printed, and when."""
    point_at(monkeypatch, sandbox, database)
    out, err = io.StringIO(), io.StringIO()
    started = datetime.now(UTC)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["sync", "--all-sections", "--quiet"])
    finished = datetime.now(UTC)
    assert code == 0, err.getvalue()
    return out.getvalue() + err.getvalue(), started, finished


@pytest.fixture(scope="module")
def enterprise(tmp_path_factory):
    """An Enterprise org read whole, with values LangSmith may add later: a new login provider
    and provisioning method, a new audit operation, a new policy effect. Besides the generated
    deny policies (on Viewer and on Editor), a deny policy on the workspace Admin role
    and on a custom role someone holds, so every report that flags deny policies has some."""
    org = generate_org(seed=5, members=40, workspaces=5, now=int(time.time()))
    newcomer = next(m for m in org.active_members()
                    if all(lm.provisioning_method is None for lm in m.linked_login_methods))
    org.add_login_method(newcomer.ls_user_id, "okta-native", "okta:push")
    org.record("rotate_every_key", resource_ids=["k-1"], path="/api/v1/rotate")
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    org.put_access_policy(AccessPolicy(
        id="4a0e1f6a-0000-4000-8000-00000000a0d1", name="Audit prompts", description="", effect="audit",
        role_ids=[viewer], condition_groups=[PolicyConditionGroup(
            "prompts:read", "prompt", [PolicyCondition("env", "equals", "prod")])],
        created_at=org.now(), updated_at=org.now()))
    held_custom = next(role for _ws, _user, _identity, role in org.workspace_membership_rows(shared_only=True)
                       if org.role(role).is_custom)
    org.put_access_policy(AccessPolicy(
        id="4a0e1f6a-0000-4000-8000-00000000a0d2", name="Legal holds stay", description="", effect="deny",
        role_ids=[org.role_by_name("WORKSPACE_ADMIN").id, held_custom], condition_groups=[PolicyConditionGroup(
            "datasets:delete", "dataset", [PolicyCondition("hold", "equals", "legal")])],
        created_at=org.now(), updated_at=org.now()))
    # A dataset the policy just made protects, and a second value of a key on one resource.
    legal_hold_in = org.shared_workspaces()[0].id
    org.tag_resource(legal_hold_in, "hold", "legal", "dataset", "5d0e1f6a-0000-4000-8000-0000000000d1", "contracts")
    org.tag_resource(legal_hold_in, "team", "growth", "project", "5d0e1f6a-0000-4000-8000-0000000000d2", "funnel")
    org.tag_resource(legal_hold_in, "team", "search-ranking", "project", "5d0e1f6a-0000-4000-8000-0000000000d2",
                     "funnel")
    # A policy attached to no role yet: it applies to no one.
    org.put_access_policy(AccessPolicy(
        id="4a0e1f6a-0000-4000-8000-00000000a0d3", name="Draft", description="", effect="allow", role_ids=[],
        condition_groups=[], created_at=org.now(), updated_at=org.now()))
    # A member who joined just now, with a workspace role and no login yet: not unused access.
    joined = org.add_member("joined.today@example.com", "Joined Today")
    # A failed login just now by a member not seen for longer than the unused days: no use of
    # their access (they stay in report_unused_access). And a read-only service key.
    seen = defaultdict(int)
    for e in org.audit_log.events():
        if e.operation == "login" and e.succeeded is not False and e.actor.ls_user_id:
            seen[e.actor.ls_user_id] = max(seen[e.actor.ls_user_id], e.time_ms)
    long_ago = (time.time() - (UNUSED_DAYS + 2) * 86400) * 1000
    granted = {user for _ws, user, _identity, _role in org.workspace_membership_rows(shared_only=True)}
    locked_out = next(m for m in org.active_members() if m.ls_user_id in granted and seen[m.ls_user_id] < long_ago
                      and parse_timestamp(m.created_at) * 1000 < long_ago)
    org.record_login(locked_out.ls_user_id, succeeded=False)
    next(k for k in org.api_keys.values() if k.kind == SERVICE_KEY and not k.revoked_at).read_only = True
    # created_by in each format LangSmith may send (langsmith-api.md leaves it open): an email in
    # capitals, an identity id, a GitHub user name (unknown here: the enriched members route sends
    # none), something that names nobody; and a key made by a member disabled since
    # (report_credential_hygiene's creator_inactive).
    made = [k for k in org.api_keys.values() if k.kind in (SERVICE_KEY, WORKSPACE_SERVICE_KEY)
            and not k.revoked_at and k.created_by]
    members = [m for m in org.active_members() if not m.is_disabled and m not in (newcomer, locked_out, joined)
               and m.ls_user_id not in {k.created_by for k in made}]
    github = next(m for m in members if any(lm.username for lm in m.linked_login_methods))
    made[0].created_by = members[0].email.upper()
    made[1].created_by = members[1].id
    made[2].created_by = next(lm.username for lm in github.linked_login_methods if lm.username)
    made[3].created_by = "someone-langsmith-never-listed"
    made[4].created_by = members[2].ls_user_id
    org.set_disabled(members[2].ls_user_id, True)
    org.add_workspace_membership(org.shared_workspaces()[0].id, joined.ls_user_id,
                                 org.role_by_name("WORKSPACE_VIEWER").id)
    database = tmp_path_factory.mktemp("enterprise") / "data" / "access.duckdb"
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(org) as sandbox:
        output, started, finished = sync_all_sections(monkeypatch, sandbox, database)
        yield Synced(org, sandbox, database, output, started, finished)


def rows(database: Path, sql: str, params=None) -> set[tuple]:
    return set(query(database, sql, params))


def secrets(org: OrgState) -> set[str]:
    return {key.secret for key in org.api_keys.values()} | {token.token for token in org.scim_tokens.values()}


def epoch(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromtimestamp(parse_timestamp(text), UTC)


# ------------------------------------------------------------------------------------ enterprise


def test_the_core_sync_reads_login_methods_scim_groups_and_org_settings(enterprise):
    org, db = enterprise.org, enterprise.database
    members = org.active_members()
    assert rows(db, "SELECT user_id, provider, provisioning_method FROM main.user_login_methods") == {
        (m.ls_user_id, lm.provider, lm.provisioning_method) for m in members for lm in m.linked_login_methods}
    # A provider and a provisioning method LangSmith may add later are kept as they came.
    assert rows(db, "SELECT provider, provisioning_method FROM main.user_login_methods "
                    "WHERE provider = 'okta-native'") == {("okta-native", "okta:push")}

    rank = {"scim": 1, "saml:jit": 2, "bootstrap": 3}

    def provisioning(member):
        methods = {lm.provisioning_method for lm in member.linked_login_methods} - {None}
        return min(methods, key=lambda m: (rank.get(m, 4), m)) if methods else None

    expected_users = {(m.ls_user_id, provisioning(m), provisioning(m) == "scim") for m in members}
    assert rows(db, "SELECT user_id, provisioning_method, is_scim_managed FROM main.users") == expected_users
    assert {p for _, p, _ in expected_users} == {"scim", "saml:jit", "bootstrap", "okta:push", None}

    assert rows(db, "SELECT user_id, scim_group FROM main.user_scim_groups") == {
        (m.ls_user_id, g.name) for m in members for g in m.scim_groups}
    settings = dict(query(db, "SELECT setting, value FROM main.org_settings"))
    assert settings["scim_group_name_separator"] == org.settings.scim_group_name_separator
    assert settings["max_pat_expiry_days"] == str(org.settings.max_pat_expiry_days)
    assert settings["tier"] == "enterprise" and settings["config.can_use_audit_logs"] == "true"
    assert settings["display_name"] == org.display_name
    assert rows(db, "SELECT setting, value FROM main.org_settings_history WHERE is_current") == set(settings.items())


def test_grants_know_what_scim_manages_by_langsmiths_group_name_rule(enterprise):
    org, db = enterprise.org, enterprise.database
    sep = org.settings.scim_group_name_separator
    expected = set()
    for member in org.active_members():
        if not any(lm.provisioning_method == "scim" for lm in member.linked_login_methods):
            continue
        names = {g.name for g in member.scim_groups}
        org_role = org.role(member.org_role_id)
        for ms in org.memberships_of(member.ls_user_id):
            workspace = org.workspaces[ms.workspace_id]
            named = f"LS{sep}{org_role.display_name}{sep}{workspace.display_name}{sep}{org.role(ms.role_id).display_name}"
            if workspace.is_shared and named in names:
                expected.add((member.ls_user_id, ms.workspace_id, ms.role_id))
    assert expected, "the generated org has SCIM groups naming members' grants"
    assert rows(db, "SELECT user_id, workspace_id, role_id FROM main.grants "
                    "WHERE is_scim_managed AND entitlement_type = 'workspace_role'") == expected


def test_effective_access_and_implicit_admins_follow_langsmiths_rule(enterprise):
    org, db = enterprise.org, enterprise.database
    admin_role, workspace_admin = org.role_by_name("ORGANIZATION_ADMIN").id, org.role_by_name("WORKSPACE_ADMIN").id
    shared = {w.id for w in org.shared_workspaces()}
    direct = {(user, ws, role, "direct") for ws, user, _identity, role in org.workspace_membership_rows(shared_only=True)}
    admins = {m.ls_user_id for m in org.active_members() if m.org_role_id == admin_role}
    implicit = {(user, ws, workspace_admin, "organization_admin") for user in admins for ws in shared}
    assert admins and implicit
    assert rows(db, "SELECT user_id, workspace_id, role_id, source FROM main.effective_access") == direct | implicit
    listed = {(user, ws) for user, ws, _, _ in direct}
    assert rows(db, "SELECT user_id, workspace_id FROM main.report_implicit_admins") == {
        (user, ws) for user, ws, _, _ in implicit if (user, ws) not in listed}
    # Permissions: the union over paths, each with the sources that give it.
    permissions = defaultdict(set)
    for user, ws, role, source in direct | implicit:
        for permission in org.role(role).permissions:
            permissions[(user, ws, permission)].add(source)
    actual = {(u, w, p): set(s) for u, w, p, s in query(
        db, "SELECT user_id, workspace_id, permission, sources FROM main.effective_permissions")}
    assert actual == permissions
    # A disabled member keeps their permissions, flagged: they cannot sign in.
    disabled = {m.ls_user_id for m in org.active_members() if m.is_disabled}
    flagged = {u for u, in query(db, "SELECT DISTINCT user_id FROM main.effective_permissions WHERE is_disabled")}
    assert disabled & {u for u, _, _ in permissions} and flagged == disabled & {u for u, _, _ in permissions}


def test_the_inventory_reads_every_credential_policy_account_and_sso_setting(enterprise):
    org, db = enterprise.org, enterprise.database
    shared = {w.id for w in org.shared_workspaces()}
    keys = [k for k in org.api_keys.values()
            if k.kind != WORKSPACE_SERVICE_KEY or (k.workspace_ids and k.workspace_ids[0] in shared)]
    # The sync's own key was used again after its listing was read: its last use is a moving target.
    own_key = org.api_key_by_secret(enterprise.sandbox.api_key)
    assert own_key is not None
    expected = {(k.id, k.kind, k.short_key, epoch(k.expires_at), epoch(k.revoked_at),
                 None if k is own_key else epoch(k.last_used_at)) for k in keys}
    expected |= {(t.id, "scim_token", t.short_token, None, None, epoch(t.last_used_at)) for t in org.scim_tokens.values()}
    assert {kind for _, kind, *_ in expected} == {SERVICE_KEY, WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN, "scim_token"}
    assert rows(db, "SELECT credential_id, kind, short_key, expires_at, revoked_at, "
                    "CASE WHEN credential_id <> ? THEN last_used_at END FROM main.credentials",
                [own_key.id]) == expected
    # The API names a key's workspaces; the table gives their ids where each name is one live
    # workspace's (null where a name is ambiguous or unknown, and for an org-wide key).
    live = [w for w in org.workspaces.values() if not w.is_deleted]
    one_id = {name: ids[0] for name in {w.display_name for w in live}
              if len(ids := [w.id for w in live if w.display_name == name]) == 1}

    def ids_of(workspace_ids):
        names = [org.workspaces[w].display_name for w in workspace_ids if w in org.workspaces]
        return tuple(one_id[n] for n in names) if all(n in one_id for n in names) else None

    resolved = {(k.id, None if k.workspace_ids is None else ids_of(k.workspace_ids),
                 one_id.get(org.workspaces[k.default_workspace_id].display_name) if k.default_workspace_id else None)
                for k in keys}
    assert any(ids for _, ids, _ in resolved), "some key names workspaces"
    assert {(cid, None if ids is None else tuple(ids), default) for cid, ids, default in query(
        db, "SELECT credential_id, workspace_ids, default_workspace_id FROM main.credentials "
            "WHERE kind <> 'scim_token'")} == resolved
    policies = {(pid, name, effect, tuple(role_ids)) for pid, name, effect, role_ids in query(
        db, "SELECT policy_id, name, effect, role_ids FROM main.access_policies")}
    assert policies == {(p.id, p.name, p.effect, tuple(p.role_ids)) for p in org.access_policies.values()}
    assert any(effect == "audit" for _, _, effect, _ in policies), "an effect LangSmith may add is kept"
    assert rows(db, "SELECT service_account_id, name, default_workspace_id FROM main.service_accounts") == {
        (a.id, a.name, a.default_workspace_id) for a in org.service_accounts.values()}
    assert rows(db, "SELECT sso_provider_id, provider_id, default_workspace_role_id FROM main.sso_settings") == {
        (p.id, p.provider_id, p.default_workspace_role_id) for p in org.sso_providers.values()}


def test_the_audit_log_and_activity_reach_back_the_unused_days(enterprise):
    org, db = enterprise.org, enterprise.database
    [(start, end)] = query(db, "SELECT min(window_start), max(window_end) FROM raw.audit_windows")
    # The first load reaches back LANGSMITH_ACCESS_UNUSED_DAYS from when the inventory ran.
    assert enterprise.started - UNUSED_DAYS * DAY <= start <= enterprise.finished - UNUSED_DAYS * DAY
    assert enterprise.started <= end <= enterprise.finished
    window = [e for e in org.audit_log.events() if start.timestamp() * 1000 <= e.time_ms <= end.timestamp() * 1000]
    assert any(e.time_ms < start.timestamp() * 1000 for e in org.audit_log.events()), "older events exist"
    assert rows(db, "SELECT event_id, operation, actor_user_id, credential_id, workspace_id FROM main.audit_events") == {
        (e.id, e.operation, e.actor.ls_user_id, e.actor.api_key_id, e.workspace_id) for e in window}
    assert rows(db, "SELECT operation FROM main.audit_events WHERE operation = 'rotate_every_key'") == {
        ("rotate_every_key",)}, "an operation LangSmith may add is kept"

    last_login = {}
    for e in window:
        if e.operation == "login" and e.succeeded is not False and e.actor.ls_user_id:
            last_login[e.actor.ls_user_id] = max(last_login.get(e.actor.ls_user_id, 0), e.time_ms)
    activity = {u: (t.timestamp() * 1000 if t else None) for u, t in query(
        db, "SELECT user_id, last_login_at FROM main.user_activity")}
    assert set(activity) == {m.ls_user_id for m in org.active_members()}
    assert activity == {m.ls_user_id: last_login.get(m.ls_user_id) for m in org.active_members()}

    # Unused access: workspace grants of members without a login in 90 days, who have been
    # members for that long.
    cutoff = (datetime.now(UTC) - UNUSED_DAYS * DAY).timestamp() * 1000
    members_since = {m.ls_user_id: datetime.fromisoformat(m.created_at.replace("Z", "+00:00")).timestamp() * 1000
                     for m in org.active_members()}
    stale = {u for u in activity
             if (u not in last_login or last_login[u] < cutoff) and members_since[u] <= cutoff}
    expected = {(ws, user) for ws, user, _identity, _role in org.workspace_membership_rows(shared_only=True)
                if user in stale}
    assert expected
    joined = next(m for m in org.active_members() if m.email == "joined.today@example.com")
    assert joined.ls_user_id in activity and joined.ls_user_id not in last_login  # never logged in
    assert not any(user == joined.ls_user_id for _ws, user in expected)
    assert rows(db, "SELECT workspace_id, user_id FROM main.report_unused_access") == expected


def test_the_inventory_tables_carry_every_column_the_sandbox_implies(enterprise):
    """Column by column, beyond ids and kinds: what each key reaches and acts as and who made it,
    what each policy says and which roles it names, where service accounts and SSO put people,
    and who did what in the audit log, all computed from the sandbox's org."""
    org, db = enterprise.org, enterprise.database
    shared = {w.id for w in org.shared_workspaces()}
    email = {m.ls_user_id: m.email for m in org.active_members()}
    assert len({creator_of(org, k.created_by) for k in org.api_keys.values()} - {None}) > 3

    def role_name(role_id):
        return None if role_id is None else org.role(role_id).display_name

    def workspace_name(workspace_id):
        workspace = org.workspaces.get(workspace_id or "")
        return workspace.display_name if workspace else None

    now = datetime.now(UTC)
    keys = [k for k in org.api_keys.values()
            if k.kind != WORKSPACE_SERVICE_KEY or (k.workspace_ids and k.workspace_ids[0] in shared)]
    assert any(k.read_only for k in keys), "the fixture marks a key read-only"
    expected = {
        (k.id, k.description or None,
         None if k.workspace_ids is None else tuple(workspace_name(w) for w in k.workspace_ids),
         k.kind == SERVICE_KEY and k.workspace_ids is None,
         k.workspace_ids[0] if k.kind == WORKSPACE_SERVICE_KEY else None,
         workspace_name(k.default_workspace_id),
         k.role_id, role_name(k.role_id), k.org_role_id, role_name(k.org_role_id),
         k.created_by, creator_of(org, k.created_by), email.get(creator_of(org, k.created_by) or ""), k.read_only,
         "revoked" if k.revoked_at and epoch(k.revoked_at) <= now
         else "expired" if k.expires_at and epoch(k.expires_at) <= now else "active")
        for k in keys
    }
    expected |= {(t.id, t.description or None, None, False, None, None, None, None, None, None, None, None, None,
                  False, "active") for t in org.scim_tokens.values()}
    actual = {(cid, text, None if names is None else tuple(names), *rest) for cid, text, names, *rest in query(
        db, "SELECT credential_id, description, workspace_names, is_org_wide, listed_in_workspace_id, "
            "default_workspace_name, role_id, role_name, org_role_id, org_role_name, created_by, "
            "created_by_user_id, created_by_email, read_only, status FROM main.credentials")}
    assert actual == expected
    # Each column tells keys apart: none is the same for every key.
    for column in zip(*expected, strict=True):
        assert len(set(column)) > 1

    def groups(policy):
        return [{"permission": g.permission, "resource_type": g.resource_type,
                 "conditions": [{"attribute_name": c.attribute_name, "attribute_key": c.attribute_key,
                                 "operator": c.operator, "attribute_value": c.attribute_value}
                                for c in g.conditions]} for g in policy.condition_groups]

    policies = {pid: (tuple(names), attached, json.loads(conditions), count) for pid, names, attached, conditions, count
                in query(db, "SELECT policy_id, role_names, is_attached, condition_groups, condition_group_count "
                             "FROM main.access_policies")}
    assert policies == {
        p.id: (tuple(role_name(r) for r in sorted(p.role_ids)), bool(p.role_ids), groups(p), len(p.condition_groups))
        for p in org.access_policies.values()}

    assert rows(db, "SELECT service_account_id, default_workspace_name FROM main.service_accounts") == {
        (a.id, workspace_name(a.default_workspace_id)) for a in org.service_accounts.values()}
    assert any(workspace_name(a.default_workspace_id) for a in org.service_accounts.values())
    sso = {pid: (tuple(ids), *rest) for pid, ids, *rest in query(
        db, "SELECT sso_provider_id, default_workspace_ids, default_workspace_role_name, sso_groups_enabled, "
            "sso_groups_claim_field, sso_groups_required, sso_groups_role_sync_enabled, attribute_mapping_keys, "
            "metadata_url, has_metadata_xml, attribute_mapping_load_error FROM main.sso_settings")}
    assert sso == {p.id: (tuple(p.default_workspace_ids), role_name(p.default_workspace_role_id), p.sso_groups_enabled,
                          p.sso_groups_claim_field, p.sso_groups_required, p.sso_groups_role_sync_enabled,
                          sorted(p.attribute_mapping_keys or {}), p.metadata_url, bool(p.metadata_xml),
                          p.attribute_mapping_load_error)
                   for p in org.sso_providers.values()}
    assert all(ids for ids, *_ in sso.values())
    # Metadata by URL and pasted as XML, a mapping loaded and one not: both kinds reached the mart.
    assert {(xml, error is None) for *_, xml, error in sso.values()} == {(False, True), (True, False)}
    # That the XML was pasted is kept; the XML (its certificate) is in no table of the file.
    for provider in org.sso_providers.values():
        if provider.metadata_xml:
            certificate = provider.metadata_xml.split("<ds:X509Certificate>")[1].split("<")[0]
            assert len(certificate) > 40 and tables_holding(db, certificate) == []
            assert tables_holding(db, "EntityDescriptor") == []

    [(start, end)] = query(db, "SELECT min(window_start), max(window_end) FROM raw.audit_windows")
    window = [e for e in org.audit_log.events() if start.timestamp() * 1000 <= e.time_ms <= end.timestamp() * 1000]
    events = {(e.id, e.succeeded, email.get(e.actor.ls_user_id or ""), tuple(e.resource_ids), e.actor.ip,
               e.http_method, e.path, e.status_code) for e in window}
    assert events == {(eid, succeeded, actor, tuple(targets), *rest) for eid, succeeded, actor, targets, *rest in query(
        db, "SELECT event_id, succeeded, actor_email, target_ids, source_ip, http_method, path, status_code "
            "FROM main.audit_events")}
    assert {succeeded for _, succeeded, *_ in events} >= {True, False}
    last_action = {}
    for e in window:
        if e.actor.ls_user_id:
            last_action[e.actor.ls_user_id] = max(last_action.get(e.actor.ls_user_id, 0), e.time_ms)
    assert {u: t.timestamp() * 1000 if t else None for u, t in query(
        db, "SELECT user_id, last_audited_action_at FROM main.user_activity")} == {
        m.ls_user_id: last_action.get(m.ls_user_id) for m in org.active_members()}
    # A failed login is no use of one's access: the member locked out just now is still unused.
    failed = {e.actor.ls_user_id for e in window if e.operation == "login" and e.succeeded is False}
    assert failed and failed <= {u for (u,) in query(db, "SELECT user_id FROM main.report_unused_access")}


def test_days_since_last_use_counts_whole_days_elapsed(enterprise):
    # As of the build (between the latest run's start and now): not midnights crossed, which
    # is one more for about half the keys. (report_unused_access's days_since_last_login is the
    # same expression; its logins are all older than the audit log this org has.)
    db = enterprise.database
    [(built_after,)] = query(db, "SELECT max(started_at) FROM main.sync_runs")
    built_before = datetime.now(UTC)
    checked = 0
    for last, days in query(db, "SELECT last_used_at, days_since_last_use FROM main.credentials "
                                "WHERE last_used_at IS NOT NULL"):
        low, high = ((moment - last) // DAY for moment in (built_after, built_before))
        if low == high:
            assert days == low, (last, days, built_after)
            checked += 1
    assert checked >= 5, checked


def test_credential_hygiene_flags_what_the_org_holds(enterprise):
    org, db = enterprise.org, enterprise.database
    now = datetime.now(UTC)
    caps = {SERVICE_KEY: org.settings.max_service_key_expiry_days,
            PERSONAL_ACCESS_TOKEN: org.settings.max_pat_expiry_days,
            WORKSPACE_SERVICE_KEY: org.settings.max_api_key_expiry_days}
    shared = {w.id for w in org.shared_workspaces()}
    expected = {}
    for key in org.api_keys.values():
        if key.kind == WORKSPACE_SERVICE_KEY and key.workspace_ids[0] not in shared:
            continue
        expires, revoked, used = epoch(key.expires_at), epoch(key.revoked_at), epoch(key.last_used_at)
        if (revoked and revoked <= now) or (expires and expires <= now):
            continue
        cap = caps[key.kind]
        creator = org.members.get(creator_of(org, key.created_by) or "")
        flags = (used is None, used is not None and used < now - UNUSED_DAYS * DAY, expires is None,
                 cap is not None and (expires is None or expires > epoch(key.created_at) + cap * DAY),
                 key.kind != PERSONAL_ACCESS_TOKEN and creator is not None and creator.is_disabled)
        if any(flags):
            expected[key.id] = flags
    for token in org.scim_tokens.values():
        used = epoch(token.last_used_at)
        flags = (used is None, used is not None and used < now - UNUSED_DAYS * DAY, False, False, False)
        if any(flags):
            expected[token.id] = flags
    assert any(f[0] for f in expected.values()) and any(f[2] for f in expected.values())
    assert any(f[4] for f in expected.values()), "the fixture disables a key's creator"
    actual = {cid: tuple(flags) for cid, *flags in query(
        db, "SELECT credential_id, never_used, unused, no_expiry, beyond_max_expiry, creator_inactive "
            "FROM main.report_credential_hygiene")}
    assert actual == expected


def condition_holds(condition: PolicyCondition, values: set[str]) -> bool:
    """langsmith-api.md's rule for one condition on a resource whose values of the condition's key
    are ``values`` (empty: the resource lacks the key)."""
    operator = condition.operator or ""
    base = operator.removesuffix("_if_exists")
    positive = {
        "equals": lambda value: value == condition.attribute_value,
        "equals_ignore_case": lambda value: value.lower() == (condition.attribute_value or "").lower(),
        "matches": lambda value: fnmatch.fnmatchcase(value, condition.attribute_value or ""),
    }.get(base.removeprefix("not_"))
    if condition.attribute_name != "resource_tag_key" or positive is None:
        return False
    if not values:
        return operator.endswith("_if_exists")
    satisfied = any(positive(value) for value in values)
    return not satisfied if base.startswith("not_") else satisfied


def test_access_policy_resources_are_what_each_condition_group_matches_among_the_tagged_resources(enterprise):
    """Every policy's every condition group evaluated here, in Python, over the sandbox's own
    taggings (an evaluator's left out: the tag API lists none), against what dbt built; and the
    reach report: the planted legal hold is matched, the generated `env = prod` policy matches
    nothing (the org's env values are production, staging and dev)."""
    org, db = enterprise.org, enterprise.database
    shared = {w.id for w in org.shared_workspaces()}
    values_of: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    type_of: dict[tuple[str, str], str] = {}
    for workspace_id in shared:
        for key in org.workspaces[workspace_id].tag_keys.values():
            for value in key.values.values():
                for tagging in value.taggings.values():
                    if tagging.resource_type != "evaluator":
                        values_of[workspace_id, tagging.resource_id][key.key].add(value.value)
                        type_of[workspace_id, tagging.resource_id] = tagging.resource_type
    expected = {
        (policy.id, number, workspace_id, resource_id)
        for policy in org.access_policies.values()
        for number, group in enumerate(policy.condition_groups, start=1)
        for (workspace_id, resource_id), values in values_of.items()
        if (group.resource_type or "").replace("queues", "queue") in ("", type_of[workspace_id, resource_id])
        and all(condition_holds(c, values.get(c.attribute_key or "", set())) for c in group.conditions)
    }
    built = rows(db, "SELECT policy_id, condition_group, workspace_id, resource_id FROM main.access_policy_resources")
    assert built == expected
    legal_hold = next(p.id for p in org.access_policies.values() if p.name == "Legal holds stay")
    assert (legal_hold, 1, org.shared_workspaces()[0].id, "5d0e1f6a-0000-4000-8000-0000000000d1") in built
    assert {p for p, *_ in built} >= {legal_hold} and len({p for p, *_ in built}) > 1
    assert rows(db, "SELECT count(*) FROM main.resource_tags") == {(sum(
        len(v) for values in values_of.values() for v in values.values()),)}

    reach = {(name, group): (matched, nothing) for name, group, matched, nothing in query(
        db, "SELECT policy_name, condition_group, resources_matched, matches_nothing "
            "FROM main.report_access_policy_reach")}
    assert reach[("Legal holds stay", 1)] == (1, False)
    assert reach[("Audit prompts", 1)] == (0, True)
    assert {key for key in reach} == {(p.name, n) for p in org.access_policies.values()
                                      for n in range(1, len(p.condition_groups) + 1)}


def test_sync_runs_and_the_summary_say_what_each_section_read(enterprise):
    db = enterprise.database
    runs = {job: (skipped, json.loads(read)) for job, skipped, read in query(
        db, "SELECT job, skipped_sections, section_rows FROM main.sync_runs")}
    assert set(runs) == {SYNC_JOB, INVENTORY_JOB}
    assert runs[SYNC_JOB][0] == "{}" and set(runs[SYNC_JOB][1]) == {"scim_groups"}
    assert runs[INVENTORY_JOB][0] == "{}"
    assert set(runs[INVENTORY_JOB][1]) == {
        "access_policies", "resource_tags", "service_keys", "personal_access_tokens", "workspace_service_keys",
        "scim_tokens", "service_accounts", "sso_settings", "audit_events"}
    assert all(count > 0 for count in runs[INVENTORY_JOB][1].values())
    output = enterprise.output
    assert "Sync " in output and "Inventory " in output
    for section, count in {**runs[SYNC_JOB][1], **runs[INVENTORY_JOB][1]}.items():
        assert f"{section}: read {count} row" in output
    # The core sync's one extra request is the org info; the inventory reads the workspace keys
    # with one call per shared workspace.
    [(calls,)] = query(db, f"SELECT api_calls FROM main.sync_runs WHERE job = '{SYNC_JOB}'")
    assert calls == 4  # roles, workspaces, one page of members, the org info
    workspace_key_calls = [r for r in enterprise.sandbox.request_log if r.path == "/api/v1/api-key"]
    assert len(workspace_key_calls) == len(enterprise.org.shared_workspaces())
    # And the resource tags the same way (the org has access policies with conditions).
    tag_calls = [r for r in enterprise.sandbox.request_log if r.path == "/api/v1/workspaces/current/taggings"]
    assert sorted(r.tenant_id for r in tag_calls) == sorted(w.id for w in enterprise.org.shared_workspaces())


def test_reports_flag_the_roles_that_carry_deny_policies(enterprise, tmp_path, monkeypatch, capsys):
    """The core sync ran before any inventory (every list empty then); the inventory rebuilt the
    reports with the policies it read: each row lists the deny policies of its role, from the
    sandbox's policies (allow and other effects flag nothing). The review sheet's CSV carries
    them and is read back by `review queue-revokes`."""
    org, db = enterprise.org, enterprise.database
    names_by_role = defaultdict(set)
    for policy in org.access_policies.values():
        if policy.effect == "deny":
            for role_id in policy.role_ids:
                names_by_role[role_id].add((policy.name or policy.id, policy.id))
    expected = {role: [name for name, _ in sorted(names)] for role, names in names_by_role.items()}
    workspace_admin = org.role_by_name("WORKSPACE_ADMIN").id
    assert {org.role_by_name(n).id for n in ("WORKSPACE_VIEWER", "WORKSPACE_USER")} | {workspace_admin} <= set(expected)

    for report in ("report_privileged_access", "review_sheet", "report_custom_role_holders"):
        found = query(db, f"SELECT role_id, deny_policy_names FROM main.{report}")
        assert all(names == expected.get(role, []) for role, names in found), report
        # Some rows carry policies and some none: the flag tells roles apart.
        assert {bool(names) for _, names in found} == {True, False}, report
    # The implicit Admin of every Organization Admin carries the Admin role's.
    implicit = query(db, "SELECT role_id, deny_policy_names FROM main.report_implicit_admins")
    assert implicit and {(role, tuple(names)) for role, names in implicit} == {
        (workspace_admin, tuple(expected[workspace_admin]))}
    admin_rows = query(db, "SELECT scope, deny_policy_names FROM main.report_privileged_access")
    assert {(scope, tuple(names)) for scope, names in admin_rows} == {
        ("organization", ()), ("workspace", tuple(expected[workspace_admin]))}
    assert "Legal holds stay" in expected[workspace_admin]

    point_at(monkeypatch, enterprise.sandbox, db)
    sheet = tmp_path / "review.csv"
    assert cli.main(["review", "export", "--out", str(sheet)]) == 0
    with open(sheet, newline="", encoding="utf-8-sig") as handle:
        exported = list(csv.DictReader(handle))
    assert list(exported[0])[-6:] == ["deny_policy_names", "is_scim_managed", "organization_id",
                                      "decision", "reviewer", "reason"]
    assert all(row["deny_policy_names"] == "; ".join(expected.get(row["role_id"], [])) for row in exported)
    viewer_row = next(row for row in exported if row["role_id"] == org.role_by_name("WORKSPACE_VIEWER").id)
    viewer_row["decision"] = "revoke"
    with open(sheet, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(exported[0]))
        writer.writeheader()
        writer.writerows(exported)
    capsys.readouterr()
    assert cli.main(["review", "queue-revokes", "--file", str(sheet), "--dry-run"]) == 0
    assert f"{len(exported)} rows, 1 marked revoke: 1 would queue" in capsys.readouterr().out


def test_access_at_and_export_cover_the_new_tables(enterprise, tmp_path, monkeypatch, capsys):
    point_at(monkeypatch, enterprise.sandbox, enterprise.database)
    assert cli.main(["export", "--format", "csv", "--out", str(tmp_path)]) == 0
    for table in ("effective_access", "effective_permissions", "access_policies", "credentials",
                  "service_accounts", "sso_settings", "user_login_methods", "user_scim_groups",
                  "org_settings", "org_settings_history", "audit_events", "user_activity",
                  "report_unused_access", "report_credential_hygiene", "report_implicit_admins"):
        [(count,)] = query(enterprise.database, f"SELECT count(*) FROM main.{table}")
        exported = tmp_path / f"{table}.csv"
        assert duckdb.sql(f"SELECT count(*) FROM read_csv('{exported}', all_varchar = true)").fetchall() == [(count,)]

    org = enterprise.org
    admin_role = org.role_by_name("ORGANIZATION_ADMIN").id
    admin = next(m for m in org.active_members() if m.org_role_id == admin_role)
    capsys.readouterr()
    assert cli.main(["access-at", "--time", "now", "--user", admin.ls_user_id, "--effective", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    implicit = {g["workspace_id"] for g in shown["grants"] if g["source"] == "organization_admin"}
    assert implicit == {w.id for w in org.shared_workspaces()}
    assert cli.main(["access-at", "--time", "now", "--credentials", "--settings", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    [(usable,)] = query(enterprise.database, "SELECT count(*) FROM main.credentials WHERE status = 'active'")
    assert len(shown["credentials"]) == usable > 0
    assert {s["setting"]: s["value"] for s in shown["settings"]}["tier"] == "enterprise"


# ------------------------------------------------------------------------------------ plan Plus


def test_a_plus_plan_skips_what_it_lacks_with_reasons_and_reads_the_rest(tmp_path, monkeypatch):
    # An org generated on Enterprise (SCIM groups on its members, SCIM tokens, policies), now on
    # Plus: what the plan lacks is skipped even where the listings still name it.
    org = generate_org(seed=6, members=20, workspaces=3, now=int(time.time()))
    assert any(m.scim_groups for m in org.active_members())
    database = tmp_path / "data" / "access.duckdb"
    with SandboxServer(org, plan="plus") as sandbox:
        output, *_ = sync_all_sections(monkeypatch, sandbox, database)
        asked = {r.path for r in sandbox.request_log}
    skipped = {}
    for (text,) in query(database, "SELECT skipped_sections FROM main.sync_runs"):
        skipped.update(json.loads(text))
    assert set(skipped) == {"scim_groups", "access_policies", "resource_tags", "audit_events", "scim_tokens",
                            "sso_settings"}
    assert all(reason.startswith("not in plan: config.can_use_") for reason in skipped.values()), skipped
    for section, reason in skipped.items():
        assert f"{section}: skipped ({reason})" in output
    # The plan said so: their routes were never asked.
    assert not asked & {"/api/v1/audit-logs", "/api/v1/orgs/current/sso-settings", "/api/v1/workspaces/current/taggings",
                        "/api/v1/platform/orgs/current/access-policies", "/api/v1/platform/orgs/current/scim/tokens"}
    for table in ("access_policies", "resource_tags", "access_policy_resources", "report_access_policy_reach",
                  "audit_events", "sso_settings", "user_scim_groups", "report_unused_access"):
        assert query(database, f"SELECT count(*) FROM main.{table}") == [(0,)]
    assert query(database, "SELECT count(*) FROM main.user_activity WHERE activity_known_since IS NOT NULL") == [(0,)]
    assert query(database, "SELECT count(*) FROM main.grants WHERE is_scim_managed") == [(0,)]
    # Known, not unknown: without SCIM on the plan, SCIM manages none of them.
    assert query(database, "SELECT count(*) FROM main.grants WHERE is_scim_managed IS NULL") == [(0,)]
    # What the plan has is read, not left silently empty.
    kinds = {kind for (kind,) in query(database, "SELECT DISTINCT kind FROM main.credentials")}
    assert kinds == {SERVICE_KEY, WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN}
    assert query(database, "SELECT count(*) FROM main.service_accounts")[0][0] == len(org.service_accounts)


def test_an_org_generated_on_plus_syncs_with_built_in_roles_and_admin_grants_only(tmp_path, monkeypatch):
    # Generated on Plus: no custom roles, everyone Admin in their workspaces (langsmith-api.md:
    # "other plans make everyone Admin").
    org = generate_org(seed=6, members=20, workspaces=3, plan="plus", now=int(time.time()))
    database = tmp_path / "data" / "access.duckdb"
    with SandboxServer(org, plan="plus") as sandbox:
        sync_all_sections(monkeypatch, sandbox, database)
    assert query(database, "SELECT count(*), count(*) FILTER (WHERE is_custom) FROM main.roles") == [
        (len(org.roles), 0)]
    admin = org.role_by_name("WORKSPACE_ADMIN").id
    held = query(database, "SELECT DISTINCT role_id FROM main.grants WHERE entitlement_type = 'workspace_role'")
    assert held == [(admin,)]


# -------------------------------------------- a default-role key, a missing route, a leaky server


def test_a_restricted_key_and_an_older_install_skip_and_a_leaking_server_leaves_no_secret(tmp_path, monkeypatch):
    org = generate_org(seed=7, members=25, workspaces=3, now=int(time.time()))
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # a real instance: the run metadata is read back
    database = tmp_path / "data" / "access.duckdb"
    # A key whose created_by is its creator's GitHub user name: the members are read from the
    # route that sends login user names here (the key sees only part of the enriched route).
    github = next(m for m in org.active_members() if any(lm.username for lm in m.linked_login_methods))
    made = next(k for k in org.api_keys.values() if k.kind == SERVICE_KEY and not k.revoked_at)
    made.created_by = next(lm.username for lm in github.linked_login_methods if lm.username).upper()
    with SandboxServer(org, key_role="org-user", missing_sections=("access_policies",),
                       faults=FaultConfig(leak_full_keys=True)) as sandbox:
        output, *_ = sync_all_sections(monkeypatch, sandbox, database)
        served = [r.path for r in sandbox.request_log]
    assert "/api/v1/orgs/current/members/active" in served
    assert query(database, "SELECT created_by_user_id, created_by_email FROM main.credentials "
                           f"WHERE credential_id = '{made.id}'") == [(github.ls_user_id, github.email)]
    assert creator_of(org, made.created_by, usernames=True) == github.ls_user_id
    # That route sends each login's user name: user_login_methods keeps it beside the provider.
    assert set(query(database, "SELECT user_id, provider, provisioning_method, username "
                               "FROM main.user_login_methods")) == {
        (m.ls_user_id, lm.provider, lm.provisioning_method, lm.username)
        for m in org.active_members() for lm in m.linked_login_methods}
    assert "/api/v1/api-key" in served  # the leaking listings were read
    skipped = {}
    for (text,) in query(database, "SELECT skipped_sections FROM main.sync_runs"):
        skipped.update(json.loads(text))
    assert set(skipped) == {"scim_groups", "audit_events", "access_policies", "resource_tags"}
    assert skipped["scim_groups"].startswith("membership route:")  # the key sees only part of the enriched route
    assert skipped["audit_events"].startswith("key permission:") and "organization:manage" in skipped["audit_events"]
    assert skipped["access_policies"].startswith("not available here:") and "404" in skipped["access_policies"]
    # Tags decide access only through policies: not read (one call per workspace) when none was.
    assert skipped["resource_tags"] == (
        f"access policies were not read ({skipped['access_policies']}), and tags decide access only through them")
    assert query(database, "SELECT count(*) FROM main.credentials")[0][0] > 0
    # Read workspace by workspace, the SCIM-provisioned members' groups are unknown, and so is
    # whether SCIM manages their grants (null, not false); the others' grants are not.
    scim_known = dict(query(database,
        "SELECT u.is_scim_managed, count(g.is_scim_managed) || '/' || count(*) "
        "FROM main.grants AS g JOIN main.users AS u USING (user_id) GROUP BY u.is_scim_managed"))
    assert scim_known[True].startswith("0/") and scim_known[True] != "0/0", scim_known
    assert scim_known[False].split("/")[0] == scim_known[False].split("/")[1], scim_known

    # No whole key anywhere: not in any table of any DuckDB file, not in the Parquet copy, not in
    # any log, the Dagster instance's storage included, not in what the command printed.
    leaked = secrets(org)
    assert len(leaked) > 10
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in leaked), path
    for path in database.parent.glob("*.duckdb"):
        with duckdb.connect(str(path), read_only=True) as conn:
            for schema, table in conn.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall():
                [(text,)] = conn.execute(f'SELECT string_agg(CAST(t AS VARCHAR), chr(10)) FROM "{schema}"."{table}" AS t').fetchall()
                assert not any(secret in (text or "") for secret in leaked), (path.name, schema, table)
    for parquet in (database.parent / "access_parquet").glob("*.parquet"):
        [(text,)] = duckdb.sql(f"SELECT string_agg(CAST(t AS VARCHAR), chr(10)) FROM read_parquet('{parquet}') AS t").fetchall()
        assert not any(secret in (text or "") for secret in leaked), parquet.name
    assert not any(secret in output for secret in leaked)
    # The listings' short keys were cut to what LangSmith would have shown.
    assert rows(database, "SELECT credential_id, short_key FROM main.credentials WHERE kind <> 'scim_token'") >= {
        (k.id, k.short_key) for k in org.api_keys.values() if k.kind == SERVICE_KEY}

    # The published asset's numbers, per run, read back from the Dagster instance.
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(dg.AssetKey("analysts_database"), limit=10).records
    assert len(records) == 2
    metadata = {r.asset_materialization.metadata["job"].value: r.asset_materialization.metadata for r in records}
    assert set(metadata) == {SYNC_JOB, INVENTORY_JOB}
    expected = {
        "members": "SELECT count(*) FROM main.users",
        "organization_admins": "SELECT count(*) FROM main.users WHERE org_role_name = 'Organization Admin'",
        "workspace_admins": "SELECT count(DISTINCT user_id) FROM main.grants WHERE role_name = 'Admin' "
                            "AND entitlement_type = 'workspace_role'",
        "grants": "SELECT count(*) FROM main.grants",
        "implicit_admins": "SELECT count(*) FROM main.report_implicit_admins",
        "credentials_without_expiry": "SELECT count(*) FROM main.report_credential_hygiene WHERE no_expiry",
        "unused_credentials": "SELECT count(*) FROM main.report_credential_hygiene WHERE never_used OR unused",
        "keys_of_inactive_creators": "SELECT count(*) FROM main.report_credential_hygiene WHERE creator_inactive",
        "policy_groups_matching_nothing": (
            "SELECT count(*) FROM main.report_access_policy_reach WHERE matches_nothing AND is_attached"),
    }
    for name, sql in expected.items():
        [(count,)] = query(database, sql)
        assert metadata[INVENTORY_JOB][name] == dg.IntMetadataValue(count), name
        assert isinstance(metadata[SYNC_JOB][name], dg.IntMetadataValue), name
    assert metadata[SYNC_JOB]["skipped_sections"] == dg.IntMetadataValue(1)
    assert metadata[INVENTORY_JOB]["skipped_sections"] == dg.IntMetadataValue(3)
    # And why, as sync_runs.skipped_sections says it: the UI shows each run's reasons.
    reasons = {job: json.loads(text) for job, text in query(database, "SELECT job, skipped_sections FROM main.sync_runs")}
    for job in (SYNC_JOB, INVENTORY_JOB):
        assert metadata[job]["skipped_section_reasons"] == dg.JsonMetadataValue(reasons[job]), job
    # Drift is the sync's number: the inventory rebuilds no grants, and plots no 0 between the syncs'.
    assert metadata[SYNC_JOB]["unexplained_changes"] == dg.IntMetadataValue(0)
    assert "unexplained_changes" not in metadata[INVENTORY_JOB]
    assert metadata[SYNC_JOB]["members"] == dg.IntMetadataValue(len(org.active_members()))
    # Each point names its run (sync_runs.sync_id), the file it published, and that run's
    # recorded row counts.
    recorded = {job: (sync_id, users, workspace_grants) for job, sync_id, users, workspace_grants in query(
        database, "SELECT job, sync_id, users, workspace_grants FROM main.sync_runs")}
    for job in (SYNC_JOB, INVENTORY_JOB):
        sync_id, users, workspace_grants = recorded[job]
        assert metadata[job]["sync_id"] == dg.TextMetadataValue(sync_id), job
        assert (metadata[job]["users"], metadata[job]["workspace_grants"]) == (
            dg.IntMetadataValue(users), dg.IntMetadataValue(workspace_grants)), job
        assert metadata[job]["path"] == dg.PathMetadataValue(str(database)), job
        assert metadata[job]["parquet_path"] == dg.PathMetadataValue(str(database.parent / "access_parquet")), job


# ------------------------------------------------------------------------------------ faults


def test_a_failing_credential_listing_or_audit_window_fails_the_run_and_is_read_next_time(
    enterprise, tmp_path, monkeypatch
):
    # A copy of the synced database, served by the same sandbox.
    database = tmp_path / "data" / "access.duckdb"
    database.parent.mkdir()
    for name in ("access.duckdb", "access.working.duckdb"):
        shutil.copyfile(enterprise.database.with_name(name), database.with_name(name))
    sandbox, org = enterprise.sandbox, enterprise.org
    point_at(monkeypatch, sandbox, database)
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")  # a route that fails for good fails fast
    before = file_digest(database)
    [(windows_before, end_before)] = query(database, "SELECT count(*), max(window_end) FROM raw.audit_windows")

    workspace = org.shared_workspaces()[-1]
    try:
        # A workspace's key listing fails (after other sections were read): the run fails whole.
        sandbox.faults.failing_routes = ("/api/v1/api-key",)
        failed = runner.run_job(INVENTORY_JOB, {})
        assert not failed.success and "/api/v1/api-key" in failed.failure
        assert file_digest(database) == before
        # The audit log answers 500 for good: the run fails, the windows stay where they were.
        sandbox.faults.failing_routes = ("/api/v1/audit-logs",)
        failed = runner.run_job(INVENTORY_JOB, {})
        assert not failed.success and "audit-logs" in failed.failure
        assert file_digest(database) == before
        assert query(database, "SELECT count(*), max(window_end) FROM raw.audit_windows") == [(windows_before, end_before)]
    finally:
        sandbox.faults.failing_routes = ()
    # Logins that happened while the audit log failed, and one just before the last window's end
    # (logged late): the next run reads from where the last one stopped, less an overlap.
    late = org.record_login(next(iter(workspace.memberships)), time_ms=int((end_before - timedelta(minutes=20)).timestamp() * 1000))
    meanwhile = org.record_login(next(iter(workspace.memberships)))
    recovered = runner.run_job(INVENTORY_JOB, {})
    assert recovered.success, recovered.failure
    [(first_new_start,)] = query(database, "SELECT min(window_start) FROM raw.audit_windows WHERE window_start > ?", [end_before - timedelta(hours=2)])
    assert first_new_start == end_before - timedelta(hours=1)
    # From there only: the log already loaded is not read again.
    assert query(database, "SELECT min(window_start) FROM raw.audit_windows WHERE sync_id = ?",
                 [recovered.run_id]) == [(end_before - timedelta(hours=1),)]
    loaded = {e for (e,) in query(database, "SELECT event_id FROM main.audit_events")}
    assert {late.id, meanwhile.id} <= loaded
    # Overlapping windows never load an event twice.
    assert query(database, "SELECT count(*) = count(DISTINCT event_id) FROM raw.audit_events") == [(True,)]

    # The key is rotated to one without organization:manage, on an install without the
    # access-policy routes: the audit log is skipped, and what was loaded before is forgotten,
    # not shown as today's activity (the member who logged in just now would otherwise stay
    # "unused" for good); the policies read before are gone too, not shown as today's.
    assert query(database, "SELECT count(*) FROM main.access_policies")[0][0] > 0
    with SandboxServer(org, key_role="org-user", missing_sections=("access_policies",)) as restricted:
        point_at(monkeypatch, restricted, database)
        skipped = runner.run_job(INVENTORY_JOB, {})
    assert skipped.success, skipped.failure
    [(text,)] = query(database, "SELECT skipped_sections FROM main.sync_runs WHERE sync_id = ?", [skipped.run_id])
    assert json.loads(text)["audit_events"].startswith("key permission:")
    assert json.loads(text)["access_policies"].startswith("not available here:")
    assert query(database, "SELECT (SELECT count(*) FROM main.access_policies), "
                           "(SELECT count(*) FROM raw.access_policies)") == [(0, 0)]
    assert query(database, "SELECT (SELECT count(*) FROM main.audit_events), (SELECT count(*) FROM raw.audit_events), "
                           "(SELECT count(*) FROM raw.audit_windows)") == [(0, 0, 0)]
    assert query(database, "SELECT count(*) FROM main.user_activity WHERE last_login_at IS NOT NULL "
                           "OR last_audited_action_at IS NOT NULL OR activity_known_since IS NOT NULL") == [(0,)]


def test_raising_the_unused_days_reads_the_audit_log_back_that_far(tmp_path, monkeypatch):
    # Loaded 30 days back, then LANGSMITH_ACCESS_UNUSED_DAYS goes to 90: the next inventory reads
    # the 60 days before (LangSmith keeps up to 400), so the unused-access report answers for 90
    # days now instead of staying empty until the log has grown that long.
    org = generate_org(seed=5, members=30, workspaces=3, now=int(time.time()))
    database = tmp_path / "data" / "access.duckdb"
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # a real instance: the run metadata is read back
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        monkeypatch.setenv("LANGSMITH_ACCESS_UNUSED_DAYS", "30")
        for job in (SYNC_JOB, INVENTORY_JOB):
            outcome = runner.run_job(job, runner.sync_run_config() if job == SYNC_JOB else {})
            assert outcome.success, outcome.failure
        # The runs' dbt builds read the setting too, not the models' default of 90: the report
        # lists who has not logged in for 30 days (the log reaches back that far now).
        assert query(database, "SELECT DISTINCT unused_after_days FROM main.report_unused_access") == [(30,)]
        monkeypatch.setenv("LANGSMITH_ACCESS_UNUSED_DAYS", str(UNUSED_DAYS))
        # The Launchpad's reach, when given, is a number of days: 0 or less is refused, not read as "now";
        # past LANGSMITH_ACCESS_UNUSED_DAYS's bound too (a window a day: 36,500 requests for a century).
        for days in (0, -5, 99_999_999_999):
            refused = runner.run_job(INVENTORY_JOB, {"ops": {INVENTORY_OP: {"config": {"unused_days": days}}}})
            assert not refused.success and f"unused_days must be a whole number of days from 1 to 3650, got {days}" in (
                refused.failure or ""), refused.failure
        started = datetime.now(UTC)
        for job in (SYNC_JOB, INVENTORY_JOB):
            outcome = runner.run_job(job, runner.sync_run_config() if job == SYNC_JOB else {})
            assert outcome.success, outcome.failure
    [(known_since,)] = query(database, "SELECT min(window_start) FROM raw.audit_windows")
    assert started - UNUSED_DAYS * DAY <= known_since <= datetime.now(UTC) - UNUSED_DAYS * DAY
    reach = known_since.timestamp() * 1000
    expected = {e.id for e in org.audit_log.events() if e.time_ms >= reach}
    assert any(e.time_ms < (started - 30 * DAY).timestamp() * 1000 for e in org.audit_log.events()
               if e.id in expected), "events between 30 and 90 days old exist"
    assert rows(database, "SELECT event_id FROM raw.audit_events") == {(e,) for e in expected}
    assert query(database, "SELECT count(*) = count(DISTINCT event_id) FROM raw.audit_events") == [(True,)]
    assert query(database, "SELECT count(*) FROM main.report_unused_access")[0][0] > 0

    # The Launchpad's reach, when given, is the one read: 120 days back, past the setting's 90.
    [(before,)] = query(database, "SELECT count(*) FROM raw.audit_events")
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        started = datetime.now(UTC)
        outcome = runner.run_job(INVENTORY_JOB, {"ops": {INVENTORY_OP: {"config": {"unused_days": 120}}}})
        assert outcome.success, outcome.failure
    [(known_since,)] = query(database, "SELECT min(window_start) FROM raw.audit_windows")
    assert started - 120 * DAY <= known_since <= datetime.now(UTC) - 120 * DAY
    # The audit log asset's row count is the table's, not the events that run added (its 30 days more).
    [latest] = dg.DagsterInstance.get().fetch_materializations(dg.AssetKey(["raw", "audit_events"]), limit=1).records
    metadata = latest.asset_materialization.metadata
    [(total,)] = query(database, "SELECT count(*) FROM raw.audit_events")
    assert 0 < metadata["events_new"].value < total
    # What that run added, of the events it read (the windows it read again, an hour back, too);
    # the first window it read is where the log is now known from.
    assert metadata["events_new"] == dg.IntMetadataValue(total - before)
    assert metadata["events_read"].value >= total - before
    assert metadata["window_start"] == dg.TextMetadataValue(known_since.isoformat())
    assert metadata["dagster/row_count"] == dg.IntMetadataValue(total)
