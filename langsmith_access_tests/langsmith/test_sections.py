"""``plan_sections``: which sections of the access picture an org and key should read, and why
not the others (the text that goes into ``sync_runs.skipped_sections``). Pure: org infos in,
plans out. Also the pure parts of the access records (redaction, audit events)."""

from __future__ import annotations

import json

import pytest

from langsmith_access.langsmith import SECTIONS, OrganizationInfo, plan_sections
from langsmith_access.langsmith.access_records import (
    AccessPolicy,
    AuditEvent,
    Credential,
    ResourceTagging,
    redact_short_key,
)
from langsmith_access.langsmith.errors import UnexpectedResponseError
from langsmith_access.langsmith.sections import skip_reason

ADMIN = ["organization:read", "organization:manage", "organization:pats:create", "workspaces:manage-members"]
USER = ["organization:read", "organization:pats:create"]
VIEWER = ["organization:read"]
ENTERPRISE = {"can_use_rbac": True, "can_use_abac": True, "can_use_audit_logs": True, "can_use_saml_sso": True}
PLUS = {k: False for k in ENTERPRISE}


def info(permissions=ADMIN, config=ENTERPRISE, **fields) -> dict:
    body = {"id": "00000000-0000-4000-8000-000000000001", "config": dict(config), "is_personal": False, **fields}
    if permissions is not None:
        body["permissions"] = list(permissions)
    return body


def test_an_enterprise_admin_key_reads_every_section():
    plan = plan_sections(info())
    assert plan.read == SECTIONS and plan.skipped == {}
    assert plan.skipped_sections_json() == "{}"


def test_the_plus_plan_skips_what_it_lacks_with_the_flag_in_the_reason():
    plan = plan_sections(info(config=PLUS))
    assert plan.read == ("service_keys", "personal_access_tokens", "workspace_service_keys", "service_accounts")
    assert set(plan.skipped) == {
        "access_policies", "resource_tags", "audit_events", "scim_tokens", "sso_settings", "scim_groups"}
    assert "config.can_use_abac is false" in plan.skipped["access_policies"]
    assert plan.skipped["resource_tags"] == (
        "not in plan: config.can_use_abac is false (access policies (ABAC), the only way tags decide access, are "
        "an Enterprise feature), so there are no resource tags (what access policies match) to read")
    assert "config.can_use_audit_logs is false" in plan.skipped["audit_events"]
    for section in ("scim_tokens", "sso_settings", "scim_groups"):
        assert plan.skipped[section].startswith("not in plan: config.can_use_saml_sso is false")
    assert json.loads(plan.skipped_sections_json()) == plan.skipped


def test_the_keys_role_decides_the_audit_log_and_personal_access_tokens():
    user = plan_sections(info(permissions=USER))
    assert set(user.skipped) == {"audit_events"}
    assert "organization:manage" in user.skipped["audit_events"] and "key permission" in user.skipped["audit_events"]
    viewer = plan_sections(info(permissions=VIEWER))
    assert set(viewer.skipped) == {"audit_events", "personal_access_tokens"}
    assert "read-only" in viewer.skipped["personal_access_tokens"]
    no_read = plan_sections(info(permissions=["workspaces:read"]))
    # Workspace keys and tags are read with the key's role in each workspace, which the org info does not tell.
    assert set(no_read.skipped) == set(SECTIONS) - {"workspace_service_keys", "resource_tags"}
    assert all("organization:read" in r for s, r in no_read.skipped.items() if s != "audit_events")
    # The plan is named first: a plus org's audit log is skipped for the plan, not the key.
    assert skip_reason("audit_events", info(permissions=USER, config=PLUS)).startswith("not in plan")


def test_what_the_answer_leaves_out_rules_nothing_out():
    assert plan_sections(info(permissions=None, config={})).read == SECTIONS
    # OrganizationInfo.permissions defaults to []: no org role has none (each has
    # organization:read, which reading the org info needs), so an empty list says nothing either.
    assert plan_sections(info(permissions=[], config={})).read == SECTIONS
    assert plan_sections(None).read == SECTIONS
    assert plan_sections({"config": {"can_use_abac": False}}).skipped.keys() == {"access_policies", "resource_tags"}


