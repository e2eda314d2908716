"""A whole key in a free-text field of the inventory (a key pasted as a key's description, a
server that puts one in an audit event's path or ids, a service account's or access policy's
name or effect, an SSO setting's groups claim, a resource tag's key or value, the name of a
tagged resource or of its type's bucket) is stored cut to its prefix and last characters,
as a whole key sent as ``short_key`` is; an SSO metadata URL is stored without its credentials
and query string (a password for the metadata host, a signed link's token), and so is the
text of an SSO attribute mapping's load error; IdP metadata pasted as XML is kept only as
``has_metadata_xml``: never in the working file, the analysts' copy or the Parquet exports.

The sandbox over HTTP, whose answers are changed on the way out; the sync in this process.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import time

import duckdb
import pytest

from langsmith_access import cli
from langsmith_access.langsmith.access_records import redact_short_key
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.routing import ApiResponse, HtmlPage
from langsmith_access_tests.helpers import point_at, tables_holding

PASTED = f"lsv2_sk_{secrets.token_hex(16)}_{secrets.token_hex(5)}"
# Where the server puts the key: (route, field) -> the field's value becomes "<value> <key>".
TAINTED = {
    ("/api/v1/api-key", "description"),
    ("/api/v1/orgs/current/service-keys", "description"),
    ("/api/v1/orgs/current/personal-access-tokens", "description"),
    ("/api/v1/platform/orgs/current/scim/tokens", "description"),
    ("/api/v1/audit-logs", "path"),
    ("/api/v1/audit-logs", "operation"),
    ("/api/v1/audit-logs", "uid"),
    ("/api/v1/audit-logs", "ip"),
    ("/api/v1/service-accounts", "name"),
    ("/api/v1/platform/orgs/current/access-policies", "name"),
    ("/api/v1/platform/orgs/current/access-policies", "description"),
    ("/api/v1/platform/orgs/current/access-policies", "attribute_value"),  # a resource tag's value
    ("/api/v1/platform/orgs/current/access-policies", "effect"),  # an open set, kept as sent
    ("/api/v1/orgs/current/sso-settings", "sso_groups_claim_field"),
    ("/api/v1/workspaces/current/taggings", "tag_key"),  # tag keys, values, resource names: typed by people
    ("/api/v1/workspaces/current/taggings", "tag_value"),
    ("/api/v1/workspaces/current/taggings", "resource_name"),
}
# A bucket of ``TaggingsResponse.resources`` (a resource type) is a name the server sends: kept as sent when unknown.
TAINTED_BUCKETS = "/api/v1/workspaces/current/taggings"
# An SSO metadata URL with a password for its host and a signed link's token in its query.
URL_PASSWORD = secrets.token_hex(12)
URL_TOKEN = secrets.token_hex(16)
METADATA_URL = f"https://saml:{URL_PASSWORD}@idp.example.com/federation/metadata.xml?sv=2024&sig={URL_TOKEN}"
# IdP metadata pasted as XML: only that it was pasted is kept, never the XML (its certificate).
CERTIFICATE = secrets.token_hex(24)
METADATA_XML = (f'<md:EntityDescriptor entityID="https://idp.example.com"><ds:X509Certificate>{CERTIFICATE}'
                "</ds:X509Certificate></md:EntityDescriptor>")
# Why the attribute mapping did not load, quoting the metadata URL it read (and a pasted key).
LOAD_ERROR = f"attribute mapping not loaded from {METADATA_URL}"


def _taint(value, route: str):
    if isinstance(value, dict) and route == TAINTED_BUCKETS and isinstance(value.get("resources"), dict):
        value = {**value, "resources": {f"{bucket} {PASTED}": items for bucket, items in value["resources"].items()}}
    if isinstance(value, dict):
        return {name: f"{item} {PASTED}" if (route, name) in TAINTED and isinstance(item, str)
                else METADATA_URL if name == "metadata_url"
                else METADATA_XML if name == "metadata_xml"
                else f"{LOAD_ERROR} {PASTED}" if name == "attribute_mapping_load_error"
                else _taint(item, route) for name, item in value.items()}
    if isinstance(value, list):
        return [_taint(item, route) for item in value]
    return value


def test_a_whole_key_in_an_inventory_text_field_is_stored_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    database = tmp_path / "data" / "access.duckdb"
    org = generate_org(seed=7, members=15, workspaces=3, now=int(time.time()))
    with SandboxServer(org) as sandbox:
        served = sandbox.respond
        tainted_routes = set()

        def respond(request):
            answer = served(request)
            if isinstance(answer, ApiResponse) and answer.status == 200 and any(
                    route == request.path for route, _ in TAINTED):
                tainted_routes.add(request.path)
                return ApiResponse(answer.status, _taint(answer.body, request.path), answer.headers)
            return answer

        sandbox.respond = respond
        point_at(monkeypatch, sandbox, database)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["sync", "--all-sections", "--quiet"])
    assert code == 0, err.getvalue()
    assert tainted_routes == {route for route, _ in TAINTED}, tainted_routes

    with duckdb.connect(str(database), read_only=True) as conn:
        descriptions = [d for (d,) in conn.execute("SELECT description FROM main.credentials").fetchall()]
        paths = [p for (p,) in conn.execute("SELECT path FROM main.audit_events").fetchall()]
        accounts = [n for (n,) in conn.execute("SELECT name FROM main.service_accounts").fetchall()]
        policies = conn.execute(
            "SELECT name, description, condition_groups, effect FROM main.access_policies").fetchall()
        sso = conn.execute("SELECT metadata_url, sso_groups_claim_field, has_metadata_xml, attribute_mapping_load_error "
                           "FROM main.sso_settings").fetchall()
        tags = conn.execute(
            "SELECT tag_key, tag_value, resource_name, resource_type FROM main.resource_tags").fetchall()
    # The fields are there, the key cut to what a listing shows of one.
    cut = f"{PASTED[:8]}...{PASTED[-4:]}"
    for texts in (descriptions, paths, accounts, *zip(*policies, strict=True), [claim for _, claim, *_ in sso],
                  *zip(*tags, strict=True)):
        assert texts and all(cut in (text or "") for text in texts), texts
    # The URL keeps where it points, not what opens it, in its column and in the load error.
    masked = "https://<credentials>@idp.example.com/federation/metadata.xml?<query>"
    assert sso and {url for url, *_ in sso} == {masked}
    assert {(xml, error) for *_, xml, error in sso} == {(True, f"attribute mapping not loaded from {masked} {cut}")}
    # The XML was pasted: that much is kept, the XML itself nowhere (tables, Parquet, logs).
    assert "main.sso_settings.metadata_url" in tables_holding(database, "idp.example.com/federation")  # it looks
    assert tables_holding(database, CERTIFICATE) == [] and tables_holding(database, "EntityDescriptor") == []
    for secret in (PASTED, URL_PASSWORD, URL_TOKEN, CERTIFICATE):
        leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaked == [], secret
        assert secret not in out.getvalue() + err.getvalue()


@pytest.mark.parametrize("echoed_as", ["the whole key", "its secret without its prefix", "the key spelt in JSON escapes"])
def test_the_key_echoed_in_a_2xx_answer_is_stored_nowhere(tmp_path, monkeypatch, echoed_as):
    # A server that puts the key it received into the data of its answers (a role's and a
    # workspace's display name): not in the tables, the Parquet copy, nor Dagster's asset
    # metadata (the raw assets' previews show role and workspace names). Its secret echoed
    # without the lsv2_sk_ prefix (which no whole-key scan finds) is the key all the same: cut,
    # as in the client's errors (test_keys_echoed_in_headers.py). Spelt in JSON's \uXXXX escapes,
    # it decodes whole, and no scan of the answer's bytes finds it: cut as the whole key.
    whole, escaped = echoed_as != "its secret without its prefix", echoed_as == "the key spelt in JSON escapes"
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    database = tmp_path / "data" / "access.duckdb"
    org = generate_org(seed=7, members=15, workspaces=3, now=int(time.time()))
    with SandboxServer(org) as sandbox:
        served = sandbox.respond
        echoed = set()

        def echo(value, key):
            if isinstance(value, dict):
                return {name: f"{item} {key}" if name == "display_name" and isinstance(item, str)
                        else echo(item, key) for name, item in value.items()}
            if isinstance(value, list):
                return [echo(item, key) for item in value]
            return value

        def respond(request):
            answer = served(request)
            if (isinstance(answer, ApiResponse) and answer.status == 200
                    and request.path in ("/api/v1/orgs/current/roles", "/api/v1/workspaces")):
                echoed.add(request.path)
                key = request.headers.get("X-API-Key")
                if escaped:
                    text = json.dumps(echo(answer.body, "<echo>")).replace("<echo>", "".join(
                        f"\\u{ord(char):04x}" for char in key))
                    return ApiResponse(200, HtmlPage(text, "application/json"), answer.headers)
                return ApiResponse(200, echo(answer.body, key if whole else key.removeprefix("lsv2_sk_")),
                                   answer.headers)
            return answer

        sandbox.respond = respond
        point_at(monkeypatch, sandbox, database)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["sync", "--quiet"])
        key = sandbox.api_key
    assert code == 0, err.getvalue()
    assert echoed == {"/api/v1/orgs/current/roles", "/api/v1/workspaces"}
    with duckdb.connect(str(database), read_only=True) as conn:
        names = [n for (n,) in conn.execute("SELECT display_name FROM main.workspaces").fetchall()]
    # Cut to how LangSmith shows a key (its prefix and last four characters); a piece, to ***.
    assert names and all(name.endswith(f" {redact_short_key(key)[0] if whole else '***'}") for name in names), names
    secret = key.removeprefix("lsv2_sk_")
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert secret not in out.getvalue() + err.getvalue()
