"""The access picture's records (``langsmith/access_records.py``) on payloads the sandbox never
sends but LangSmith's schemas allow: an audit event that carries only its original audit-log
record, SSO settings and keys that leave out optional fields or set them against the usual
value. What each parses to is what the inventory's tables show."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from langsmith_access.langsmith import (
    AccessPolicy,
    AuditEvent,
    Credential,
    OrganizationInfo,
    ServiceAccount,
    SsoProvider,
    UnexpectedResponseError,
)
from langsmith_access.langsmith.access_records import SERVICE_KEY, WORKSPACE_SERVICE_KEY, redact_short_key
from langsmith_access.sync.inventory import (
    transform_access_policies,
    transform_audit_events,
    transform_credentials,
    transform_service_accounts,
    transform_sso_settings,
)
from langsmith_access_tests.helpers import in_time_zone

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
USER = "c2c2c2c2-0002-4002-8002-c2c2c2c2c2c2"
KEY = "d3d3d3d3-0003-4003-8003-d3d3d3d3d3d3"


def test_an_audit_event_without_its_ocsf_fields_is_read_from_its_original_record():
    original = {"id": "evt-1", "operation_name": "update_workspace_member", "operation_succeeded": False,
                "request_time": "2026-11-29T11:00:00Z", "ls_user_id": USER, "api_key_id": KEY,
                "workspace_id": "", "user_id": "legacy-id"}
    # The OCSF status says success: the original record's own verdict wins.
    event = AuditEvent.from_api({"status": "Success", "actor": {"user": {"uid": "legacy-id"}},
                                 "src_endpoint": {"ip": ""}, "unmapped": {"original_audit_log": original}})
    [row] = transform_audit_events([event], "sync-1", NOW)
    assert {name: row[name] for name in ("event_id", "at", "operation", "succeeded", "actor_user_id",
                                         "credential_id", "workspace_id", "source_ip")} == {
        "event_id": "evt-1", "at": datetime(2026, 11, 29, 11, 0, tzinfo=UTC),
        "operation": "update_workspace_member", "succeeded": False, "actor_user_id": USER,
        "credential_id": KEY, "workspace_id": None, "source_ip": None}


def test_sso_settings_keep_what_the_org_set_and_default_what_it_left_out():
    configured = SsoProvider.from_api({
        "id": "p1", "sso_groups_enabled": True, "sso_groups_required": True, "sso_groups_role_sync_enabled": False,
        "sso_groups_claim_field": "roles",
        "attribute_mapping": {"keys": {"roles": {"name": "roles", "array": True}, "email": {"name": "email"}}}})
    bare = SsoProvider.from_api({"id": "p2"})  # the Go service leaves out empty fields
    rows = {row["sso_provider_id"]: row for row in transform_sso_settings([configured, bare], "sync-1", NOW)}
    assert [(r["sso_groups_enabled"], r["sso_groups_required"], r["sso_groups_role_sync_enabled"],
             r["sso_groups_claim_field"], r["attribute_mapping_keys"]) for r in (rows["p1"], rows["p2"])] == [
        (True, True, False, "roles", ["email", "roles"]),
        (False, False, True, "groups", []),  # SSOProvider's defaults
    ]


def test_keys_and_tokens_keep_their_owner_use_and_access_and_default_what_is_left_out():
    key = Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2", "description": "ci",
                               "created_by": USER, "read_only": True}, "service_key")
    bare = Credential.from_api({"id": "k2", "short_key": "lsv2_sk_...c3d4", "description": ""}, "service_key")
    scim = Credential.from_scim_token({"id": "t1", "short_token": "...e5f6", "description": "okta",
                                       "last_used_at": "2026-11-28T10:00:00Z"})
    rows = {row["credential_id"]: row for row in transform_credentials([key, bare, scim], "sync-1", NOW)}
    assert [(rows[i]["created_by"], rows[i]["read_only"]) for i in ("k1", "k2")] == [(USER, True), (None, False)]
    assert (rows["t1"]["kind"], rows["t1"]["description"], rows["t1"]["last_used_at"]) == (
        "scim_token", "okta", datetime(2026, 11, 28, 10, 0, tzinfo=UTC))


def test_a_scim_token_listed_without_its_short_token_is_kept_with_none():
    # The Go service leaves out empty fields, and scim.ScimTokenResponse requires none.
    for sent in ({"id": KEY}, {"id": KEY, "short_token": ""}):
        token = Credential.from_scim_token(sent)
        assert (token.id, token.kind, token.short_key, token.secret_redacted) == (KEY, "scim_token", None, False)
    [row] = transform_credentials([Credential.from_scim_token({"id": KEY})], "sync-1", NOW)
    assert (row["credential_id"], row["short_key"]) == (KEY, None)


def test_a_policy_keeps_when_it_was_made_apart_from_when_it_last_changed():
    policy = AccessPolicy.from_api({"id": "a1", "effect": "deny", "role_ids": ["r1", "r2"],
                                    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z"})
    [row] = transform_access_policies([policy], "sync-1", NOW)
    assert (row["created_at"], row["updated_at"], row["role_ids"]) == (
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), ["r1", "r2"])


def test_the_names_and_ids_an_admin_typed_never_carry_a_whole_key_into_the_tables():
    """Workspace names, the identity provider's id and the attribute mapping's keys are text an
    admin typed: a key pasted into one is cut as in every other free-text field."""
    secret = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0a1b2c3d4e"
    key = Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2", "description": "ci",
                               "workspace_names": ["prod", f"ws {secret}"],
                               "default_workspace_name": f"default {secret}"}, "service_key")
    sso = SsoProvider.from_api({"id": "p1", "provider_id": f"okta {secret}",
                                "attribute_mapping": {"keys": {secret: {"name": "x"}, "email": {"name": "email"}}}})
    [credential_row] = transform_credentials([key], "sync-1", NOW)
    [sso_row] = transform_sso_settings([sso], "sync-1", NOW)
    assert secret not in repr(credential_row) and secret not in repr(sso_row)
    assert credential_row["workspace_names"] == ["prod", "ws lsv2_sk_...3d4e"]
    assert credential_row["default_workspace_name"] == "default lsv2_sk_...3d4e"
    assert sso_row["provider_id"] == "okta lsv2_sk_...3d4e"
    assert sso_row["attribute_mapping_keys"] == ["email", "lsv2_sk_...3d4e"]


def test_a_short_key_is_a_whole_secret_from_twenty_letters_and_digits_after_its_prefix():
    """The boundary the docstring names: 19 characters of key material are a redacted key's
    visible part, 20 are a whole secret."""
    assert redact_short_key("lsv2_sk_" + "a" * 19) == ("lsv2_sk_" + "a" * 19, False)
    assert redact_short_key("lsv2_sk_" + "a" * 16 + "b1c2") == ("lsv2_sk_...b1c2", True)


def test_a_key_listing_row_without_its_required_description_is_refused_and_kinds_are_checked():
    with pytest.raises(UnexpectedResponseError, match="APIKeyGetResponse.description: expected a string"):
        Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2"}, "service_key")
    with pytest.raises(ValueError, match="not an API key kind: 'scim_token'"):
        Credential.from_api({"id": "t1", "short_key": "...e5f6", "description": ""}, "scim_token")


def test_a_service_account_keeps_when_it_changed_and_must_have_a_name():
    account = ServiceAccount.from_api({"id": "s1", "name": "ci-bot", "organization_id": "o1",
                                       "default_workspace_id": None, "created_at": "2026-01-01T00:00:00Z",
                                       "updated_at": "2026-11-01T00:00:00+01:00"})
    [row] = transform_service_accounts([account], "sync-1", NOW)
    assert (row["name"], row["created_at"], row["updated_at"]) == (
        "ci-bot", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 10, 31, 23, 0, tzinfo=UTC))
    with pytest.raises(UnexpectedResponseError, match="ServiceAccount.name: expected a string"):
        ServiceAccount.from_api({"id": "s2", "created_at": "2026-01-01T00:00:00Z"})


def test_a_policy_group_keeps_its_resource_type_and_sso_keeps_where_jit_puts_new_users():
    policy = AccessPolicy.from_api({"id": "a1", "condition_groups": [
        {"permission": "prompts:read", "resource_type": "mcp_server", "conditions": []}]})
    [row] = transform_access_policies([policy], "sync-1", NOW)
    assert json.loads(row["condition_groups"]) == [
        {"permission": "prompts:read", "resource_type": "mcp_server", "conditions": []}]
    sso = SsoProvider.from_api({"id": "p1", "default_workspace_ids": ["w1", "w2"]})
    [sso_row] = transform_sso_settings([sso], "sync-1", NOW)
    assert sso_row["default_workspace_ids"] == ["w1", "w2"]


def test_an_audit_events_request_parts_are_read_from_where_ocsf_puts_them_and_odd_types_left_out():
    event = AuditEvent.from_api({
        "time": True,  # a boolean is no epoch time: the original record's request time is used
        "metadata": {"uid": "evt-2"}, "api": {"operation": "delete_service_key"},
        "resources": [{"uid": "r1"}, {"uid": None}, {"uid": 7}, "r4"],
        "http_request": {"http_method": "DELETE", "url": {"path": "/api/v1/orgs/current/service-keys/k1"}},
        "url": {"path": "/not/the/request/path"},
        "http_response": {"code": True},
        "unmapped": {"original_audit_log": {"request_time": "2026-11-29T13:00:00+02:00"}}})
    [row] = transform_audit_events([event], "sync-1", NOW)
    assert {name: row[name] for name in ("at", "target_ids", "http_method", "path", "status_code")} == {
        "at": datetime(2026, 11, 29, 11, 0, tzinfo=UTC), "target_ids": ["r1"], "http_method": "DELETE",
        "path": "/api/v1/orgs/current/service-keys/k1", "status_code": None}
    coded = AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "evt-3"},
                                 "api": {"operation": "login"}, "http_response": {"code": 403}})
    assert coded.status_code == 403


def test_every_id_an_inventory_record_reads_is_in_langsmiths_spelling():
    """The access picture's records read ids as records.py does: a UUID in capitals is kept lower
    case, so a key's role or an audit event's workspace joins the synced tables; other text is
    kept as sent."""
    role, workspace, event = "1a1a1a1a-1111-4111-8111-1a1a1a1a1a1a", "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa", USER
    key = Credential.from_api({"id": KEY.upper(), "short_key": "lsv2_sk_...abcd", "description": "ci",
                               "role_id": role.upper(), "org_role_id": role.upper()}, SERVICE_KEY)
    assert (key.id, key.role_id, key.org_role_id) == (KEY, role, role)
    assert Credential.from_scim_token({"id": KEY.upper(), "short_token": "lsv2_scim_...abcd"}).id == KEY
    account = ServiceAccount.from_api({"id": KEY.upper(), "name": "bot", "organization_id": USER.upper(),
                                       "default_workspace_id": workspace.upper()})
    assert (account.id, account.organization_id, account.default_workspace_id) == (KEY, USER, workspace)
    policy = AccessPolicy.from_api({"id": KEY.upper(), "role_ids": [role.upper(), "not-a-uuid"]})
    assert (policy.id, policy.role_ids) == (KEY, (role, "not-a-uuid"))
    sso = SsoProvider.from_api({"id": KEY.upper(), "provider_id": USER.upper(), "default_workspace_role_id": role.upper(),
                                "default_workspace_ids": [workspace.upper()]})
    assert (sso.id, sso.provider_id, sso.default_workspace_role_id, sso.default_workspace_ids) == (
        KEY, USER, role, (workspace,))
    assert OrganizationInfo.from_api({"id": USER.upper()}).id == USER
    audited = AuditEvent.from_api({
        "time": 1_900_000_000_000, "metadata": {"uid": event.upper()}, "api": {"operation": "login"},
        "actor": {"user": {"uid": USER.upper(), "credential_uid": KEY.upper()}},
        "resources": [{"uid": workspace.upper()}, {"uid": "r1"}],
        "unmapped": {"original_audit_log": {"workspace_id": workspace.upper()}}})
    assert (audited.event_id, audited.actor_user_id, audited.credential_id, audited.workspace_id,
            audited.target_ids) == (event, USER, KEY, workspace, (workspace, "r1"))


def test_a_whole_key_among_an_audit_events_targets_is_cut_from_twenty_characters_of_key_material():
    whole = "lsv2_sk_" + "a" * 16 + "b1c2"  # 20 characters after the prefix: a whole secret
    short = "lsv2_sk_" + "a" * 19  # one fewer: what a listing may show of a key
    event = AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "evt-4"},
                                 "api": {"operation": "delete_service_key"},
                                 "resources": [{"uid": whole}, {"uid": short}]})
    [row] = transform_audit_events([event], "sync-1", NOW)
    assert row["target_ids"] == ["lsv2_sk_...b1c2", short]


def test_the_ocsf_time_wins_over_the_original_request_time_and_an_org_wide_key_names_no_workspaces():
    event = AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "evt-5"},
                                 "api": {"operation": "login"},
                                 "unmapped": {"original_audit_log": {"request_time": "2026-11-29T11:00:00Z"}}})
    assert event.at == datetime.fromtimestamp(1_900_000_000, tz=UTC)
    org_wide = Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2", "description": "ci"}, "service_key")
    [row] = transform_credentials([org_wide], "sync-1", NOW)
    assert row["workspace_names"] is None  # null when org-wide (DESIGN.md section 9), not "no workspaces"


def test_a_plan_tier_that_is_not_text_is_not_said():
    assert OrganizationInfo.from_api({"id": "o", "config": {"plan_tier": 3}}).plan_tier is None


def test_a_keys_scope_a_policys_description_and_the_sso_metadata_url_reach_their_tables():
    key = Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2", "description": "ci",
                               "access_scope": "workspace"}, WORKSPACE_SERVICE_KEY, workspace_id="w1")
    pat = Credential.from_api({"id": "k2", "short_key": "lsv2_pt_...c3d4", "description": "",
                               "access_scope": None}, "personal_access_token")
    rows = {row["credential_id"]: row for row in transform_credentials([key, pat], "sync-1", NOW)}
    assert (rows["k1"]["access_scope"], rows["k2"]["access_scope"]) == ("workspace", None)
    # The workspace whose key listing had it (null for an org-wide listing's).
    assert (rows["k1"]["listed_in_workspace_id"], rows["k2"]["listed_in_workspace_id"]) == ("w1", None)
    policy = AccessPolicy.from_api({"id": "a1", "name": "No prod prompts", "description": "Viewers read staging only."})
    [policy_row] = transform_access_policies([policy], "sync-1", NOW)
    assert (policy_row["name"], policy_row["description"]) == ("No prod prompts", "Viewers read staging only.")
    sso = SsoProvider.from_api({"id": "p1", "metadata_url": "https://idp.example.com/app/saml/metadata"})
    [sso_row] = transform_sso_settings([sso], "sync-1", NOW)
    assert sso_row["metadata_url"] == "https://idp.example.com/app/saml/metadata"


def test_org_info_keeps_only_the_settings_its_answer_holds():
    # An older or leaner answer leaves settings out: no row claims them unset.
    info = OrganizationInfo.from_api({"id": "o", "tier": "enterprise", "sso_only": False,
                                      "max_pat_expiry_days": None, "config": {"can_use_abac": True}})
    assert info.settings == {"sso_only": False, "max_pat_expiry_days": None}
    assert dict(info.setting_rows()) == {"sso_only": "false", "max_pat_expiry_days": None,
                                         "tier": "enterprise", "config.can_use_abac": "true"}


def test_org_info_keeps_the_orgs_name_among_its_settings():
    # Where several orgs are synced, the name LangSmith shows is what people call the org; a
    # rename is then an interval of org_settings_history like any other setting's change.
    info = OrganizationInfo.from_api({"id": "o", "display_name": "Acme Research", "tier": "enterprise"})
    assert dict(info.setting_rows()) == {"display_name": "Acme Research", "tier": "enterprise"}


def test_an_audit_events_ocsf_fields_win_over_its_original_record_and_odd_parts_are_left_out():
    original = {"id": "evt-original", "operation_name": "delete_api_key", "api_key_id": "key-original",
                "request_time": "2026-11-29T11:00:00Z"}
    event = AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "evt-ocsf"},
                                 "api": {"operation": "create_api_key"},
                                 "actor": {"user": {"credential_uid": "key-ocsf"}},
                                 "unmapped": {"original_audit_log": original}})
    assert (event.event_id, event.operation, event.credential_id) == ("evt-ocsf", "create_api_key", "key-ocsf")
    # Parts of another type than the schema's object are absent, not a crash.
    odd = AuditEvent.from_api({"metadata": "evt-ocsf", "api": ["create_api_key"], "actor": "someone",
                               "http_request": 7, "src_endpoint": [], "unmapped": {"original_audit_log": original}})
    assert (odd.event_id, odd.operation, odd.actor_user_id, odd.credential_id, odd.http_method, odd.source_ip) == (
        "evt-original", "delete_api_key", None, "key-original", None, None)
    with pytest.raises(UnexpectedResponseError, match="api.operation: missing"):
        AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "evt-6"}, "api": {"operation": ""},
                             "unmapped": {"original_audit_log": {"operation_name": ""}}})


def test_a_whole_key_in_any_text_an_inventory_row_keeps_is_cut_to_its_short_form():
    """Every free text a policy, a service account, SSO settings or an audit event carries may
    hold a pasted key: each one's row keeps only its prefix and last four characters."""
    secret = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0a1b2c3d4e"
    cut = "lsv2_sk_...3d4e"
    policy = AccessPolicy.from_api({
        "id": "a1", "name": f"n {secret}", "description": f"d {secret}", "effect": f"e {secret}",
        "condition_groups": [{"permission": "prompts:read", "conditions": [
            {"attribute_name": "resource_tag_key", "operator": "equals", "attribute_value": secret}]}]})
    scim_token = "lsv2_scim_" + "0123456789abcdef" * 2  # a longer prefix: cut all the same
    account = ServiceAccount.from_api({"id": "s1", "name": f"bot {secret} {scim_token}"})
    key = Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2", "description": f"ci {secret}"},
                              "service_key")
    sso = SsoProvider.from_api({"id": "p1", "metadata_url": "https://saml:hunter2@idp.example.com/m.xml?sig=0a1b2c",
                                "sso_groups_claim_field": f"g {secret}"})
    event = AuditEvent.from_api({
        "time": 1_900_000_000_000, "metadata": {"uid": f"evt {secret}"}, "api": {"operation": f"op {secret}"},
        "actor": {"user": {"uid": f"u {secret}", "credential_uid": f"c {secret}"}},
        "src_endpoint": {"ip": f"ip {secret}"},
        "http_request": {"http_method": f"m {secret}", "url": {"path": f"/p/{secret}"}},
        "unmapped": {"original_audit_log": {"workspace_id": f"w {secret}"}}})
    [policy_row] = transform_access_policies([policy], "sync-1", NOW)
    [account_row] = transform_service_accounts([account], "sync-1", NOW)
    [key_row] = transform_credentials([key], "sync-1", NOW)
    [sso_row] = transform_sso_settings([sso], "sync-1", NOW)
    [event_row] = transform_audit_events([event], "sync-1", NOW)
    assert (policy_row["name"], policy_row["description"], policy_row["effect"]) == (
        f"n {cut}", f"d {cut}", f"e {cut}")
    assert json.loads(policy_row["condition_groups"])[0]["conditions"][0]["attribute_value"] == cut
    assert (account_row["name"], key_row["description"]) == (f"bot {cut} lsv2_scim_...cdef", f"ci {cut}")
    assert (sso_row["sso_groups_claim_field"], sso_row["metadata_url"]) == (
        f"g {cut}", "https://<credentials>@idp.example.com/m.xml?<query>")
    assert {name: event_row[name] for name in (
        "event_id", "operation", "actor_user_id", "credential_id", "workspace_id", "source_ip", "http_method", "path",
    )} == {"event_id": f"evt {cut}", "operation": f"op {cut}", "actor_user_id": f"u {cut}",
           "credential_id": f"c {cut}", "workspace_id": f"w {cut}", "source_ip": f"ip {cut}",
           "http_method": f"m {cut}", "path": f"/p/{cut}"}
    assert secret not in event_row["detail"] and cut in event_row["detail"]
    assert all(secret not in repr(row) for row in (policy_row, account_row, key_row, sso_row, event_row))


