"""A review's import queues its rows as one batch (``queue.SubmitBatch``): each row gets exactly
what it got when every row was queued on its own (``submit_on`` without a batch), with fewer
statements a row, and none that grows with the queue."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from langsmith_access.api import provision, request_grant, request_revoke
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.review import queue_revokes, queueing, read_csv_sheet
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.governance.support import POLICY, WORKSPACE
from langsmith_access_tests.helpers import by_queue_place, copy_of
from langsmith_access_tests.review.test_review_round_trip import (
    _CountingConnection,
    _CountingDatabase,
    active_rows,
    read_sheet,
    run_cli,
    write_sheet,
)


def imported(database: AccessDatabase, sheet: Path) -> tuple:
    """The dry run's and the import's outcomes, and the requests and events recorded, request ids
    written as their place in the queue (R1, R2...)."""
    dry = queue_revokes(database, read_csv_sheet(sheet), reviewer="ada@example.com", dry_run=True)
    real = queue_revokes(database, read_csv_sheet(sheet), reviewer="ada@example.com")
    with database.connect() as conn:
        order = [r for (r,) in conn.execute(
            "SELECT request_id FROM main.provisioning_requests ORDER BY request_seq").fetchall()]
        requests = conn.execute(
            "SELECT * EXCLUDE (request_id, requested_at, updated_at) FROM main.provisioning_requests "
            "ORDER BY request_seq").fetchall()
        events = conn.execute(
            "SELECT e.request_id, e.kind, e.detail FROM main.provisioning_events AS e "
            "JOIN main.provisioning_requests AS r USING (request_id) ORDER BY r.request_seq, e.kind").fetchall()
    named = by_queue_place(order)

    outcomes = [[{key: named(value) for key, value in outcome.to_json().items()} for outcome in result.outcomes]
                for result in (dry, real)]
    return (outcomes, [tuple(named(v) for v in request) for request in requests],
            [tuple(named(v) for v in event) for event in events])


def test_a_batched_import_gives_every_row_what_queueing_it_alone_gives(env, tmp_path, capsys, monkeypatch):
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    workspace = next(w for w in org.shared_workspaces() if w.display_name == WORKSPACE)
    here = [row for row in active_rows(rows, workspace.id) if row["role_name"] != "Admin"]
    first, queued_before, by_name, awaiting = here[:4]
    # Queued before the import: the revoke of one row, and a grant awaiting approval (the policy
    # sends Admin here for approval) on the membership of another, which is another change.
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    assert request_revoke(queued_before["user_id"], workspace.id, queued_before["role_id"]).status == "pending"
    waiting = request_grant(awaiting["user_id"], workspace.id, "Admin", requested_by="someone@example.com")
    assert waiting.status == "awaiting_approval", waiting
    for row in (first, queued_before, by_name, awaiting):
        row["decision"] = "revoke"
    by_name["grant_id"] = ""
    twice = dict(first)  # the same grant on two lines
    first_by_names = dict(first, grant_id="", reason="by name")  # and named by user, workspace and role
    unknown_grant = dict(here[4], decision="revoke", grant_id=here[4]["grant_id"][:-1] + "0")
    unknown_user = dict(here[5], decision="revoke", grant_id="", user_id="", email="nobody@nowhere.example")
    write_sheet(sheet, [*rows, twice, first_by_names, unknown_grant, unknown_user])

    batched = imported(copy_of(database, tmp_path / "batched"), sheet)
    monkeypatch.setattr(queue, "SubmitBatch", lambda conn, **_: None)  # every row on its own, as before batches
    one_by_one = imported(copy_of(database, tmp_path / "one-by-one"), sheet)
    assert batched == one_by_one
    [dry, real] = batched[0]
    assert [o["status"] for o in real] == ["queued", "duplicate", "queued", "queued", "duplicate", "duplicate",
                                           "rejected", "rejected"], real
    assert [o["status"] for o in dry] == ["would_queue", "duplicate", "would_queue", "would_queue", "duplicate",
                                          "duplicate", "rejected", "rejected"], dry
    assert real[1]["duplicate_of"] == "R1" and real[4]["duplicate_of"] == real[5]["duplicate_of"] == real[0]["request_id"]
    assert "unknown grant id" in real[6]["message"] and "unknown user" in real[7]["message"]


def test_a_queued_rows_statements_are_fewer_than_queueing_it_alone_and_read_no_catalog(env, tmp_path, capsys):
    # A statement costs ~4-6 ms of DuckDB's planning whatever it reads: per row, the queue's
    # catalog checks (are the synced tables and the queue there?) and its look for an open
    # request of the membership (over a queue that grows by a row each time) were most of a
    # queued row's time. The batch reads them once per import.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    exported = read_sheet(sheet)
    active = active_rows(exported)
    counting = _CountingDatabase(database.path)

    def import_statements(marked: list[dict]) -> list[str]:
        rows = [dict(row, decision="revoke") if row in marked else row for row in exported]
        write_sheet(sheet, rows)
        counting.statements.clear()
        result = queue_revokes(counting, read_csv_sheet(sheet), reviewer="ada@example.com")
        assert len(result.with_status("queued")) == len(marked)
        return list(counting.statements)

    few, many = import_statements(active[:2]), import_statements(active[2:12])
    for per_import in ("duckdb_tables()", "FROM main.provisioning_requests WHERE status IN"):
        assert sum(per_import in s for s in many) == sum(per_import in s for s in few), per_import
    alone = active[12]
    with counting.writer_lease("test"), counting.connect() as conn:
        counting.statements.clear()
        queue.submit_on(conn, queue.ChangeRequest(
            "revoke", alone["user_id"], alone["workspace_id"], alone["role_id"], "review", "ada@example.com"))
    # At most the member, workspace and role looked up, the request and its event inserted.
    assert (len(many) - len(few)) / 10 <= 5 < len(counting.statements)


def test_a_row_named_by_user_workspace_and_role_resolves_once_and_reads_no_catalog(env, tmp_path, capsys):
    # Such a row is resolved for its "already revoked" check, its cells' agreement, the role it
    # holds and by the queue: once, with the batch. The members, the roles they hold there and
    # their applied revokes are read for the sheet; per row are left the workspace and role looked
    # up (the first time each is seen), and the request and its event inserted.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    exported = read_sheet(sheet)
    active = active_rows(exported)
    counting = _CountingDatabase(database.path)

    def import_statements(marked: list[dict]) -> list[str]:
        rows = [dict(row, decision="revoke", grant_id="") if row in marked else row for row in exported]
        write_sheet(sheet, rows)
        counting.statements.clear()
        result = queue_revokes(counting, read_csv_sheet(sheet), reviewer="ada@example.com")
        assert len(result.with_status("queued")) == len(marked), result.to_json()
        return list(counting.statements)

    few, many = import_statements(active[:2]), import_statements(active[2:12])
    for per_sheet in ("duckdb_tables()", "SELECT name FROM main.roles WHERE role_id = ?", "FROM main.grants",
                      "FROM main.provisioning_requests", "FROM main.users"):
        assert sum(per_sheet in s for s in many) == sum(per_sheet in s for s in few), per_sheet
    assert (len(many) - len(few)) / 10 <= 2  # the request and its event inserted


def test_a_row_named_by_user_workspace_and_role_may_give_the_roles_name_beside_its_id(env, tmp_path, capsys):
    # As beside a grant_id: LangSmith's name of the role (WORKSPACE_USER) describes it as well as
    # its display name (Editor) does; the role resolved is the role_id's.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    row = next(r for r in active_rows(rows) if org.role(r["role_id"]).name != "CUSTOM")
    row.update(grant_id="", decision="revoke", role_name=org.role(row["role_id"]).name)
    assert row["role_name"] != org.role(row["role_id"]).display_name
    write_sheet(sheet, rows)
    for dry_run in (True, False):
        [outcome] = queue_revokes(database, read_csv_sheet(sheet), reviewer="ada@example.com",
                                  dry_run=dry_run).outcomes
        assert outcome.status == ("would_queue" if dry_run else "queued"), outcome.message


# Keys as LangSmith shows them (a prefix, 32 hex digits, "_" and 10 more), pasted into cells.
_TOKEN = "lsv2_pt_" + "0123456789abcdef" * 2 + "_0123456789"
_SERVICE_KEY = "lsv2_sk_" + "fedcba9876543210" * 2 + "_9876543210"


def test_a_dry_run_says_of_each_refused_row_what_the_import_records_and_never_echoes_a_key(
        env, tmp_path, capsys):
    # The dry run answers what the import would: the same rejection (keys typed into a cell
    # masked, as the import records them) and the same word on a change already queued.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    here = [dict(row, decision="revoke") for row in active_rows(rows)[:8]]
    queued_before, key_as_grant_id, key_as_email, key_as_role_name, control, unknown_role, fine, reason_key = here
    assert request_revoke(queued_before["user_id"], queued_before["workspace_id"],
                          queued_before["role_id"]).status == "pending"
    key_as_grant_id["grant_id"] = _TOKEN
    key_as_email.update(grant_id="", user_id="", email=_SERVICE_KEY)
    key_as_role_name.update(grant_id="", role_name=_TOKEN)
    control.update(grant_id="", user_id="", email="ad\x07a@example.com")
    unknown_role.update(grant_id="", role_id="", role_name="Superhero")
    reason_key.update(reason=f"see {_SERVICE_KEY}")
    write_sheet(sheet, [*rows, *here])

    [dry, real], _, _ = imported(copy_of(database, tmp_path / "copy"), sheet)
    assert [o["status"] for o in real] == ["duplicate", "rejected", "rejected", "rejected", "rejected", "rejected",
                                           "queued", "queued"], real
    assert real[0]["message"].startswith("the same change is already queued as R1 (pending)"), real[0]
    differing = [(said["where"], said["message"], recorded["message"]) for said, recorded in zip(dry, real, strict=True)
                 if recorded["status"] != "queued"
                 and (said["status"], said["message"]) != (recorded["status"], recorded["message"])]
    assert not differing, differing
    for outcome in (*dry, *real):
        assert not any(secret in outcome["message"] for secret in (_TOKEN[8:], _SERVICE_KEY[8:])), outcome
    assert sum("lsv2_***" in o["message"] for o in dry) == 3, dry


def test_a_key_typed_into_a_sheets_cell_is_never_shown_by_the_import_or_its_dry_run(env, tmp_path, capsys):
    # The outcome of a row names it by its cells (grant_id, user, workspace, role, its label):
    # a key pasted into one is shown as the queue records it, lsv2_***.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    by_grant_id, by_names = (dict(row, decision="revoke") for row in active_rows(rows)[:2])
    by_grant_id["grant_id"] = _TOKEN
    by_names.update(grant_id="", user_id="", email=_SERVICE_KEY)
    write_sheet(sheet, [*rows, by_grant_id, by_names])
    for options in (["--dry-run"], ["--dry-run", "--json"], ["--json"], []):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *options)
        assert code == 2 and stdout.count("lsv2_***") >= 2, (options, stdout, err)
        shown = stdout + err
        assert not any(secret in shown for secret in (_TOKEN[8:], _SERVICE_KEY[8:])), (options, shown)


def test_the_orgs_webhook_url_typed_into_a_cell_or_reason_is_never_shown_nor_recorded(
        env, tmp_path, capsys, monkeypatch):
    # No key shape finds a Slack URL: the org's notifier knows it, and the import cuts it from
    # the sheet's cells and its options as queueing a request cuts it from a request's fields.
    sandbox, org, database = env
    webhook = "https://hooks.slack.com/services/T0AAAA/B0BBBB/" + "s3cr3tW3bh00k" * 2
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", webhook)
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_FORMAT", "slack")  # as a Slack incoming webhook needs
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    by_grant_id, by_names, with_reason = (dict(row, decision="revoke") for row in active_rows(rows)[:3])
    by_grant_id["grant_id"] = webhook
    by_names.update(grant_id="", user_id="", email=webhook)
    with_reason["reason"] = f"see {webhook}"
    write_sheet(sheet, [*rows, by_grant_id, by_names, with_reason])
    for options in (["--dry-run"], ["--dry-run", "--json"], ["--json", "--reason", f"per {webhook}"]):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *options)
        assert code == 2 and stdout.count("<secret>") >= 2, (options, stdout, err)
        assert "s3cr3tW3bh00k" not in stdout + err, (options, stdout + err)
    with duckdb.connect(str(database.path), read_only=True) as conn:
        recorded = str([conn.execute(f"SELECT * FROM main.{table}").fetchall()
                        for table in ("provisioning_requests", "provisioning_events")])
    assert "s3cr3tW3bh00k" not in recorded
    assert "see <secret>" in recorded and "per <secret>" in recorded  # a row's own reason, and --reason
    assert recorded.count("<secret>") >= 3, recorded


def test_the_batchs_users_looked_up_together_are_what_each_looked_up_alone_gives(env, tmp_path):
    # SubmitBatch(users=...): two statements for a sheet's members instead of one a row; each
    # typed user resolves (or is refused) exactly as _resolve_user alone resolves it.
    sandbox, org, database = env
    copy = copy_of(database, tmp_path / "copy")
    with duckdb.connect(str(copy.path)) as conn:
        members = conn.execute("SELECT user_id, org_identity_id, email FROM main.users ORDER BY user_id").fetchall()
        (a, _, a_email), (b, *_), (c, *_), (d, *_) = members[:4]
        conn.execute("UPDATE main.users SET email = ? WHERE user_id = ?", [a_email.upper(), b])  # ambiguous email
        conn.execute("UPDATE main.users SET org_identity_id = ? WHERE user_id = ?", [d, c])  # an id two answer to
        invited = conn.execute("SELECT email FROM main.pending_invites LIMIT 1").fetchall()
        typed = [value for user_id, identity, email in members[:8]
                 for value in (user_id, user_id.upper(), identity, f" {email.upper()} ")]
        typed += [a_email, d, "nobody@nowhere.example", str(uuid.uuid4()), "not-an-email", _SERVICE_KEY,
                  "ad\x07a@example.com", "", *(email for (email,) in invited)]

        def answers(batch: queue.SubmitBatch | None) -> list:
            said = []
            for value in typed:
                try:
                    user = queue.check_text(value, "user")
                    said.append(batch.resolved(conn, queue._resolve_user, user) if batch is not None
                                else queue._resolve_user(conn, user))
                except queue.RequestRejected as rejection:
                    said.append(str(rejection))
            return said

        counting = _CountingConnection(conn, [])
        together = queue.SubmitBatch(counting, users=typed)
        assert sum("main.users" in statement for statement in counting._statements) == 2, counting._statements
        # What one member answers to (their id, org identity id, email) is not looked up again.
        counting._statements.clear()
        for user_id, identity, email in members[4:8]:
            for value in (user_id, identity, queue.check_text(f" {email.upper()} ", "user")):
                together.resolved(counting, queue._resolve_user, value)
        assert counting._statements == []
        assert answers(together) == answers(None)


def test_rows_named_by_user_workspace_and_role_read_their_roles_and_revokes_for_the_sheet_as_alone(
        env, tmp_path, capsys, monkeypatch):
    # The roles each such row's member holds in its workspace and its applied revokes are read
    # for the whole sheet (_Memberships): each row gets what reading its own alone gives.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    done_a, done_b, queued, not_held, *_ = (dict(row, decision="revoke", grant_id="") for row in active_rows(rows))
    write_sheet(sheet, [*rows, done_a, done_b])
    assert run_cli(capsys, "review", "queue-revokes", "--file", sheet)[0] == 0
    assert provision().success
    not_held["role_name"] = not_held["role_id"] = next(
        r.display_name for r in org.roles_by_scope("workspace") if r.display_name != not_held["role_name"])
    write_sheet(sheet, [*rows, done_a, done_b, queued, not_held, done_a])

    batched = imported(copy_of(database, tmp_path / "batched"), sheet)
    monkeypatch.setattr(queueing._GrantFacts, "read_memberships", lambda *_: None)  # each row reads its own
    one_by_one = imported(copy_of(database, tmp_path / "one-by-one"), sheet)
    assert batched == one_by_one
    [dry, real] = batched[0]
    assert [o["status"] for o in real] == ["duplicate", "duplicate", "queued", "rejected", "duplicate"], real
    assert "already revoked" in real[0]["message"] and "holding" in real[3]["message"], real
    assert [o["status"] for o in dry] == ["duplicate", "duplicate", "would_queue", "rejected", "duplicate"], dry