def test_scim_groups_need_the_enriched_members_route():
    assert plan_sections(info(), membership_route="enriched_members").read == SECTIONS
    plan = plan_sections(info(), membership_route="workspace_members",
                         membership_route_reason="the key lacks organization:manage")
    assert set(plan.skipped) == {"scim_groups"}
    assert "enriched members route" in plan.skipped["scim_groups"]
    assert "read members by the workspace_members route" in plan.skipped["scim_groups"]
    assert "the key lacks organization:manage" in plan.skipped["scim_groups"]
    # Where the plan has no SAML SSO, the plan is the reason, whatever route the members came by:
    # the route's reason would send the operator after the key's role, which fixes nothing.
    plus = plan_sections(info(config=PLUS), membership_route="workspace_members",
                         membership_route_reason="the key lacks organization:manage")
    assert plus.skipped["scim_groups"].startswith("not in plan: config.can_use_saml_sso is false")


def test_a_parsed_org_info_gives_the_same_plan_and_unknown_sections_are_refused():
    raw = info(permissions=USER, config=PLUS)
    assert plan_sections(OrganizationInfo.from_api(raw)) == plan_sections(raw)
    with pytest.raises(ValueError, match="unknown section"):
        plan_sections(raw).should_read("user_groups")
    with pytest.raises(ValueError, match="unknown section"):
        skip_reason("user_groups", raw)


def test_org_info_settings_become_rows():
    parsed = OrganizationInfo.from_api(info(tier="enterprise", sso_only=False, max_pat_expiry_days=90,
                                            ip_allowlist=["10.0.0.0/8"], security_contact=None))
    rows = dict(parsed.setting_rows())
    assert rows["sso_only"] == "false" and rows["max_pat_expiry_days"] == "90"
    assert rows["ip_allowlist"] == '["10.0.0.0/8"]' and rows["security_contact"] is None
    assert rows["tier"] == "enterprise" and rows["config.can_use_abac"] == "true"
    assert parsed.flag("can_use_audit_logs") is True and parsed.flag("can_use_llm_auth_proxy") is None
    with pytest.raises(UnexpectedResponseError, match="config"):
        OrganizationInfo.from_api({"config": "enterprise"})


@pytest.mark.parametrize(
    ("value", "expected", "redacted"),
    [
        ("lsv2_sk_...5b23", "lsv2_sk_...5b23", False),
        ("lsv2_pt_d3f1", "lsv2_pt_d3f1", False),
        ("lsv2_sk_0123456789abcdef0123456789abcdef_0123456789", "lsv2_sk_...6789", True),
        ("lsv2_scim_" + "ab" * 24, "lsv2_scim_...abab", True),
        ("ls__" + "f" * 32, "ls__...ffff", True),
    ],
)
def test_a_short_key_holding_a_whole_secret_is_cut(value, expected, redacted):
    assert redact_short_key(value) == (expected, redacted)


def test_a_credential_never_keeps_a_secret_it_was_sent():
    secret = "lsv2_sk_0123456789abcdef0123456789abcdef_0123456789"
    row = {"id": "00000000-0000-4000-8000-00000000000a", "short_key": secret, "key": secret,
           "description": "leaky", "expires_at": None, "revoked_at": "2026-01-02T03:04:05Z"}
    credential = Credential.from_api(row, "service_key")
    assert credential.secret_redacted and credential.short_key == "lsv2_sk_...6789"
    assert secret not in repr(credential)
    assert credential.revoked_at is not None and credential.expires_at is None
    token = Credential.from_scim_token({"id": "t1", "short_token": "lsv2_scim_...abcd", "token": secret})
    assert token.kind == "scim_token" and secret not in repr(token) and token.last_used_at is None
    with pytest.raises(UnexpectedResponseError, match="short_key"):
        Credential.from_api({"id": "x", "description": "no short key"}, "service_key")


def event(**changes) -> dict:
    body = {
        "time": 1_900_000_000_123, "status": "Success", "metadata": {"uid": "e1"},
        "api": {"operation": "login"}, "actor": {"user": {"uid": "u-legacy", "credential_uid": None}},
        "resources": [{"uid": "r1"}, {"uid": "r2"}], "src_endpoint": {"ip": "198.51.100.7"},
        "http_request": {"http_method": "POST", "url": {"path": "/api/v1/login"}},
        "http_response": {"code": 200},
        "unmapped": {"original_audit_log": {"ls_user_id": "u-1", "operation_succeeded": True,
                                            "workspace_id": None, "api_key_id": None}},
    }
    body.update(changes)
    return body


