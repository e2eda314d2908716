"""The client against a large sandbox org: 20,000 members in 1,000 workspaces."""

from __future__ import annotations

import math

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.langsmith.sandbox_client_support import ACTIVE, ENRICHED, client_for, no_duplicates

PAGE = 500


def test_twenty_thousand_members_in_few_calls():
    org = generate_org(seed=1, members=20_000, workspaces=1_000)
    with SandboxServer(org) as sb:
        with client_for(sb, read_timeout_seconds=15) as client:
            enriched = client.list_enriched_members()
            enriched_calls = client.stats.calls
            members = client.list_org_members()
            member_calls = client.stats.calls - enriched_calls
            assert client.stats.retries == 0
        active = {m.id: m for m in org.active_members()}
        pending = set(org.pending_invites)
        total = len(active) + len(pending)
        assert len(active) == 20_000 and len(pending) > 0

        # Active and pending rows, every one once, in ceil(total / 500) calls.
        assert enriched_calls == math.ceil(total / PAGE) == enriched.pages
        assert len(sb.requests_matching("GET", ENRICHED)) == enriched_calls
        assert len(enriched) == total == enriched.reported_total and no_duplicates(enriched)
        assert {e.id for e in enriched if not e.is_pending} == set(active)
        assert {e.id for e in enriched if e.is_pending} == pending
        memberships = {
            (e.ls_user_id, w.workspace_id, w.role_id) for e in enriched for w in e.workspace_memberships
        }
        assert memberships == {
            (user, ws, role) for ws, user, _identity, role in org.workspace_membership_rows()
        }

        # All 20,000 active members; 20,000 is a multiple of 500, so the short page that ends
        # the listing is an empty 41st.
        assert len(members) == 20_000 == members.reported_total and no_duplicates(members)
        assert {m.id for m in members} == set(active)
        assert all(m.ls_user_id == active[m.id].ls_user_id for m in members)
        assert member_calls == members.pages == 20_000 // PAGE + 1
        assert len(sb.requests_matching("GET", ACTIVE)) == member_calls
