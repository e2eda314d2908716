"""One thing done for each org at once, a thread each up to a limit: the sensors' and the
inventory schedule's look at every org's analysts' copy (``defs/orgs.py``), ``doctor
--all-orgs``, and the delivery of every org's notifications. One org's slow answer (a copy an
analyst holds, an unreachable LangSmith or webhook) then costs its own wait, not every org's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

from langsmith_access.settings import Org

T = TypeVar("T")


def each_org_side_by_side(
    orgs: Sequence[Org], do: Callable[[Org], T], *, at_once: int, start_by: float | None = None
) -> dict[str, T]:
    """``do(org)`` for each org, ``at_once`` threads at a time: the results by slug, in the
    orgs' order. ``do`` touches only its own org's files and services (no shared connection),
    and says an org's own trouble in what it returns: an exception it raises is a bug, which
    reaches the caller once every other ``do`` has ended, and the other orgs' results are lost with it.
    ``start_by``: a ``time.monotonic()`` reading after which no ``do`` starts; the orgs whose
    turn came later are left out of the results (turns go in the orgs' order)."""

    def in_time(org: Org) -> tuple[bool, T | None]:
        if start_by is not None and time.monotonic() > start_by:
            return False, None
        return True, do(org)

    if len(orgs) <= 1 and start_by is None:
        return {org.slug: do(org) for org in orgs}
    with ThreadPoolExecutor(max_workers=max(1, min(len(orgs), at_once)), thread_name_prefix="each-org") as pool:
        done = zip([org.slug for org in orgs], pool.map(in_time, orgs), strict=True)
        return {slug: cast(T, result) for slug, (started, result) in done if started}