def test_sso_settings_say_whether_the_metadata_was_pasted_as_xml_and_why_the_mapping_did_not_load():
    xml = '<EntityDescriptor entityID="urn:idp"><X509Certificate>MIIC-planted-cert</X509Certificate></EntityDescriptor>'
    pasted = SsoProvider.from_api({"id": "p1", "metadata_xml": xml, "metadata_url": None,
                                   "attribute_mapping_load_error": "claim 'groups' is not in the assertion"})
    by_url = SsoProvider.from_api({"id": "p2", "metadata_url": "https://idp.example.com/m.xml", "metadata_xml": "",
                                   "attribute_mapping_load_error": None})
    older = SsoProvider.from_api({"id": "p3"})  # a version that sends neither field
    blank = SsoProvider.from_api({"id": "p4", "metadata_xml": "  \n"})
    assert [(p.has_metadata_xml, p.attribute_mapping_load_error) for p in (pasted, by_url, older, blank)] == [
        (True, "claim 'groups' is not in the assertion"), (False, None), (False, None), (False, None)]
    rows = transform_sso_settings([pasted, by_url, older], "sync-1", NOW)
    assert [(r["has_metadata_xml"], r["attribute_mapping_load_error"]) for r in rows] == [
        (True, "claim 'groups' is not in the assertion"), (False, None), (False, None)]
    # Only whether it was there: neither the record nor its row keeps the XML.
    assert all("planted-cert" not in repr(kept) for kept in (pasted, *rows))
    with pytest.raises(UnexpectedResponseError, match=r"SSOProvider.metadata_xml: expected a string, got int"):
        SsoProvider.from_api({"id": "p5", "metadata_xml": 7})


