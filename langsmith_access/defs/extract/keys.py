"""The extract assets' keys, the sync's and the inventory's, and which job a run was by them.

Below the assets that build them (which import the resources): the resources record a failed
run under its job too, and a run of Dagster's implicit asset job is named by what it read.
"""

from collections.abc import Collection

import dagster as dg

from langsmith_access.names import INVENTORY_JOB, SYNC_JOB

RAW_ROLES = dg.AssetKey(["raw", "roles"])
RAW_WORKSPACES = dg.AssetKey(["raw", "workspaces"])
RAW_ORG_MEMBERS = dg.AssetKey(["raw", "org_members"])
RAW_PENDING_INVITES = dg.AssetKey(["raw", "pending_invites"])
RAW_WORKSPACE_MEMBERSHIPS = dg.AssetKey(["raw", "workspace_memberships"])
RAW_ORG_SETTINGS = dg.AssetKey(["raw", "org_settings"])
# What each job reads from LangSmith.
SYNC_EXTRACTS = frozenset({RAW_ROLES, RAW_WORKSPACES, RAW_ORG_MEMBERS, RAW_PENDING_INVITES,
                           RAW_WORKSPACE_MEMBERSHIPS, RAW_ORG_SETTINGS})
INVENTORY_TABLES = ("access_policies", "resource_tags", "credentials", "service_accounts", "sso_settings",
                    "audit_events")
INVENTORY_KEYS = {table: dg.AssetKey(["raw", table]) for table in INVENTORY_TABLES}
INVENTORY_EXTRACTS = frozenset(INVENTORY_KEYS.values())


def job_of_run(job_name: str, rebuilt: Collection[dg.AssetKey] | None) -> str:
    """The job a run's ``sync_runs`` row (and its ``sync.failed``) names: the sync or the
    inventory (DESIGN.md section 9), which the shrink guard and the drift report tell apart to
    find the previous sync. A run of Dagster's implicit asset job (the asset catalog's
    "Materialize", a backfill; ``rebuilt``: its assets) is the inventory when it read the
    inventory and none of the sync's extracts, else the sync: it rebuilt the core tables."""
    if job_name in (SYNC_JOB, INVENTORY_JOB):
        return job_name
    read = set(rebuilt or ())
    return INVENTORY_JOB if read & INVENTORY_EXTRACTS and not read & SYNC_EXTRACTS else SYNC_JOB
