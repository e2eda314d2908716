"""One thing done for each org at once, a thread each up to a limit: the sensors' and the
inventory schedule's look at every org's analysts' copy (``defs/orgs.py``), ``doctor
--all-orgs``, and the delivery of every org's notifications. One org's slow answer (a copy an
analyst holds, an unreachable LangSmith or webhook) then costs its own wait, not every org's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from langsmith_access.settings import Org

T = TypeVar("T")


def each_org_side_by_side(orgs: Sequence[Org], do: Callable[[Org], T], *, at_once: int) -> dict[str, T]:
    """``do(org)`` for each org, ``at_once`` threads at a time: the results by slug, in the
    orgs' order. ``do`` touches only its own org's files and services (no shared connection)."""
    if len(orgs) <= 1:
        return {org.slug: do(org) for org in orgs}
    with ThreadPoolExecutor(max_workers=min(len(orgs), at_once), thread_name_prefix="each-org") as pool:
        return dict(zip([org.slug for org in orgs], pool.map(do, orgs), strict=True))