def test_the_sso_attribute_mapping_load_error_is_stored_without_a_key_or_a_urls_secrets():
    secret = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0a1b2c3d4e"
    sso = SsoProvider.from_api({"id": "p1", "attribute_mapping_load_error": (
        f"could not load https://saml:hunter2@idp.example.com/m.xml?sig=0a1b2c with {secret}")})
    [row] = transform_sso_settings([sso], "sync-1", NOW)
    assert row["attribute_mapping_load_error"] == (
        "could not load https://<credentials>@idp.example.com/m.xml?<query> with lsv2_sk_...3d4e")
    assert secret not in repr(row) and "hunter2" not in repr(row) and "0a1b2c" not in repr(row)


def test_a_short_key_masked_with_many_stars_is_no_whole_secret():
    """Only letters and digits are key material: a listing that masks the middle of a key
    with stars shows a redacted key however long the mask."""
    masked = "lsv2_sk_" + "*" * 24 + "a1b2"
    assert redact_short_key(masked) == (masked, False)


def test_a_scim_token_listing_that_sends_a_whole_token_keeps_only_its_short_form():
    token = "lsv2_scim_" + "0123456789abcdef" * 2
    scim = Credential.from_scim_token({"id": "t1", "short_token": token})
    assert (scim.short_key, scim.secret_redacted) == ("lsv2_scim_...cdef", True)
    assert token not in repr(scim)