def test_audit_events_are_flattened_and_open_sets_kept():
    parsed = AuditEvent.from_api(event())
    assert parsed.event_id == "e1" and parsed.operation == "login" and parsed.succeeded is True
    assert parsed.at.isoformat() == "2030-03-17T17:46:40.123000+00:00"
    assert parsed.actor_user_id == "u-1", "the ls_user_id, not the OCSF uid, when both are sent"
    assert parsed.target_ids == ("r1", "r2") and parsed.source_ip == "198.51.100.7"
    assert json.loads(parsed.detail)["metadata"]["uid"] == "e1"
    seconds = AuditEvent.from_api(event(time=1_900_000_000))
    assert seconds.at.isoformat() == "2030-03-17T17:46:40+00:00", "a time in seconds is read as seconds"
    newer = AuditEvent.from_api(event(api={"operation": "rotate_service_key"}, unmapped={}, status="Failure"))
    assert newer.operation == "rotate_service_key" and newer.succeeded is False
    assert newer.actor_user_id == "u-legacy"
    with pytest.raises(UnexpectedResponseError, match="metadata.uid"):
        AuditEvent.from_api(event(metadata={}, unmapped={}))


def test_access_policies_keep_their_conditions_as_json():
    policy = AccessPolicy.from_api({
        "id": "p1", "effect": "deny", "role_ids": ["r1"],
        "condition_groups": [{"permission": "prompts:read", "resource_type": "prompt", "conditions": [
            {"attribute_name": "resource_tag_key", "attribute_key": "env", "operator": "equals_if_exists",
             "attribute_value": "prod"}]}],
    })
    assert policy.effect == "deny" and policy.condition_groups[0].conditions[0].operator == "equals_if_exists"
    groups = json.loads(policy.condition_groups_json())
    assert groups[0]["conditions"][0]["attribute_value"] == "prod"


