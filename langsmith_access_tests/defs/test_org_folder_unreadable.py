"""One org's folder that cannot even be looked at (the code server's user may not enter it, a
stale NFS handle on a shared volume; here a symlink to a name too long for the file system, the
one such error root gets too) holds no other org's schedule or sensor tick back: each tick says
what is wrong with that org and goes on with the others (DESIGN.md section 11)."""

import dagster as dg
import pytest

from langsmith_access.definitions import defs
from langsmith_access.names import ORG_TAG
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.expiry import unlisted_org_warnings
from langsmith_access.settings import ORGS_FILE_VARIABLE, load_orgs
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import tick_sensor

ORGS = {"good": "00000000-0000-4000-8000-0000000000a1", "bad": "00000000-0000-4000-8000-0000000000b2"}


@pytest.fixture
def one_org_unreadable(tmp_path, monkeypatch):
    """Two orgs: ``good`` with a pending request, ``bad`` whose folder cannot be stat'ed."""
    data = tmp_path / "data"
    data.mkdir()
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: {org_id}\n  endpoint: http://127.0.0.1:9\n"
        f"  api_key_env: LANGSMITH_API_KEY_{slug.upper()}\n" for slug, org_id in ORGS.items()))
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(data / "langsmith_access.duckdb"))
    for slug in ORGS:
        monkeypatch.setenv(f"LANGSMITH_API_KEY_{slug.upper()}", "lsv2_sk_" + "0" * 32 + "_ticksonly")
    good = AccessDatabase(data / "good" / "langsmith_access.duckdb")
    with good.writer_lease("test"):
        good.ensure_working()
        with good.connect() as conn:
            conn.execute("INSERT INTO main.provisioning_requests (request_id, action, status, requested_at, "
                         "updated_at, run_id) VALUES (?, 'grant', 'pending', now(), now(), 'some-run')",
                         [queue.new_id()])
        good.publish()
    (data / "bad").symlink_to(tmp_path / ("x" * 300))  # stat: ENAMETOOLONG, root or not
    with pytest.raises(OSError):
        (data / "bad" / "langsmith_access.duckdb").exists()
    return data


def test_an_org_folder_that_cannot_be_looked_at_holds_no_other_org_back(one_org_unreadable, monkeypatch):
    definitions = defs()
    with dg.instance_for_test() as instance:
        provisioning = tick_sensor("provisioning_queue_sensor", instance, definitions=definitions)[0]
        assert [(r.partition_key, r.tags[ORG_TAG]) for r in provisioning.run_requests] == [("good", "good")]
        expiry = tick_sensor("access_expiry_sensor", instance, definitions=definitions)[0]
        assert not expiry.run_requests
        assert "bad: Database unreadable, trying again next tick: " in expiry.skip_message, expiry.skip_message
        assert "File name too long" in expiry.skip_message
        assert "good: No access due to end" in expiry.skip_message

        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", "http://127.0.0.1:9/hook")
        outbox_definitions = defs()  # the webhook is read when the definitions load
        outbox = tick_sensor("notification_outbox_sensor", instance, definitions=outbox_definitions)[0]
        assert "good: No notification due" in outbox.skip_message, outbox.skip_message
        assert "bad: notifications not delivered this time: OSError: " in outbox.skip_message

    # The inventory schedule: the good org waits for its first sync; the bad one's run is
    # launched to say what is wrong (as for a database it cannot use), the tick does not fail.
    with dg.build_schedule_context(repository_def=definitions.get_repository_def()) as context:
        tick = definitions.resolve_schedule_def("langsmith_access_inventory_schedule").evaluate_tick(context)
    assert [r.partition_key for r in tick.run_requests] == ["bad"]


def test_the_look_for_unlisted_org_folders_passes_over_one_it_cannot_look_at(one_org_unreadable, tmp_path):
    # The doctor job (check_langsmith_connection) of every org, and `sync --all-orgs` after
    # syncing each, look beside the orgs' folders for one the orgs file no longer names: a listed
    # org's folder it cannot look at is not one, an unlisted one is passed over, and neither
    # fails the other orgs' runs.
    (one_org_unreadable / "gone").symlink_to(tmp_path / ("y" * 300))
    assert unlisted_org_warnings(load_orgs(refuse_unusable_keys=False)) == []


def test_the_look_for_unlisted_org_folders_passes_over_an_orgs_root_it_cannot_look_at(tmp_path, monkeypatch):
    # The folder of every org's folder cannot be looked at (a stale NFS handle): the runs that
    # need it say so themselves; the look beside them says nothing, rather than failing every
    # org's doctor job and `sync --all-orgs` after its syncs.
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: {org_id}\n  endpoint: http://127.0.0.1:9\n"
        f"  api_key_env: LANGSMITH_API_KEY_{slug.upper()}\n" for slug, org_id in ORGS.items()))
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    orgs = load_orgs(refuse_unusable_keys=False)
    (tmp_path / "data").symlink_to(tmp_path / ("x" * 300))  # since: stat gives ENAMETOOLONG, root or not
    with pytest.raises(OSError):
        (tmp_path / "data").is_dir()
    assert unlisted_org_warnings(orgs) == []