def test_a_scim_token_row_without_its_id_is_refused_naming_the_field():
    """The Go service leaves out empty fields, yet a token row with no id is none the inventory
    can tell apart: refused naming the field, never kept as "" (one without a short_token is kept)."""
    row = {"id": "t1", "short_token": "lsv2_scim_...cdef", "description": "okta"}
    Credential.from_scim_token(row)
    for missing in ({k: v for k, v in row.items() if k != "id"}, {**row, "id": ""}, {**row, "id": None}):
        with pytest.raises(UnexpectedResponseError, match=r"^scim\.ScimTokenResponse\.id: expected"):
            Credential.from_scim_token(missing)


def test_a_key_keeps_when_it_expires_and_its_org_role_apart_from_its_last_use_and_workspace_role():
    key = Credential.from_api({"id": "k1", "short_key": "lsv2_sk_...a1b2", "description": "ci",
                               "last_used_at": "2026-11-28T10:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
                               "role_id": "r-workspace", "org_role_id": "r-org"}, SERVICE_KEY)
    assert (key.last_used_at, key.expires_at) == (
        datetime(2026, 11, 28, 10, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert (key.role_id, key.org_role_id) == ("r-workspace", "r-org")


def test_an_access_policy_that_does_not_say_its_effect_is_kept_so_never_taken_as_allow():
    """Nothing in ``AccessPolicy`` is required: a policy without an effect keeps None (not said),
    never a made-up ``allow`` (a grant) or ``deny``."""
    assert AccessPolicy.from_api({"id": "a1", "role_ids": ["r1"]}).effect is None
    assert AccessPolicy.from_api({"id": "a1", "effect": None}).effect is None


def test_org_settings_and_policy_conditions_are_stored_as_json_text_with_sorted_keys():
    """The same setting or policy gives the same text, whatever order the answer put its keys in."""
    info = OrganizationInfo.from_api({"id": "o", "ip_allowlist": [{"description": "office", "cidr": "10.0.0.0/8"}]})
    assert dict(info.setting_rows())["ip_allowlist"] == '[{"cidr": "10.0.0.0/8", "description": "office"}]'
    policy = AccessPolicy.from_api({"id": "a1", "condition_groups": [
        {"resource_type": "prompt", "permission": "prompts:read", "conditions": []}]})
    assert policy.condition_groups_json() == (
        '[{"conditions": [], "permission": "prompts:read", "resource_type": "prompt"}]')


def test_an_audit_event_keeps_its_whole_answer_as_compact_json_with_sorted_keys():
    event = AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "e1"}, "api": {"operation": "login"}})
    assert event.detail == '{"api":{"operation":"login"},"metadata":{"uid":"e1"},"time":1900000000000}'