def test_taggings_become_one_record_per_resource_with_the_type_access_policies_name():
    """A ``TaggingsResponse`` is a tag value with the resources it is on, by plural bucket: each
    resource is a record, its type as ``ResourceType`` and the conditions name it (a bucket
    LangSmith adds later kept as sent), ids in their one spelling; an empty or null bucket gives
    none; a resource without its tagging id or its name is an unexpected answer, naming the field."""
    value_id, key_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "1f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    resource = {"tagging_id": "2F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", "resource_id": "r-1", "resource_name": "router"}
    taggings = ResourceTagging.from_taggings({
        "tag_key": "env", "tag_key_id": key_id, "tag_value": "production", "tag_value_id": value_id,
        "resources": {"prompts": [resource], "queues": [{**resource, "tagging_id": "t-2", "resource_id": "q-1"}],
                      "agent_builders": [{**resource, "tagging_id": "t-3"}], "datasets": [], "projects": None},
    }, "w-1")
    assert [(t.id, t.resource_type, t.resource_id) for t in taggings] == [
        ("2f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "prompt", "r-1"), ("t-2", "queue", "q-1"),
        ("t-3", "agent_builders", "r-1")]
    assert {(t.workspace_id, t.tag_key_id, t.tag_key, t.tag_value_id, t.tag_value) for t in taggings} == {
        ("w-1", key_id, "env", value_id, "production")}
    with pytest.raises(UnexpectedResponseError, match="Resource.tagging_id"):
        ResourceTagging.from_taggings({"tag_key": "env", "tag_key_id": key_id, "tag_value": "x",
                                       "tag_value_id": value_id, "resources": {"prompts": [{"resource_id": "r"}]}},
                                      "w-1")
    with pytest.raises(UnexpectedResponseError, match="Resource.resource_name"):  # required in the spec
        ResourceTagging.from_taggings({"tag_key": "env", "tag_key_id": key_id, "tag_value": "x",
                                       "tag_value_id": value_id, "resources": {"prompts": [
                                           {"tagging_id": "t-4", "resource_id": "r"}]}}, "w-1")
    with pytest.raises(UnexpectedResponseError, match="TaggingsResponse.tag_value"):
        ResourceTagging.from_taggings({"tag_key": "env", "tag_key_id": key_id, "tag_value_id": value_id}, "w-1")


@pytest.mark.parametrize(("record", "field"), [
    ("TaggingsResponse", "tag_key"), ("TaggingsResponse", "tag_key_id"),
    ("TaggingsResponse", "tag_value"), ("TaggingsResponse", "tag_value_id"), ("Resource", "resource_id"),
])
def test_a_taggings_answer_without_a_field_the_spec_requires_is_refused_naming_it(record, field):
    """Every field of ``TaggingsResponse`` and its ``Resource`` is required: an access policy's
    conditions match tag keys and values by text on resources by id, so a tagging read with ""
    for one of them would match (or miss) resources it should not. Left out, null or empty:
    refused naming the record and field."""
    resource = {"tagging_id": "t-1", "resource_id": "r-1", "resource_name": "router"}
    answer = {"tag_key": "env", "tag_key_id": "k-1", "tag_value": "production", "tag_value_id": "v-1",
              "resources": {"prompts": [resource]}}
    assert len(ResourceTagging.from_taggings(answer, "w-1")) == 1
    for value in (None, ""):
        if record == "Resource":
            bad = {**answer, "resources": {"prompts": [{**resource, field: value}]}}
        else:
            bad = {**answer, field: value}
        with pytest.raises(UnexpectedResponseError, match=rf"^{record}\.{field}: expected"):
            ResourceTagging.from_taggings(bad, "w-1")


def test_the_skipped_sections_are_stored_as_json_text_with_sorted_keys():
    """``sync_runs.skipped_sections``: the same plan gives the same text, in alphabetical order,
    not in ``SECTIONS`` order (resource_tags comes before audit_events there)."""
    plan = plan_sections({"config": {"can_use_abac": False, "can_use_audit_logs": False}})
    assert list(json.loads(plan.skipped_sections_json())) == ["access_policies", "audit_events", "resource_tags"]


def test_a_taggings_answer_without_its_resources_is_refused_not_read_as_tagging_nothing():
    """``resources`` is required (``TaggingsResponse``): an answer without it is no tag value on no
    resource, which would let an access policy's conditions match nothing. A bucket of another
    type than a list is refused too."""
    value_id, key_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "1f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    answer = {"tag_key": "env", "tag_key_id": key_id, "tag_value": "production", "tag_value_id": value_id}
    assert ResourceTagging.from_taggings({**answer, "resources": {}}, "w-1") == []
    for missing in (answer, {**answer, "resources": None}):
        with pytest.raises(UnexpectedResponseError, match=r"^TaggingsResponse.resources: expected an object"):
            ResourceTagging.from_taggings(missing, "w-1")
    with pytest.raises(UnexpectedResponseError,
                       match=r"^TaggingsResponse.resources: expected a list of resources in 'prompts', got int"):
        ResourceTagging.from_taggings({**answer, "resources": {"prompts": 7}}, "w-1")


def test_a_field_langsmith_adds_to_the_resources_that_is_no_list_is_ignored_not_a_failed_inventory():
    """``TaggingsByResourceType`` names its buckets; a field a newer LangSmith adds there that is no
    list (a count, a flag, an object) holds no resources: ignored like any unknown field, the
    buckets beside it read as before. A named bucket of another type is still refused."""
    answer = {"tag_key": "env", "tag_key_id": "k-1", "tag_value": "production", "tag_value_id": "v-1"}
    resource = {"tagging_id": "t-1", "resource_id": "r-1", "resource_name": "router"}
    taggings = ResourceTagging.from_taggings({**answer, "resources": {
        "prompts": [resource], "total": 1, "truncated": False, "next": "abc", "counts": {"prompts": 1},
    }}, "w-1")
    assert [(t.id, t.resource_type, t.resource_id) for t in taggings] == [("t-1", "prompt", "r-1")]
    with pytest.raises(UnexpectedResponseError, match=r"expected a list of resources in 'queues', got dict"):
        ResourceTagging.from_taggings({**answer, "resources": {"queues": {"items": [resource]}}}, "w-1")
