"""Provisioning benchmark: 500 queued requests applied by `langsmith-access provision`.

    .venv/bin/python benchmarks/provision_bench.py
    .venv/bin/python benchmarks/provision_bench.py --requests 500 --workspaces-hit 0   # spread

Starts the sandbox in this process (20 ms latency on every request, 2,000 requests a minute per
key) with the same 20,000-member org as the sync benchmark, syncs it with the real CLI, queues a
mix of requests (grants that add a member, grants of another role that change one, revokes
that remove one: each needs exactly one write; and 5% that need none: a grant of the role the
member already holds, a revoke of a role they do not hold; never two requests for the same
member and workspace), then runs `langsmith-access provision` as a child process and reports its wall
time, CPU time, API calls, writes and peak memory. It then checks, from the sandbox itself,
that every request is final, that exactly one write went out per needed change (none for the
rest), and that the org now holds exactly the requested roles.

Beside it, a naive provisioner on an identical org (one request at a time, plain `requests`:
look the member up, read their workspace membership, write, read it back) as a ratio.

By default the requests spread over random workspaces (about 400 of the 1,000); with
``--workspaces-hit N`` they are confined to N workspaces.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from bench_support import (
    DefaultsShown,
    cli_env,
    duration,
    keep_workdir,
    machine_line,
    markdown_table,
    per_minute,
    rounds,
    run_cli,
    size,
    start_sandbox,
    temporary_workdir,
)

from langsmith_access.provisioning import queue
from langsmith_access.store.database import AccessDatabase

TARGET_SECONDS = 60.0
# The org and the queue the target is set for (issue 13): 500 requests, the 20,000-member org.
TARGET_REQUESTS, TARGET_MEMBERS, TARGET_WORKSPACES = 500, 20_000, 1_000
KINDS = ("add", "change_role", "remove", "nothing_to_do")
ACTIVE = "/api/v1/orgs/current/members/active"
WORKSPACE_MEMBERS = "/api/v1/workspaces/current/members"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsShown)
    parser.add_argument("--members", type=size, default=20_000)
    parser.add_argument("--workspaces", type=size, default=1_000)
    parser.add_argument("--pending-invites", type=size, default=500)
    parser.add_argument("--requests", type=rounds, default=500)
    parser.add_argument("--workspaces-hit", type=size, default=0,
                        help="confine the requests to this many workspaces (0: spread)")
    parser.add_argument("--latency-ms", type=duration, default=20.0)
    parser.add_argument("--rate-limit-per-minute", type=per_minute, default=2_000)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the database (path printed)")
    args = parser.parse_args()
    if args.workspaces_hit > args.workspaces:
        parser.error(f"--workspaces-hit {args.workspaces_hit}: the org has {args.workspaces} workspaces")

    print(f"Machine: {machine_line()}")
    print(f"Sandbox: {args.latency_ms:g} ms latency per request, "
          f"{args.rate_limit_per_minute} requests/min per key\n", flush=True)
    sandbox = start_sandbox(
        members=args.members, workspaces=args.workspaces, pending_invites=args.pending_invites,
        latency_ms=args.latency_ms, rate_limit_per_minute=args.rate_limit_per_minute,
    )
    # Made right before the try that removes it: a SIGTERM while the org was generated (seconds
    # at 20,000 members) left it behind.
    workdir = temporary_workdir("langsmith-access-provision-bench-")
    try:
        database = AccessDatabase(workdir / "access.duckdb")
        env = cli_env(sandbox, database.path)
        synced = run_cli(["sync", "--quiet"], env, sandbox)
        if not synced.ok:
            raise SystemExit(f"sync failed:\n{synced.stderr[-3000:]}")
        changes = plan_requests(database, args.requests, args.workspaces_hit)
        queued = queue_requests(database, changes)
        kinds = {kind: sum(1 for c in changes if c["kind"] == kind) for kind in KINDS}
        distinct = len({c["workspace_id"] for c in changes})
        print(f"Queued {len(queued)} requests over {distinct} workspaces: {kinds}", flush=True)

        run = run_cli(["provision", "--json"], env, sandbox)
        if not run.ok:  # no figures for a failed run: what the CLI said instead
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"provision failed (exit {run.returncode})")
        outcome = json.loads(run.stdout) if run.stdout.strip() else {}
        statuses = {r["request_id"]: r["status"] for r in outcome.get("requests", [])}
        check = check_outcome(sandbox, changes, queued, statuses, run)
        print(f"  provision: {run.wall_seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU, "
              f"{run.api_calls} calls, {run.writes} writes, load {run.load_before:.1f}", flush=True)

        naive = None
        if not args.no_naive:
            naive = naive_provision(args, changes)
            print(f"  naive: {naive['wall_seconds']:.1f} s, {naive['calls']} calls, "
                  f"{naive['writes']} writes", flush=True)
    finally:
        sandbox.stop()
        if args.keep:  # not removed at exit, nor by the next run (its name no longer says whose)
            print(f"  database kept in {keep_workdir(workdir)}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    row = {
        "requests": len(queued),
        "workspaces": distinct,
        "wall_seconds": round(run.wall_seconds, 2),
        "cpu_seconds": round(run.cpu_seconds, 2),
        "api_calls": run.api_calls,
        "writes": run.writes,
        "calls_per_request": round(run.api_calls / len(queued), 2),
        # The floor for any provisioner: one write per needed change, and nothing else. Ours adds
        # the closed loop's reads (live state before, verification after).
        "needed_writes": check["needed"],
        "calls_per_needed_write": round(run.api_calls / max(1, check["needed"]), 2),
        "peak_rss_mb": round(run.peak_tree_rss_mb),
        "load": round(run.load_before, 1),
        "final": check["final"],
        "one_write_each": check["one_write_each"],
        "live_state_matches": check["live_state_matches"],
        "naive_wall_seconds": naive and round(naive["wall_seconds"], 1),
        "naive_calls": naive and naive["calls"],
        "naive_ratio": naive and round(naive["wall_seconds"] / run.wall_seconds, 2),  # "0.0x" at 1 decimal
    }
    print(f"\n### Provisioning: {len(queued)} queued requests\n")
    print(markdown_table(
        ["requests", "workspaces", "wall s", "CPU s", "API calls", "writes", "needed writes",
         "calls / needed write", "calls / request",
         "peak RSS MB", "load", "all final", "one write per needed change", "live state = requested",
         "naive wall s", "naive calls", "naive / ours (time)"],
        [[row["requests"], row["workspaces"], row["wall_seconds"], row["cpu_seconds"],
          row["api_calls"], row["writes"], row["needed_writes"], f"{row['calls_per_needed_write']:.2f}x",
          row["calls_per_request"], row["peak_rss_mb"],
          row["load"], check["final_text"], check["writes_text"], check["state_text"],
          row["naive_wall_seconds"] if naive else "-", row["naive_calls"] if naive else "-",
          f"{row['naive_ratio']}x" if naive else "-"]],
    ))
    ok = row["final"] and row["one_write_each"] and row["live_state_matches"]
    print("\n" + verdict(row, ok, members=args.members, workspaces=args.workspaces))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0 if ok else 1


def verdict(row: dict, ok: bool, *, members: int, workspaces: int) -> str:
    """The target's line: every request final with one write per needed change, at any size;
    within TARGET_SECONDS only for the queue and org it is set for (a smaller one meets it
    whatever the code does)."""
    requests = row["requests"]
    if (requests, members, workspaces) != (TARGET_REQUESTS, TARGET_MEMBERS, TARGET_WORKSPACES):
        return (f"All {requests} final, exactly one write per needed change: {'yes' if ok else 'NO'} "
                f"({row['wall_seconds']:.1f} s; the {TARGET_SECONDS:g} s target, for {TARGET_REQUESTS} requests "
                f"on {TARGET_MEMBERS:,} members and {TARGET_WORKSPACES:,} workspaces, is not judged)")
    met = ok and row["wall_seconds"] <= TARGET_SECONDS
    return (f"Target: all {requests} final within {TARGET_SECONDS:g} s, exactly one write per "
            f"needed change: {'met' if met else 'NOT met'} ({row['wall_seconds']:.1f} s)")


def plan_requests(database: AccessDatabase, count: int, workspaces_hit: int) -> list[dict]:
    """Requests from the synced tables, one per (user, workspace): 40% grants that add a member,
    30% grants of another role (a role change), 25% revokes, each needing exactly one write;
    5% needing none (half grants of the role already held, half revokes of a role not held)."""
    rng = random.Random(7)
    with database.read_published() as conn:
        users = [r[0] for r in conn.execute(
            "SELECT user_id FROM main.users WHERE NOT is_disabled ORDER BY user_id").fetchall()]
        workspaces = [r[0] for r in conn.execute(
            "SELECT workspace_id FROM main.workspaces ORDER BY workspace_id").fetchall()]
        roles = [r[0] for r in conn.execute(
            "SELECT role_id FROM main.roles WHERE access_scope = 'workspace' ORDER BY role_id").fetchall()]
        grants = conn.execute(
            "SELECT g.user_id, g.workspace_id, g.role_id FROM main.grants g JOIN main.users u USING (user_id) "
            "WHERE g.entitlement_type = 'workspace_role' AND NOT u.is_disabled "
            "ORDER BY g.user_id, g.workspace_id").fetchall()
    if workspaces_hit:
        workspaces = rng.sample(workspaces, workspaces_hit)
        grants = [g for g in grants if g[1] in set(workspaces)]
    held = {(u, w): r for u, w, r in grants}
    used: set[tuple[str, str]] = set()
    changes: list[dict] = []
    adds = round(count * 0.4)
    role_changes = round(count * 0.3)
    no_ops = round(count * 0.05)
    revokes = count - adds - role_changes - no_ops
    if adds > len(users) * len(workspaces) - len(held):  # the draw below would never end
        raise SystemExit(f"{count} requests need {adds} (member, workspace) pairs without a grant; the org has "
                         f"{len(users) * len(workspaces) - len(held)}: use a bigger org or fewer --requests")
    while sum(c["kind"] == "add" for c in changes) < adds:
        user, workspace = rng.choice(users), rng.choice(workspaces)
        if (user, workspace) in held or (user, workspace) in used:
            continue
        used.add((user, workspace))
        changes.append({"kind": "add", "action": "grant", "user_id": user, "workspace_id": workspace,
                        "role_id": rng.choice(roles), "want": None})
    for kind, wanted in (("change_role", role_changes), ("remove", revokes), ("nothing_to_do", no_ops)):
        picked = 0
        for user, workspace, role in rng.sample(grants, len(grants)):
            if picked == wanted:
                break
            if (user, workspace) in used:
                continue
            used.add((user, workspace))
            picked += 1
            if kind == "change_role":
                other = rng.choice([r for r in roles if r != role])
                changes.append({"kind": kind, "action": "grant", "user_id": user,
                                "workspace_id": workspace, "role_id": other})
            elif kind == "nothing_to_do" and picked % 2:
                changes.append({"kind": kind, "action": "grant", "user_id": user,
                                "workspace_id": workspace, "role_id": role})
            elif kind == "nothing_to_do":
                other = rng.choice([r for r in roles if r != role])
                changes.append({"kind": kind, "action": "revoke", "user_id": user,
                                "workspace_id": workspace, "role_id": other, "held": role})
            else:
                changes.append({"kind": kind, "action": "revoke", "user_id": user,
                                "workspace_id": workspace, "role_id": role})
    for change in changes:
        if change["kind"] == "nothing_to_do":
            change["want"] = change.get("held", change["role_id"])
        else:
            change["want"] = change["role_id"] if change["action"] == "grant" else None
    rng.shuffle(changes)
    return changes


def queue_requests(database: AccessDatabase, changes: list[dict]) -> list[str]:
    """Queue every change through the normal queue (validated against the synced tables), under
    one writer lease and one publish: queueing is not what is measured."""
    ids = []
    with database.writer_lease("queue benchmark requests"):
        database.ensure_working()
        with database.connect() as conn:
            for change in changes:
                result = queue.submit_on(conn, queue.ChangeRequest(
                    change["action"], change["user_id"], change["workspace_id"], change["role_id"],
                    reason="benchmark", requested_by="provision_bench"))
                if not result.accepted:
                    raise SystemExit(f"request refused: {result.message}")
                change["request_id"] = result.request_id
                ids.append(result.request_id)
        database.publish()
    return ids


def check_outcome(sandbox, changes, queued, statuses, run) -> dict:
    final = run.ok and len(statuses) == len(queued) and all(
        s in queue.FINAL_STATUSES for s in statuses.values())
    applied = sum(1 for s in statuses.values() if s == "applied")
    satisfied = sum(1 for s in statuses.values() if s == "already_satisfied")
    needed = sum(1 for c in changes if c["kind"] != "nothing_to_do")
    expected_status = {c["request_id"]: "already_satisfied" if c["kind"] == "nothing_to_do"
                       else "applied" for c in changes}
    final = final and statuses == expected_status
    org = sandbox.org
    wrong = [c for c in changes if _live_role(org, c["user_id"], c["workspace_id"]) != c["want"]]
    return {
        "needed": needed,
        "final": final,
        "final_text": f"{'yes' if final else 'NO'} ({applied} applied, {satisfied} already satisfied)",
        "one_write_each": run.writes == needed,
        "writes_text": f"{'yes' if run.writes == needed else 'NO'} ({run.writes} for {needed} changes)",
        "live_state_matches": not wrong,
        "state_text": "yes" if not wrong else f"NO ({len(wrong)} differ)",
    }


def _live_role(org, user_id: str, workspace_id: str) -> str | None:
    membership = org.workspaces[workspace_id].memberships.get(user_id)
    return membership.role_id if membership else None


def naive_provision(args, changes: list[dict]) -> dict:
    """One request at a time on an identical org: find the member, read their membership in the
    workspace, write, read it back. Plain ``requests``; waits out 429s as told."""
    sandbox = start_sandbox(
        members=args.members, workspaces=args.workspaces, pending_invites=args.pending_invites,
        latency_ms=args.latency_ms, rate_limit_per_minute=args.rate_limit_per_minute,
    )
    counts = {"calls": 0, "writes": 0}
    session = requests.Session()
    session.headers.update({"X-API-Key": sandbox.api_key, "X-Organization-Id": sandbox.organization_id})

    def call(method, path, tenant=None, **kwargs):
        headers = {"X-Tenant-Id": tenant} if tenant else {}
        while True:
            counts["calls"] += 1
            response = session.request(method, sandbox.url + path, headers=headers, timeout=60, **kwargs)
            if response.status_code == 429:
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            response.raise_for_status()
            return response.json() if response.content else None

    started = time.perf_counter()
    try:
        for change in changes:
            user, workspace = change["user_id"], change["workspace_id"]
            [member] = call("GET", ACTIVE, params={"ls_user_ids": user})
            found = call("GET", WORKSPACE_MEMBERS + "/active", workspace, params={"ls_user_ids": user})
            current = found[0] if found else None
            if change["kind"] == "nothing_to_do":
                continue
            counts["writes"] += 1
            if change["kind"] == "add":
                call("POST", WORKSPACE_MEMBERS, workspace,
                     json={"org_identity_id": member["id"], "role_id": change["role_id"]})
            elif change["kind"] == "change_role":
                call("PATCH", f"{WORKSPACE_MEMBERS}/{current['id']}", workspace,
                     json={"role_id": change["role_id"]})
            else:
                call("DELETE", f"{WORKSPACE_MEMBERS}/{current['id']}", workspace)
            call("GET", WORKSPACE_MEMBERS + "/active", workspace, params={"ls_user_ids": user})
    finally:
        wall = time.perf_counter() - started
        session.close()
        sandbox.stop()
    return {"wall_seconds": wall, **counts}


if __name__ == "__main__":
    sys.exit(main())