def test_an_ocsf_time_in_milliseconds_is_read_so_from_the_first_day_of_1973_on():
    """The boundary the docstring names: 1e11 is a time in milliseconds (March 1973), not one in
    seconds (the year 5138)."""
    event = AuditEvent.from_api({"time": 100_000_000_000, "metadata": {"uid": "e1"}, "api": {"operation": "login"}})
    assert event.at == datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)


def test_an_ocsf_time_is_a_moment_in_utc_whatever_the_machines_time_zone():
    """The epoch is one moment everywhere: an event's time is read in UTC, never as the local
    time of the machine the sync runs on and then labelled UTC."""
    with in_time_zone():
        event = AuditEvent.from_api({"time": 1_764_410_400_000, "metadata": {"uid": "e1"},
                                     "api": {"operation": "login"}})
    assert event.at == datetime(2025, 11, 29, 10, tzinfo=UTC)


def test_an_audit_event_without_an_id_an_operation_or_a_time_is_refused_naming_what_is_missing():
    with pytest.raises(UnexpectedResponseError, match="OCSFApiActivity.metadata.uid: expected an event id"):
        AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": ""}, "api": {"operation": "login"},
                             "unmapped": {"original_audit_log": {"id": ""}}})
    with pytest.raises(UnexpectedResponseError, match=r"^OCSFApiActivity.api.operation: missing \(event 'e1'\)$"):
        AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "e1"}})
    with pytest.raises(UnexpectedResponseError, match=r"^OCSFApiActivity.time: missing \(event 'e1'\)$"):
        AuditEvent.from_api({"metadata": {"uid": "e1"}, "api": {"operation": "login"}})
    # Without ``time``, the original record's request_time: a bad one is refused naming where it was read.
    with pytest.raises(UnexpectedResponseError,
                       match=r"^OCSFApiActivity.unmapped.original_audit_log.request_time: 'yesterday' is not an ISO"):
        AuditEvent.from_api({"metadata": {"uid": "e1"}, "api": {"operation": "login"},
                             "unmapped": {"original_audit_log": {"request_time": "yesterday"}}})


