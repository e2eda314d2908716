"""Which org a run serves (``defs/orgs.py``): the one its partition names, however it was
launched. A run from the asset catalog ("Materialize" on an org's partition, a backfill) runs
Dagster's implicit asset job, which carries Dagster's partition tag and none of ours."""

from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from langsmith_access.defs.orgs import (
    RunOfTwoOrgs,
    RunOfUnlistedOrg,
    RunOrganization,
    RunWithoutOrg,
    org_of_run,
    org_tags,
    skip_reasons,
)
from langsmith_access.defs.provisioning.definitions import REFUSED_INPUT_TAG, failed_runs_backoff
from langsmith_access.settings import Org, Orgs, Settings

ORGS = Orgs(tuple(Org(slug, Settings.from_env({})) for slug in ("us", "eu")))


def run(job_name: str, tags: dict[str, str]) -> dg.DagsterRun:
    return dg.DagsterRun(job_name=job_name, run_id=f"run-of-{job_name}", tags=tags)


def test_a_run_from_the_asset_catalog_serves_the_org_of_its_partition():
    assert org_of_run(run("__ASSET_JOB", {"dagster/partition": "eu"}), ORGS).slug == "eu"
    # A named job's run carries both tags, the same slug.
    assert org_of_run(run("langsmith_access_sync", {"dagster/partition": "us", **org_tags("us")}), ORGS).slug == "us"


def test_a_run_without_a_partition_is_refused_where_several_orgs_are_configured():
    with pytest.raises(RunWithoutOrg, match="names no org, and 2 are configured"):
        org_of_run(run("__ASSET_JOB", {}), ORGS)
    # With one org, that org; outside a run, the only one too.
    [us] = [org for org in ORGS if org.slug == "us"]
    assert org_of_run(run("__ASSET_JOB", {}), Orgs((us,))) is us
    assert org_of_run(None, Orgs((us,))) is us


def test_a_run_whose_partition_and_org_tag_disagree_is_refused():
    # A tag edited in the Launchpad: served as the partition's org, the run counted as the tag's
    # (its sensors waited on it as in flight, its failure delayed that org's runs) while the
    # partition's org got a second provisioning run beside it.
    with pytest.raises(RunOfTwoOrgs, match=r"names two orgs: 'us' as its partition and 'eu' in its tag "
                                           r"langsmith_access/org\. Nothing was read or written") as refused:
        org_of_run(run("provision_workspace_roles", {"dagster/partition": "us", **org_tags("eu")}), ORGS)
    assert "partition picker" in refused.value.fix


def test_a_provisioning_run_refused_for_naming_two_orgs_makes_neither_org_wait(instance, database):
    # Failed as the tag's org's run, it made that org's sensors wait 30 s (failed_runs_backoff)
    # though it never ran for it: tagged as a refused input, it counts for neither. Launched as
    # the webserver does, with the tags as typed (``database``: the one org, ``default``).
    job = ReconstructableRepository.for_module("langsmith_access.definitions", "defs").get_reconstructable_job(
        "provision_workspace_roles")
    # Not entered (``with``): that sets the run's resources up again, to read outputs it has none of.
    result = dg.execute_job(job, instance=instance, tags={"dagster/partition": "default", **org_tags("eu")},
                            raise_on_error=False)
    assert not result.success
    assert instance.get_run_by_id(result.run_id).tags.get(REFUSED_INPUT_TAG) == "true"
    assert failed_runs_backoff(instance, "eu") is None and failed_runs_backoff(instance, "default") is None


def test_a_run_of_an_org_the_orgs_file_no_longer_lists_says_so_and_what_to_do():
    # Launched (or re-executed from its run page) for an org removed from the orgs file since:
    # the fix is the org's, not "correct the variable the message names" (none is named).
    with pytest.raises(RunOfUnlistedOrg, match=r"is for org 'apac', which is not one of the orgs configured in .* \(us, eu\)") as refused:
        org_of_run(run("provision_workspace_roles", {"dagster/partition": "apac", **org_tags("apac")}), ORGS)
    assert "variable" not in refused.value.fix
    assert "add it back to the orgs file" in refused.value.fix and "one of the orgs it lists" in refused.value.fix


def test_a_skip_reason_names_each_org_only_where_several_are_waiting():
    # One org (the single-org variables' default among them): its reason as it is, no slug.
    assert skip_reasons([("default", "No sync has succeeded yet.")]) == "No sync has succeeded yet."
    assert skip_reasons([("us", "No sync yet."), ("eu", "No key.")]) == "us: No sync yet; eu: No key."
    assert skip_reasons([("default", "No key.")], named=True) == "default: No key."


def test_a_skip_reason_says_a_reason_several_orgs_share_once():
    # Fifty orgs with nothing due: one reason, not fifty; the one that differs stands out.
    said = [("us", "No notification due."), ("eu", "Delivered 1 notification(s)."), ("apac", "No notification due.")]
    assert skip_reasons(said) == "us, apac: No notification due; eu: Delivered 1 notification(s)."
    many = [(f"org{i}", "No notification due.") for i in range(50)]
    assert skip_reasons(many) == ", ".join(f"org{i}" for i in range(50)) + ": No notification due."


def test_a_resource_set_up_for_a_run_serves_its_partitions_org_each_time_it_is_asked():
    # What ops read (``.org``) is the org the run's setup took, not the only org (several here).
    context = SimpleNamespace(run=run("provision_workspace_roles", {"dagster/partition": "eu", **org_tags("eu")}),
                              log=None, instance=None)
    resource = RunOrganization(orgs=ORGS)
    resource.setup_for_execution(context)
    assert [resource.org.slug for _ in range(2)] == ["eu", "eu"]  # asked twice: the same org both times
