"""The inventory's pure parts, on fixed inputs: the audit log's windows, secrets cut from what a
server sends, the section plan of the core sync, and the settings that drive them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import duckdb
import pytest

from langsmith_access.defs.inventory.definitions import waits_for_first_sync
from langsmith_access.langsmith import (
    SECTIONS,
    AccessPolicy,
    AuditEvent,
    AuditWindow,
    Credential,
    OrganizationInfo,
    ResourceTagging,
    SectionPlan,
    SectionUnavailableError,
    ServiceAccount,
    SsoProvider,
)
from langsmith_access.langsmith.access_records import PolicyCondition, PolicyConditionGroup, redact_short_key
from langsmith_access.settings import Org, Settings, SettingsError
from langsmith_access.store.raw_tables import RAW_SCHEMA
from langsmith_access.store.schema import ensure_schema
from langsmith_access.store.sections import (
    SectionRead,
    earliest_audit_window_start,
    ensure_section_tables,
    latest_audit_window_end,
    record_audit_window,
    record_section_reads,
    section_reads,
    section_rows_json,
    skipped_sections_json,
)
from langsmith_access.sync.inventory import (
    AUDIT_OVERLAP,
    AUDIT_RETENTION,
    CREDENTIAL_SECTIONS,
    INVENTORY_SECTIONS,
    TABLE_SECTIONS,
    TABLE_TRANSFORMS,
    append_new_events,
    audit_windows,
    get_inventory,
    read_audit_log,
    scrub_secrets,
    transform_audit_events,
    transform_credentials,
)
from langsmith_access.sync.org_info import scim_groups_read, transform_org_settings
from langsmith_access.transform import dbt_vars

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = "lsv2_sk_0123456789abcdef0123456789abcdef_0a1b2c3d4e"


def test_the_first_load_reaches_back_the_unused_days_a_day_at_a_time():
    windows = list(audit_windows(None, NOW, 90))
    assert windows[0][0] == NOW - timedelta(days=90) and windows[-1][1] == NOW
    assert len(windows) == 90
    assert all(end - start <= timedelta(days=1) for start, end in windows)
    # Consecutive windows share their boundary instant (both ends are inclusive): no gap.
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))


def test_a_later_load_starts_an_hour_before_where_the_last_one_stopped():
    last_end = NOW - timedelta(minutes=70)
    assert list(audit_windows(last_end, NOW, 90)) == [(last_end - AUDIT_OVERLAP, NOW)]
    # Far behind (the inventory did not run for days): still from where it stopped, day by day.
    behind = list(audit_windows(NOW - timedelta(days=3), NOW, 90))
    assert behind[0][0] == NOW - timedelta(days=3) - AUDIT_OVERLAP and behind[-1][1] == NOW
    # Behind by more than the unused days: still from where it stopped, not from the unused days
    # back, or the loaded log would have a hole that activity_known_since says it has not.
    longer = list(audit_windows(NOW - timedelta(days=100), NOW, 90, NOW - timedelta(days=200)))
    assert longer[0][0] == NOW - timedelta(days=100) - AUDIT_OVERLAP and longer[-1][1] == NOW
    # A clock that went back: one window ending now, never a window that ends before it starts.
    assert list(audit_windows(NOW + timedelta(hours=5), NOW, 90)) == [(NOW, NOW)]
    # ...nor one that ends after now, when the whole loaded log lies ahead of the clock.
    ahead = list(audit_windows(NOW + timedelta(days=2), NOW, 90, NOW + timedelta(days=1)))
    assert ahead[0][0] == NOW - timedelta(days=90) and max(end for _, end in ahead) == NOW


def test_a_later_load_first_reads_the_days_a_raised_unused_days_adds():
    last_end, known_since = NOW - timedelta(minutes=70), NOW - timedelta(days=30)
    windows = list(audit_windows(last_end, NOW, 90, known_since))
    # The 60 days before what was loaded, a day at a time, up to where the loaded log starts...
    assert windows[0][0] == NOW - timedelta(days=90) and windows[59][1] == known_since
    assert all(end - start <= timedelta(days=1) for start, end in windows)
    # ...then on from where the last load stopped, as before.
    assert windows[60:] == [(last_end - AUDIT_OVERLAP, NOW)]
    # The log reaching back far enough (or further: the setting was lowered): nothing more.
    assert list(audit_windows(last_end, NOW, 30, known_since)) == [(last_end - AUDIT_OVERLAP, NOW)]
    assert list(audit_windows(last_end, NOW, 10, known_since)) == [(last_end - AUDIT_OVERLAP, NOW)]


def test_no_load_reaches_back_past_the_400_days_langsmith_keeps_its_audit_log():
    # LANGSMITH_ACCESS_UNUSED_DAYS=500: a window before LangSmith's retention comes back empty,
    # yet would be recorded as read, and user_activity would claim 500 days of activity known.
    assert AUDIT_RETENTION == timedelta(days=400)
    first = list(audit_windows(None, NOW, 500))
    assert first[0][0] == NOW - AUDIT_RETENTION and first[-1][1] == NOW and len(first) == 400
    # The next run (loaded back to the retention): nothing more to read back, only on from
    # where the last load stopped; the kept log grows past the retention by itself.
    last_end, known_since = NOW - timedelta(minutes=70), NOW - timedelta(hours=2) - AUDIT_RETENTION
    assert list(audit_windows(last_end, NOW, 500, known_since)) == [(last_end - AUDIT_OVERLAP, NOW)]
    # Raised from 90 to 500: the days before the loaded log are read back to the retention only.
    raised = list(audit_windows(last_end, NOW, 500, NOW - timedelta(days=90)))
    assert raised[0][0] == NOW - AUDIT_RETENTION and raised[-1] == (last_end - AUDIT_OVERLAP, NOW)


def test_every_section_is_read_in_order_into_a_table_that_has_a_transform():
    assert INVENTORY_SECTIONS == (
        "access_policies", "resource_tags", "service_keys", "personal_access_tokens", "workspace_service_keys",
        "scim_tokens", "service_accounts", "sso_settings", "audit_events")
    assert TABLE_SECTIONS == {
        "access_policies": ("access_policies",),
        "resource_tags": ("resource_tags",),
        "credentials": ("service_keys", "personal_access_tokens", "workspace_service_keys", "scim_tokens"),
        "service_accounts": ("service_accounts",),
        "sso_settings": ("sso_settings",),
    }
    assert list(TABLE_TRANSFORMS) == list(TABLE_SECTIONS)


def test_whole_secrets_are_cut_and_short_keys_left_alone():
    text = f'{{"note": "created {SECRET}", "short": "lsv2_sk_...4e3f", "pt": "lsv2_pt_{"x" * 40}"}}'
    scrubbed = scrub_secrets(text)
    assert SECRET not in scrubbed and "lsv2_sk_...2c3d4e"[-4:] in scrubbed
    assert "lsv2_sk_...4e3f" in scrubbed and "x" * 20 not in scrubbed
    assert scrub_secrets("no keys here") == "no keys here"


def test_free_text_cuts_a_key_from_as_few_characters_as_a_listings_short_key_is_cut():
    # One rule for a whole secret, in a listing's short_key and in any text: 20 characters of
    # key material after the prefix. A key cut in one place is never left whole in another.
    at_the_edge, below = "lsv2_sk_" + "a1" * 10, "lsv2_sk_" + "b" * 19
    assert redact_short_key(at_the_edge) == (f"lsv2_sk_...{at_the_edge[-4:]}", True)
    assert scrub_secrets(f"key {at_the_edge} pasted") == f"key lsv2_sk_...{at_the_edge[-4:]} pasted"
    assert redact_short_key(below) == (below, False)
    assert scrub_secrets(f"key {below} pasted") == f"key {below} pasted"


def test_a_legacy_key_is_a_whole_secret_too():
    # LangSmith's older keys: ``ls__`` and 32 hex digits, shorter than today's 43 characters.
    legacy = "ls__" + "0123456789abcdef" * 2
    assert scrub_secrets(f"old key {legacy} still in use") == f"old key ls__...{legacy[-4:]} still in use"
    credential = Credential.from_api({"id": "k1", "short_key": legacy, "description": legacy}, "service_key")
    [row] = transform_credentials([credential], "sync-1", NOW)
    assert (row["short_key"], row["description"]) == (f"ls__...{legacy[-4:]}",) * 2 and credential.secret_redacted


def test_a_listing_that_sends_a_whole_key_is_stored_by_its_short_form():
    credential = Credential.from_api(
        {"id": "k1", "short_key": SECRET, "description": "ci", "key": SECRET}, "service_key")
    [row] = transform_credentials([credential], "sync-1", NOW)
    assert row["short_key"] == f"lsv2_sk_...{SECRET[-4:]}"
    assert SECRET not in repr(row)


def test_no_free_text_a_server_sends_carries_a_whole_key_into_an_inventory_row():
    """Every text people or the server wrote (names, descriptions, tags, a URL, an error, each of
    an audit event's texts) is cut where a whole key was pasted into it, and a URL loses its
    password and query string: what each inventory table would store holds no secret."""
    text, short = f"pasted {SECRET} here", f"lsv2_sk_...{SECRET[-4:]}"
    url = f"https://admin:{SECRET}@idp.example.com/saml/metadata?signature=signed-link-token"
    uid = "0b6f1c2e-0000-4000-8000-000000000001"
    records = {
        "access_policies": [AccessPolicy(
            id=uid, name=text, description=text, effect=text, role_ids=(uid,),
            condition_groups=(PolicyConditionGroup(text, text, (PolicyCondition(text, text, text, text),)),),
            created_at=NOW, updated_at=NOW)],
        "resource_tags": [ResourceTagging(
            id=uid, workspace_id=uid, tag_key_id=uid, tag_key=text, tag_value_id=uid, tag_value=text,
            resource_type=text, resource_id=uid, resource_name=text)],
        "credentials": [Credential(
            id=uid, kind="service_key", short_key=short, description=text, created_at=NOW, last_used_at=None,
            expires_at=None, revoked_at=None, workspace_names=(text,), default_workspace_name=text, role_id=uid,
            org_role_id=None, access_scope=text, created_by=text, read_only=False)],  # both as sent
        "service_accounts": [ServiceAccount(id=uid, name=text, organization_id=uid, default_workspace_id=uid,
                                            created_at=NOW, updated_at=NOW)],
        "sso_settings": [SsoProvider(
            id=uid, provider_id=text, default_workspace_role_id=uid, default_workspace_ids=(uid,), metadata_url=url,
            sso_groups_enabled=True, sso_groups_claim_field=text, sso_groups_required=False,
            sso_groups_role_sync_enabled=True, attribute_mapping_keys=(text,), has_metadata_xml=False,
            attribute_mapping_load_error=f"could not load {url}: 403")],
    }
    assert list(records) == list(TABLE_TRANSFORMS)
    event = AuditEvent(
        event_id=text, at=NOW, operation=text, succeeded=True, actor_user_id=text, credential_id=text,
        workspace_id=text, target_ids=(text,), source_ip=text, http_method=text, path=text, status_code=200,
        detail=text)
    tables = {table: transform(records[table], "sync-1", NOW) for table, transform in TABLE_TRANSFORMS.items()}
    tables["audit_events"] = transform_audit_events([event], "sync-1", NOW)
    for table, [row] in tables.items():
        for column, value in row.items():
            assert SECRET not in repr(value), (table, column)
            assert "signed-link-token" not in repr(value), (table, column)
    # Cut, not dropped: what was around the key, and the key's short form, stay.
    assert tables["access_policies"][0]["description"] == f"pasted {short} here"
    assert tables["sso_settings"][0]["metadata_url"] == "https://<credentials>@idp.example.com/saml/metadata?<query>"


def test_the_core_sync_reads_scim_groups_only_where_the_plan_and_the_route_give_them():
    enterprise = OrganizationInfo.from_api({"config": {"can_use_saml_sso": True}, "permissions": ["organization:read"]})
    plus = OrganizationInfo.from_api({"config": {"can_use_saml_sso": False}})
    assert scim_groups_read(enterprise, membership_route="enriched_members", route_reason=None,
                            scim_group_rows=7) == SectionRead.read("scim_groups", 7)
    by_workspace = scim_groups_read(enterprise, membership_route="workspace_members",
                                    route_reason="the key lacks organization:manage", scim_group_rows=0)
    assert by_workspace.status == "skipped" and by_workspace.reason.startswith("membership route:")
    assert "the key lacks organization:manage" in by_workspace.reason
    not_in_plan = scim_groups_read(plus, membership_route="enriched_members", route_reason=None, scim_group_rows=0)
    assert not_in_plan.reason.startswith("not in plan: config.can_use_saml_sso is false")
    reads = [SectionRead.read("scim_groups", 7), not_in_plan]
    assert section_rows_json(reads) == '{"scim_groups": 7}'
    assert skipped_sections_json(reads) == '{"scim_groups": "%s"}' % not_in_plan.reason
    assert skipped_sections_json([]) == "{}"


def test_org_settings_rows_keep_values_as_text_and_new_settings_as_they_come():
    info = OrganizationInfo.from_api({
        "tier": "enterprise", "max_pat_expiry_days": 90, "sso_only": False, "ip_allowlist": ["10.0.0.0/8"],
        "max_service_key_expiry_days": None, "config": {"can_use_abac": True, "max_workspaces": 10},
    })
    rows = {r["setting"]: r["value"] for r in transform_org_settings(info, "sync-1", NOW)}
    assert rows == {"max_pat_expiry_days": "90", "sso_only": "false", "ip_allowlist": '["10.0.0.0/8"]',
                    "max_service_key_expiry_days": None, "tier": "enterprise", "config.can_use_abac": "true"}


def test_the_inventory_settings_have_defaults_and_refuse_bad_values():
    assert (Settings().inventory_cron, Settings().unused_days) == ("30 * * * *", 90)
    settings = Settings.from_env({"LANGSMITH_ACCESS_INVENTORY_CRON": " 15  4 * * 1-5 ", "LANGSMITH_ACCESS_UNUSED_DAYS": "30"})
    assert (settings.inventory_cron, settings.unused_days) == ("15 4 * * 1-5", 30)
    for variable, value in (("LANGSMITH_ACCESS_INVENTORY_CRON", "hourly"),
                            ("LANGSMITH_ACCESS_INVENTORY_CRON", "30 * * *"),
                            ("LANGSMITH_ACCESS_UNUSED_DAYS", "0"),
                            ("LANGSMITH_ACCESS_UNUSED_DAYS", "ninety")):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: value})


def test_dbt_gets_the_unused_days_only_when_they_differ_from_its_default():
    # dbt parses the project again whenever its vars change: the default passes none.
    assert dbt_vars(unused_days=90) == {}
    assert dbt_vars(unused_days=30) == {"unused_days": 30}


def test_audit_events_are_appended_once_by_event_id_across_and_within_windows():
    import duckdb

    from langsmith_access.store.schema import ensure_schema
    from langsmith_access.sync.inventory import append_new_events

    def event(event_id: str, detail: str) -> dict:
        return {"sync_id": "s1", "fetched_at": NOW, "event_id": event_id, "at": NOW, "operation": "login",
                "succeeded": True, "target_ids": [], "detail": detail}

    conn = duckdb.connect()
    ensure_schema(conn)
    assert append_new_events(conn, []) == 0
    assert append_new_events(conn, [event("e1", "first"), event("e2", "first")]) == 2
    # The next window overlaps the last by an hour (e2 again), and a page may repeat a row (e3).
    assert append_new_events(conn, [event("e2", "again"), event("e3", "first"), event("e3", "again")]) == 1
    stored = conn.execute("SELECT event_id, detail FROM raw.audit_events ORDER BY event_id").fetchall()
    assert [event_id for event_id, _ in stored] == ["e1", "e2", "e3"]
    assert stored[1] == ("e2", "first")  # the event loaded before stays as it was


def test_an_audit_log_the_plan_or_the_route_no_longer_gives_forgets_the_events_loaded_before():
    import duckdb

    from langsmith_access.langsmith import SectionPlan, SectionUnavailableError
    from langsmith_access.store.schema import ensure_schema
    from langsmith_access.store.sections import record_audit_window
    from langsmith_access.sync.inventory import append_new_events, read_audit_log

    class Refusing:  # the install answers that it has no audit log
        def list_audit_events(self, start, end):
            raise SectionUnavailableError("no audit log", section="audit_events", reason="route missing: older install")

    conn = duckdb.connect()
    ensure_schema(conn)

    def load_some() -> None:
        append_new_events(conn, [{"sync_id": "s0", "fetched_at": NOW, "event_id": "e1", "at": NOW,
                                  "operation": "login", "succeeded": True, "target_ids": [], "detail": "{}"}])
        record_audit_window(conn, sync_id="s0", window_start=NOW - timedelta(days=1), window_end=NOW,
                            events_read=1, events_new=1, pages=1)

    def held() -> tuple:
        return conn.execute("SELECT (SELECT count(*) FROM raw.audit_events), "
                            "(SELECT count(*) FROM raw.audit_windows)").fetchall()[0]

    plans = [SectionPlan(read=(), skipped={"audit_events": "plan: no audit log"}), SectionPlan(read=("audit_events",))]
    for plan in plans:
        load_some()
        assert held() == (1, 1)
        read, load = read_audit_log(Refusing(), conn, plan, sync_id="s1", now=NOW,  # type: ignore[arg-type]
                                    unused_days=90, fetched_at=NOW)
        assert load is None and read == SectionRead.skipped("audit_events", read.reason)
        assert held() == (0, 0)


def test_what_a_read_left_out_is_kept_with_its_rows_and_is_no_skip():
    left_out = SectionRead.read("workspace_service_keys", 3, "1 workspace(s) deleted since they were listed")
    conn = duckdb.connect()
    conn.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
    ensure_section_tables(conn)
    record_section_reads(conn, sync_id="run-1", job="inventory", reads=[left_out, SectionRead.read("sso_settings", 1)])
    assert section_reads(conn, "run-1") == [left_out, SectionRead.read("sso_settings", 1)]
    assert left_out.describe() == "workspace_service_keys: read 3 rows (1 workspace(s) deleted since they were listed)"
    assert SectionRead.read("sso_settings", 1).describe() == "sso_settings: read 1 row"
    assert skipped_sections_json([left_out]) == "{}" and section_rows_json([left_out]) == '{"workspace_service_keys": 3}'


def test_a_step_written_again_replaces_only_its_own_sections_of_its_own_run():
    conn = duckdb.connect()
    conn.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
    ensure_section_tables(conn)
    first = [SectionRead.read("access_policies", 4), SectionRead.read("sso_settings", 1)]
    record_section_reads(conn, sync_id="run-1", job="inventory", reads=first)
    record_section_reads(conn, sync_id="run-2", job="inventory", reads=[
        SectionRead.read("sso_settings", 2), SectionRead.skipped("audit_events", "the key's role")])
    # run-2's audit step retried: its own row replaced; its other section and run-1's stay.
    record_section_reads(conn, sync_id="run-2", job="inventory", reads=[SectionRead.read("audit_events", 7)])
    assert section_reads(conn, "run-1") == first  # in the order they were recorded
    assert section_reads(conn, "run-2") == [SectionRead.read("sso_settings", 2), SectionRead.read("audit_events", 7)]


def test_reads_that_cannot_be_recorded_leave_the_runs_rows_as_they_were():
    conn = duckdb.connect()
    conn.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
    ensure_section_tables(conn)
    kept = [SectionRead.read("sso_settings", 1), SectionRead.skipped("audit_events", "the plan")]
    record_section_reads(conn, sync_id="run-1", job="inventory", reads=kept)
    with pytest.raises(duckdb.ConversionException):
        not_a_count = SectionRead("sso_settings", "read", None, "many")  # type: ignore[arg-type]
        record_section_reads(conn, sync_id="run-1", job="inventory",
                             reads=[SectionRead.read("audit_events", 7), not_a_count])
    assert section_reads(conn, "run-1") == kept  # the delete rolled back with the failed insert
    # A skipped section gave no rows: its count is null, not 0.
    skipped = f"SELECT section, rows FROM {RAW_SCHEMA}.section_reads WHERE status = 'skipped'"
    assert conn.execute(skipped).fetchall() == [("audit_events", None)]


def test_the_audit_log_reaches_back_to_the_earliest_window_and_up_to_the_latest():
    conn = duckdb.connect()
    ensure_schema(conn)
    assert latest_audit_window_end(conn) is None and earliest_audit_window_start(conn) is None
    for start, end in ((NOW - timedelta(days=2), NOW - timedelta(days=1)), (NOW - timedelta(days=1), NOW),
                       (NOW - timedelta(days=90), NOW - timedelta(days=89))):
        record_audit_window(conn, sync_id="s1", window_start=start, window_end=end,
                            events_read=0, events_new=0, pages=1)
    assert earliest_audit_window_start(conn) == NOW - timedelta(days=90)
    assert latest_audit_window_end(conn) == NOW


def test_the_inventory_schedule_waits_for_a_missing_file_but_not_for_one_it_cannot_read(tmp_path):
    # No file yet: no sync, so the tick waits and says why. A file it cannot read (damaged, busy):
    # the schedule cannot tell, so it launches the run, which reports what is wrong.
    database = tmp_path / "data" / "access.duckdb"
    org = Org("us", replace(Settings(), duckdb_path=database))
    assert "no sync published yet: the inventory waits for the first one" in (waits_for_first_sync(org) or "")
    database.parent.mkdir()
    database.write_bytes(b"not a database" * 300)
    assert waits_for_first_sync(org) is None


def test_each_audit_window_is_recorded_with_its_counts_and_a_run_counts_only_the_events_new_to_it():
    logged = {"e1": NOW - timedelta(hours=36), "e2": NOW - timedelta(minutes=30)}

    class AuditLog:  # the route: the events logged in a window (both ends inclusive), two pages a call
        def __init__(self) -> None:
            self.asked: list[tuple[datetime, datetime]] = []

        def list_audit_events(self, start, end):
            self.asked.append((start, end))
            events = tuple(AuditEvent.from_api({"time": int(at.timestamp() * 1000), "metadata": {"uid": uid},
                                                "api": {"operation": "login"}})
                           for uid, at in logged.items() if start <= at <= end)
            return AuditWindow(start, end, events, 2)

    conn = duckdb.connect()
    ensure_schema(conn)
    plan = SectionPlan(read=("audit_events",))
    log = AuditLog()

    def run(sync_id: str, now: datetime, unused_days: int):
        log.asked.clear()
        return read_audit_log(log, conn, plan, sync_id=sync_id, now=now,  # type: ignore[arg-type]
                              unused_days=unused_days, fetched_at=now)

    def windows(sync_id: str) -> list[tuple]:
        return conn.execute("SELECT window_start, window_end, events_read, events_new, pages FROM raw.audit_windows "
                            "WHERE sync_id = ? ORDER BY window_start", [sync_id]).fetchall()

    # The first load: two days back, a day at a time.
    read, load = run("s1", NOW, 2)
    day = timedelta(days=1)
    assert log.asked == [(NOW - 2 * day, NOW - day), (NOW - day, NOW)]
    assert load is not None and (load.start, load.end, load.windows, load.pages, load.events_read, load.events_new) == (
        NOW - 2 * day, NOW, 2, 4, 2, 2)
    assert read == SectionRead.read("audit_events", 2)
    assert windows("s1") == [(NOW - 2 * day, NOW - day, 1, 1, 2), (NOW - day, NOW, 1, 1, 2)]
    # An hour later: from an hour before where it stopped; e2 is read again, and is not new.
    later = NOW + timedelta(hours=1)
    read, load = run("s2", later, 2)
    assert log.asked == [(NOW - AUDIT_OVERLAP, later)]
    assert load is not None and (load.start, load.events_read, load.events_new) == (NOW - AUDIT_OVERLAP, 1, 0)
    assert read == SectionRead.read("audit_events", 0)
    assert windows("s2") == [(NOW - AUDIT_OVERLAP, later, 1, 0, 2)]
    # The setting raised to three days: the day before the loaded log is read first, up to where it starts.
    read, load = run("s3", later, 3)
    assert log.asked == [(later - 3 * day, NOW - 2 * day), (later - AUDIT_OVERLAP, later)]
    assert conn.execute("SELECT count(*) FROM raw.audit_events").fetchone() == (2,)


def test_the_inventory_asks_nothing_of_a_section_its_plan_skips_and_a_refused_section_is_skipped_too():
    def not_asked(*_args, **_kwargs):
        raise AssertionError("a section the plan skips was read")

    def refused():
        raise SectionUnavailableError("404", section="personal_access_tokens", reason="route missing: older install")

    client = SimpleNamespace(
        list_access_policies=not_asked, list_sso_settings=not_asked, list_personal_access_tokens=refused,
        list_service_keys=list, list_scim_tokens=list, list_service_accounts=list,
        list_service_keys_of_workspaces=lambda ids, skip_gone: {})
    plan = SectionPlan(read=("service_keys", "personal_access_tokens", "workspace_service_keys", "scim_tokens",
                             "service_accounts"),
                       skipped={"access_policies": "plan: no ABAC", "resource_tags": "plan: no ABAC",
                                "sso_settings": "plan: no SAML SSO"})
    inventory = get_inventory(client, plan, [])  # type: ignore[arg-type]
    assert inventory.reads == [
        SectionRead.skipped("access_policies", "plan: no ABAC"), SectionRead.skipped("resource_tags", "plan: no ABAC"),
        SectionRead.read("service_keys", 0),
        SectionRead.skipped("personal_access_tokens", "route missing: older install"),
        SectionRead.read("workspace_service_keys", 0), SectionRead.read("scim_tokens", 0),
        SectionRead.read("service_accounts", 0), SectionRead.skipped("sso_settings", "plan: no SAML SSO")]


def test_a_key_two_routes_list_is_one_credential_as_the_first_route_listed_it():
    # A workspace's service key may be listed by the org's key listing and by the workspace's:
    # one credential row (its id is the key), the kind and fields of the listing read first.
    org_wide = Credential.from_api({"id": "0b6f1c2e-0000-4000-8000-0000000000c1", "short_key": "lsv2_sk_...a1b2",
                                    "description": "ci"}, "service_key")
    in_workspace = replace(org_wide, kind="workspace_service_key", description="ci (workspace)", workspace_id="w-1")
    client = SimpleNamespace(
        list_service_keys=lambda: [org_wide], list_personal_access_tokens=list, list_scim_tokens=list,
        list_service_keys_of_workspaces=lambda ids, skip_gone: {"w-1": [in_workspace]})
    plan = SectionPlan(read=CREDENTIAL_SECTIONS,
                       skipped={s: "not this test's" for s in SECTIONS if s not in CREDENTIAL_SECTIONS})
    inventory = get_inventory(client, plan, ["w-1"])  # type: ignore[arg-type]
    assert inventory.of("credentials") == [org_wide]
    # Each listing still says what it listed.
    assert [r for r in inventory.reads if r.section in ("service_keys", "workspace_service_keys")] == [
        SectionRead.read("service_keys", 1), SectionRead.read("workspace_service_keys", 1)]


def test_a_load_resumed_after_the_retention_ran_out_never_claims_the_days_langsmith_deleted_meanwhile():
    # The inventory stopped (a paused schedule) for longer than LangSmith keeps its audit log:
    # what was logged between where it stopped and the retention's edge is gone for good.
    # Windows there would come back empty yet be recorded as read, and user_activity would go
    # on saying the log is known since the first load (a login in the hole: "never logged in").
    asked: list[tuple[datetime, datetime]] = []

    class KeepsTheRetention:
        def list_audit_events(self, start, end):
            asked.append((start, end))
            return AuditWindow(start, end, (), 1)

    conn = duckdb.connect()
    ensure_schema(conn)
    stopped = NOW - AUDIT_RETENTION - timedelta(days=20)
    record_audit_window(conn, sync_id="s0", window_start=stopped - timedelta(days=90), window_end=stopped,
                        events_read=1, events_new=1, pages=1)
    append_new_events(conn, [{"sync_id": "s0", "fetched_at": stopped, "event_id": "e1", "at": stopped,
                              "operation": "login", "succeeded": True, "target_ids": [], "detail": "{}"}])
    read_audit_log(KeepsTheRetention(), conn, SectionPlan(read=("audit_events",)),  # type: ignore[arg-type]
                   sync_id="s1", now=NOW, unused_days=90, fetched_at=NOW)
    # Read again as a first load (the unused days back), and known from there only.
    assert asked[0][0] == NOW - timedelta(days=90) and asked[-1][1] == NOW
    assert earliest_audit_window_start(conn) == NOW - timedelta(days=90)
    assert latest_audit_window_end(conn) == NOW
    # The events loaded before stay: what they say is still true.
    assert conn.execute("SELECT event_id FROM raw.audit_events").fetchall() == [("e1",)]


@pytest.mark.parametrize(("stopped_before_the_edge", "starts_again"),
                         [(timedelta(minutes=1), True), (timedelta(0), False), (timedelta(minutes=-1), False)])
def test_only_a_load_that_stopped_before_the_retentions_edge_starts_again(stopped_before_the_edge, starts_again):
    # A minute inside the retention, or right on its edge, nothing after where it stopped was
    # deleted unread: on from an hour before, as always.
    asked: list[datetime] = []

    class KeepsTheRetention:
        def list_audit_events(self, start, end):
            asked.append(start)
            return AuditWindow(start, end, (), 1)

    conn = duckdb.connect()
    ensure_schema(conn)
    stopped = NOW - AUDIT_RETENTION - stopped_before_the_edge
    record_audit_window(conn, sync_id="s0", window_start=stopped - timedelta(days=1), window_end=stopped,
                        events_read=0, events_new=0, pages=1)
    read_audit_log(KeepsTheRetention(), conn, SectionPlan(read=("audit_events",)),  # type: ignore[arg-type]
                   sync_id="s1", now=NOW, unused_days=90, fetched_at=NOW)
    assert asked[0] == (NOW - timedelta(days=90) if starts_again else stopped - AUDIT_OVERLAP)
    assert earliest_audit_window_start(conn) == (NOW - timedelta(days=90) if starts_again else stopped - timedelta(days=1))


def _policy(*conditions: PolicyCondition) -> AccessPolicy:
    group = PolicyConditionGroup("prompts:read", "prompt", tuple(conditions))
    return AccessPolicy("p-1", "Deny prod prompts", None, "deny", ("r-viewer",), (group,), None, None)


ENV_IS_PRODUCTION = PolicyCondition("resource_tag_key", "env", "equals", "production")


@pytest.mark.parametrize(
    ("policies", "skipped_because"),
    [
        ([], "no access policy has a condition"),
        ([_policy()], "no access policy has a condition"),
        (SectionUnavailableError("404", section="access_policies", reason="route missing: older install"),
         "access policies were not read (route missing: older install), and tags decide access only through them"),
    ],
)
def test_resource_tags_are_read_only_where_an_access_policy_has_a_condition(policies, skipped_because):
    """Tags decide access only through the conditions of access policies: without one, the call per
    workspace would tell nothing, and is not made."""
    def list_access_policies():
        if isinstance(policies, Exception):
            raise policies
        return policies

    def not_asked(*_args, **_kwargs):
        raise AssertionError("resource tags were read although no policy can match them")

    client = SimpleNamespace(list_access_policies=list_access_policies, list_resource_tags_of_workspaces=not_asked)
    plan = SectionPlan(read=("access_policies", "resource_tags"),
                       skipped={s: "not this test's" for s in SECTIONS if s not in ("access_policies", "resource_tags")})
    inventory = get_inventory(client, plan, ["w-1"])  # type: ignore[arg-type]
    [tags_read] = [r for r in inventory.reads if r.section == "resource_tags"]
    assert tags_read.status == "skipped" and tags_read.reason.startswith(skipped_because), tags_read
    assert inventory.of("resource_tags") == []


def test_resource_tags_of_a_workspace_deleted_since_it_was_listed_are_left_out_and_named():
    tagging = ResourceTagging("t-1", "w-1", "k-1", "env", "v-1", "production", "prompt", "pr-1", "router")
    # Every tagging of each workspace read is kept, not only the first.
    second = replace(tagging, id="t-2", resource_id="pr-2", resource_name="ranker")
    other = replace(tagging, id="t-3", workspace_id="w-2")
    client = SimpleNamespace(
        list_access_policies=lambda: [_policy(ENV_IS_PRODUCTION)],
        list_resource_tags_of_workspaces=lambda ids, skip_gone: (
            {"w-1": [tagging, second], "w-2": [other]} if skip_gone else None),
    )
    plan = SectionPlan(read=("access_policies", "resource_tags"),
                       skipped={s: "not this test's" for s in SECTIONS if s not in ("access_policies", "resource_tags")})
    inventory = get_inventory(client, plan, ["w-1", "w-gone", "w-2"])  # type: ignore[arg-type]
    assert inventory.of("resource_tags") == [tagging, second, other]
    [tags_read] = [r for r in inventory.reads if r.section == "resource_tags"]
    assert tags_read == SectionRead.read(
        "resource_tags", 3, "1 workspace(s) deleted since they were listed, their tags with them: w-gone")
    [row] = TABLE_TRANSFORMS["resource_tags"]([tagging], "sync-1", NOW)
    assert row == {"sync_id": "sync-1", "fetched_at": NOW, "tagging_id": "t-1", "workspace_id": "w-1",
                   "tag_key_id": "k-1", "tag_key": "env", "tag_value_id": "v-1", "tag_value": "production",
                   "resource_type": "prompt", "resource_id": "pr-1", "resource_name": "router"}