@pytest.mark.parametrize("operation", [7, True, ["login"], {"name": "login"}])
def test_an_audit_event_whose_operation_is_no_text_is_refused_naming_the_field(operation):
    """``api.operation`` is a name (an open set, kept as sent): another type is an unexpected
    answer naming the field, the type that came and the event, never a TypeError from deep in
    the parse, nor called "missing" when it was sent."""
    got = type(operation).__name__
    expected = rf"^OCSFApiActivity.api.operation: expected an operation name, got {got} \(event 'e1'\)$"
    with pytest.raises(UnexpectedResponseError, match=expected):
        AuditEvent.from_api({"time": 1_900_000_000_000, "metadata": {"uid": "e1"}, "api": {"operation": operation}})


@pytest.mark.parametrize("time", [1e20, 10**30, -1e16, float("inf"), float("nan")])
def test_an_ocsf_time_that_is_no_moment_is_refused_naming_the_field_and_the_event(time):
    """As a date-time string that is no moment in UTC (records.parse_timestamp): a clear error,
    never Python's OverflowError, OSError or ValueError from deep in the parse."""
    with pytest.raises(UnexpectedResponseError, match=r"^OCSFApiActivity.time: .* is no moment \(event 'e1'\)$"):
        AuditEvent.from_api({"time": time, "metadata": {"uid": "e1"}, "api": {"operation": "login"}})
