"""How fast the sandbox builds and serves a large org.

    .venv/bin/python benchmarks/sandbox_scale.py [--members 20000] [--workspaces 1000]

Prints the generation time and the time of a full scan of the enriched members route in
500-row pages with plain ``requests``.
"""

from __future__ import annotations

import argparse
import time

import requests
from bench_support import DefaultsShown, size

from langsmith_access.sandbox import SandboxServer, generate_org


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    args = parser.parse_args()

    started = time.perf_counter()
    org = generate_org(members=args.members, workspaces=args.workspaces)
    generated = time.perf_counter() - started
    print(
        f"generate_org: {generated:.2f} s for {len(org.members)} members, {len(org.workspaces)} "
        f"workspaces ({sum(w.is_shared for w in org.workspaces.values())} shared, the rest personal "
        f"or deleted), {org.membership_count()} memberships"
    )

    with SandboxServer(org) as sandbox, requests.Session() as session:
        session.headers.update(
            {"X-API-Key": sandbox.api_key, "X-Organization-Id": sandbox.organization_id}
        )
        started = time.perf_counter()
        rows, pages, offset = 0, 0, 0
        while True:
            response = session.get(
                f"{sandbox.url}/v1/platform/orgs/current/members",
                params={"limit": 500, "offset": offset},
                timeout=60,
            )
            response.raise_for_status()  # an error body is no page: timing it would be no figure
            page = response.json()
            rows, pages, offset = rows + len(page), pages + 1, offset + 500
            if len(page) < 500:
                break
        scanned = time.perf_counter() - started
    print(f"enriched scan: {scanned:.2f} s for {rows} rows (members and pending invites) in {pages} pages")


if __name__ == "__main__":
    main()
