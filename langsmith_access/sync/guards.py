"""The sync's blocking checks, as pure functions: what was read, in; problems, out.

- Completeness: every page and every workspace was read, and each listing's row count equals
  the ``X-Pagination-Total`` the server reported (where it reported one).
- Shrink guard: an API outage or a key that lost scope must never look like an emptied org.
  Members or workspace grants dropping by more than a share of the previous sync stop the sync
  unless the run is told to accept it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langsmith_access.names import MEMBERS_OP
from langsmith_access.settings import Settings
from langsmith_access.sync.extract import ListingReport

DEFAULT_MAX_SHRINK_SHARE = Settings.max_shrink_share  # LANGSMITH_ACCESS_MAX_SHRINK_SHARE's default


@dataclass(frozen=True)
class GuardResult:
    passed: bool
    description: str
    metadata: dict


def check_completeness(
    listings: list[ListingReport], workspaces_expected: int, workspaces_read: int
) -> GuardResult:
    problems = [
        f"{listing.name}: read {listing.rows} rows, server reported {listing.reported_total}"
        for listing in listings
        if not listing.matches_reported_total
    ]
    if workspaces_read != workspaces_expected:
        problems.append(
            f"read the memberships of {workspaces_read} of {workspaces_expected} shared workspaces"
        )
    metadata = {
        "listings": len(listings),
        "pages": sum(listing.pages for listing in listings),
        "rescans": sum(listing.scans - 1 for listing in listings),
        "workspaces_expected": workspaces_expected,
        "workspaces_read": workspaces_read,
    }
    if problems:
        return GuardResult(
            False,
            "Incomplete read: " + "; ".join(problems[:10]) + ". Nothing of this read is published: the "
            "previous tables are kept. A listing that changed while it was read settles: run the sync "
            "again; if it fails the same way, `langsmith-access doctor` says whether the key reads every "
            "member and workspace.",
            metadata,
        )
    return GuardResult(
        True,
        f"All {len(listings)} listings read completely ({metadata['pages']} pages)",
        metadata,
    )


def _percent(share: float, *, above: float | None = None) -> str:
    """``share`` as a percentage: whole where that is exact enough, else with the decimals that
    show it (the allowed 12.5%; a drop of 20.1% over an allowed 20%, which 0 decimals round to it)."""
    # Up to 6 decimals: a drop of one grant past the allowed share of a large org (250,000
    # grants) shows only at the fourth.
    for digits in range(7):
        shown = round(share * 100, digits)
        if (shown > above * 100) if above is not None else (shown == round(share * 100, 6)):
            break
    return f"{shown:.{digits}f}%"


def check_shrink(
    previous: dict | None,
    users: int,
    workspace_grants: int,
    *,
    max_shrink_share: float = DEFAULT_MAX_SHRINK_SHARE,
    accept_shrink: bool = False,
    workspaces_gone: Sequence[tuple[str, int]] = (),
) -> GuardResult:
    """Compare this sync's counts with the previous successful sync's. ``workspaces_gone``:
    (name, workspace grants) of the shared workspaces the listing no longer shows as shared,
    named in a drop of workspace grants (a deleted workspace is a drop that may be real)."""
    if not 0 <= max_shrink_share <= 1:
        raise ValueError(f"max_shrink_share must be between 0 and 1, got {max_shrink_share}")
    metadata: dict = {
        "users": users,
        "workspace_grants": workspace_grants,
        "max_shrink_share": max_shrink_share,
        "accepted_by_run_config": accept_shrink,
    }
    if previous is None:
        return GuardResult(True, "First sync: nothing to compare with", metadata)
    drops = []
    for name, now in (("users", users), ("workspace_grants", workspace_grants)):
        before = previous.get(name) or 0
        metadata[f"previous_{name}"] = before
        if before > 0 and (before - now) / before > max_shrink_share:
            dropped = _percent((before - now) / before, above=max_shrink_share)
            drops.append(f"{name} fell from {before} to {now} ({dropped})")
    if not drops:
        return GuardResult(True, "No shrink beyond the allowed share", metadata)
    message = (
        "; ".join(drops)
        + f", more than the allowed {_percent(max_shrink_share)} since sync {previous.get('sync_id')}"
    )
    if workspaces_gone and any(drop.startswith("workspace_grants") for drop in drops):
        metadata["workspaces_gone"] = [name for name, _ in workspaces_gone]
        named = ", ".join(f"{name!r} ({grants} grants)" for name, grants in workspaces_gone[:5])
        more = f" and {len(workspaces_gone) - 5} more" if len(workspaces_gone) > 5 else ""
        message += (
            f" ({len(workspaces_gone)} workspace(s) shared at that sync are no longer listed as "
            f"shared, deleted or made personal: {named}{more})"
        )
    if accept_shrink:
        return GuardResult(True, f"Accepted for this run: {message}", metadata)
    return GuardResult(
        False,
        f"Shrink guard: {message}. If this is real, run the sync again with accept_shrink "
        f"(`langsmith-access sync --accept-shrink`, or in the Launchpad ops.{MEMBERS_OP}.config.accept_shrink: "
        "true); otherwise check the API key's scope.",
        metadata,
    )
