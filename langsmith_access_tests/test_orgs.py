"""The orgs file (DESIGN.md section 11): every org's settings, and every refusal, before any request.

Each refusal must name the file, the entry and the fix, and never show a key: the keys below are
distinctive strings, and every message is checked not to contain any of them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from langsmith_access.doctor import run_checks
from langsmith_access.provisioning.expiry import unlisted_org_warnings
from langsmith_access.settings import (
    DEFAULT_ORG_SLUG,
    ORGS_FILE_VARIABLE,
    Org,
    Orgs,
    Secret,
    Settings,
    SettingsError,
    load_orgs,
)
from langsmith_access_tests.helpers import cli_in_this_process

US_ID = "00000000-0000-4000-8000-0000000000aa"
EU_ID = "00000000-0000-4000-8000-0000000000bb"
US_KEY = "lsv2_sk_us0000000000000000000000000000_secret"
EU_KEY = "lsv2_sk_eu0000000000000000000000000000_secret"
KEYS = {"LANGSMITH_API_KEY_US": US_KEY, "LANGSMITH_API_KEY_EU": EU_KEY}

TWO_ORGS = f"""\
- slug: us
  organization_id: {US_ID}
  endpoint: https://api.smith.langchain.com
  api_key_env: LANGSMITH_API_KEY_US
- slug: eu
  organization_id: {EU_ID}
  endpoint: https://eu.api.smith.langchain.com/api/v1/
  api_key_env: LANGSMITH_API_KEY_EU
  policy: policies/eu.yaml
"""


def orgs_from(tmp_path: Path, text: str, **variables: str) -> Orgs:
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(text, encoding="utf-8")
    env = {ORGS_FILE_VARIABLE: str(orgs_file), "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "data" / "access.duckdb"),
           **KEYS, **variables}
    return load_orgs(env)


def refusal(tmp_path: Path, text: str, **variables: str) -> str:
    with pytest.raises(SettingsError) as error:
        orgs_from(tmp_path, text, **variables)
    message = str(error.value)
    for key in (US_KEY, EU_KEY, *variables.values()):
        if key.startswith("lsv2_"):
            assert key not in message
    assert str(tmp_path / "orgs.yaml") in message  # names the file
    return message


# ------------------------------------------------------------------ without an orgs file


def test_without_an_orgs_file_the_single_org_variables_are_one_org_named_default():
    env = {"LANGSMITH_API_KEY": "lsv2_sk_single", "LANGSMITH_ORGANIZATION_ID": US_ID,
           "LANGSMITH_ENDPOINT": "https://eu.api.smith.langchain.com/api/v1",
           "LANGSMITH_ACCESS_DUCKDB": "somewhere/access.duckdb", "LANGSMITH_ACCESS_MAX_RETRIES": "2"}
    orgs = load_orgs(env)
    assert orgs.slugs == (DEFAULT_ORG_SLUG,) and orgs.source is None
    org = orgs.get()
    # Exactly today's settings: same database path (not moved into a slug folder), key, endpoint.
    assert org.settings == Settings.from_env(env)
    assert org.duckdb_path == Path("somewhere/access.duckdb")
    assert org.api_key_env == "LANGSMITH_API_KEY" and org.policy_path is None
    assert orgs.get(DEFAULT_ORG_SLUG) is org


def test_without_any_variable_the_default_org_has_the_defaults():
    assert load_orgs({}).get().settings == Settings()


def test_loaded_for_a_deployment_the_default_org_without_a_key_says_why():
    # Its runs and the doctor say what is missing, as for an org of an orgs file.
    [org] = load_orgs({"LANGSMITH_ORGANIZATION_ID": US_ID}, refuse_unusable_keys=False)
    assert (org.key_problem or "").startswith("LANGSMITH_API_KEY is not set")
    [org] = load_orgs({"LANGSMITH_API_KEY": US_KEY, "LANGSMITH_ORGANIZATION_ID": US_ID}, refuse_unusable_keys=False)
    assert org.key_problem is None and org.client().api_key.reveal() == US_KEY


def test_an_empty_orgs_file_variable_is_unset_as_every_other_variable():
    # An env file or a Helm value left as LANGSMITH_ACCESS_ORGS_FILE= means no orgs file: the
    # single-org variables are the one org, and they are read (not skipped as an orgs file's).
    env = {"LANGSMITH_ACCESS_ORGS_FILE": "", "LANGSMITH_API_KEY": US_KEY, "LANGSMITH_ORGANIZATION_ID": US_ID}
    orgs = load_orgs(env)
    assert orgs.slugs == (DEFAULT_ORG_SLUG,) and orgs.source is None
    assert orgs.get().client().api_key.reveal() == US_KEY


def test_the_policy_variable_is_the_default_orgs_policy():
    assert load_orgs({"LANGSMITH_ACCESS_POLICY": "policy.yaml"}).get().policy_path == Path("policy.yaml")


# ------------------------------------------------------------------ with an orgs file


def test_each_org_gets_its_endpoint_key_id_and_own_database(tmp_path):
    orgs = orgs_from(tmp_path, TWO_ORGS, LANGSMITH_ACCESS_MAX_RETRIES="3", LANGSMITH_API_KEY="lsv2_sk_ignored")
    assert orgs.slugs == ("us", "eu") and orgs.source == tmp_path / "orgs.yaml"
    us, eu = orgs.get("us"), orgs.get("eu")
    assert (us.organization_id, us.endpoint, us.settings.api_key) == (US_ID, "https://api.smith.langchain.com",
                                                                       Secret(US_KEY))
    # The endpoint as users write it, normalised as for LANGSMITH_ENDPOINT.
    assert (eu.organization_id, eu.endpoint, eu.settings.api_key) == (EU_ID, "https://eu.api.smith.langchain.com",
                                                                       Secret(EU_KEY))
    assert us.duckdb_path == tmp_path / "data" / "us" / "langsmith_access.duckdb"
    assert eu.duckdb_path == tmp_path / "data" / "eu" / "langsmith_access.duckdb"
    assert (us.api_key_env, eu.api_key_env) == ("LANGSMITH_API_KEY_US", "LANGSMITH_API_KEY_EU")
    # Shared settings apply to every org; each org's client is its own.
    assert us.settings.max_retries == eu.settings.max_retries == 3
    assert us.client().api_key.reveal() == US_KEY
    assert eu.settings.client().organization_id == EU_ID


def test_a_key_variable_is_read_without_the_spaces_or_newline_an_env_file_leaves_around_it(tmp_path):
    # As LANGSMITH_API_KEY is: the edges' whitespace is not the key's (sent as it is, it would
    # make every request of that org fail).
    orgs = orgs_from(tmp_path, TWO_ORGS, LANGSMITH_API_KEY_US=f"  {US_KEY}\n", LANGSMITH_API_KEY_EU=f"{EU_KEY}\r\n")
    assert orgs.get("us").client().api_key.reveal() == US_KEY
    assert orgs.get("eu").client().api_key.reveal() == EU_KEY


def test_messages_for_an_org_name_its_own_key_variable_and_its_entry(tmp_path):
    orgs = orgs_from(tmp_path, TWO_ORGS)
    fix = ("set LANGSMITH_API_KEY to a valid key for LANGSMITH_ENDPOINT; check LANGSMITH_ORGANIZATION_ID "
           "(LANGSMITH_API_KEY_US and LANGSMITH_ACCESS_DUCKDB are names of their own)")
    assert orgs.get("eu").in_its_own_terms(fix) == (
        f"set LANGSMITH_API_KEY_EU to a valid key for the endpoint of org 'eu' in {tmp_path / 'orgs.yaml'}; "
        f"check the organization_id of org 'eu' in {tmp_path / 'orgs.yaml'} "
        "(LANGSMITH_API_KEY_US and LANGSMITH_ACCESS_DUCKDB are names of their own)"
    )
    # The default org's settings are those variables: its messages stay as written.
    assert load_orgs({}).get().in_its_own_terms(fix) == fix


def test_commands_an_orgs_message_suggests_name_the_org(tmp_path):
    eu = orgs_from(tmp_path, TWO_ORGS).get("eu")
    hint = ("unknown request id r1: `langsmith-access requests --status awaiting_approval` lists them; "
            "run langsmith-access sync first, then `langsmith-access review queue-revokes --file x.csv` "
            "or `langsmith-access approve r2 --by a@b.c`; `langsmith-access demo` and "
            "`langsmith-access sync --org us` are left alone")
    assert eu.in_its_own_terms(hint) == (
        "unknown request id r1: `langsmith-access requests --org eu --status awaiting_approval` lists them; "
        "run langsmith-access sync --org eu first, then "
        "`langsmith-access review queue-revokes --org eu --file x.csv` "
        "or `langsmith-access approve --org eu r2 --by a@b.c`; `langsmith-access demo` and "
        "`langsmith-access sync --org us` are left alone"
    )
    # Once is enough: a message put in the org's terms twice reads the same.
    assert eu.in_its_own_terms(eu.in_its_own_terms(hint)) == eu.in_its_own_terms(hint)
    assert load_orgs({}).get().in_its_own_terms(hint) == hint


def test_a_policy_path_is_kept_per_org_relative_to_the_orgs_file(tmp_path):
    orgs = orgs_from(tmp_path, TWO_ORGS, LANGSMITH_ACCESS_POLICY="/etc/langsmith-access/policy.yaml")
    assert orgs.get("eu").policy_path == tmp_path / "policies" / "eu.yaml"
    # No policy of its own: LANGSMITH_ACCESS_POLICY.
    assert orgs.get("us").policy_path == Path("/etc/langsmith-access/policy.yaml")


@pytest.mark.parametrize("written, own", [("' policies/eu.yaml '", True), ("'\"policies/eu.yaml\"'", True),
                                          ("'  '", False)])
def test_an_orgs_policy_is_read_without_the_spaces_or_quotes_around_it(tmp_path, written, own):
    # Read as typed, " policies/eu.yaml " named a file nobody wrote; blank is no policy of its own.
    orgs = orgs_from(tmp_path, TWO_ORGS.replace("policy: policies/eu.yaml", f"policy: {written}"),
                     LANGSMITH_ACCESS_POLICY="/etc/policy.yaml")
    assert orgs.get("eu").policy_path == (tmp_path / "policies" / "eu.yaml" if own else Path("/etc/policy.yaml"))


def test_the_orgs_file_and_default_policy_are_read_without_the_spaces_or_newline_around_them(tmp_path):
    # As LANGSMITH_ACCESS_DUCKDB is: an env file's " /etc/orgs.yaml\n" names the file, not a relative
    # folder named " " (the orgs file "could not be read"; the policy was one nobody wrote).
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(TWO_ORGS, encoding="utf-8")
    orgs = load_orgs({ORGS_FILE_VARIABLE: f"  {orgs_file}\n", "LANGSMITH_ACCESS_POLICY": " /etc/policy.yaml\n",
                      "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "access.duckdb"), **KEYS})
    assert orgs.source == orgs_file
    assert orgs.get("us").policy_path == Path("/etc/policy.yaml")
    with pytest.raises(SettingsError, match=f"{ORGS_FILE_VARIABLE} is blank"):
        load_orgs({ORGS_FILE_VARIABLE: " \n", **KEYS})


def test_no_repr_shows_a_key(tmp_path):
    orgs = orgs_from(tmp_path, TWO_ORGS)
    for text in (repr(orgs), str(orgs), repr(orgs.get("us")), f"{orgs.get('eu')}", repr(orgs.get("us").settings)):
        assert US_KEY not in text and EU_KEY not in text
    assert "LANGSMITH_API_KEY_US" in repr(orgs.get("us"))  # the variable's name is not a secret


def test_several_orgs_need_a_slug_and_an_unknown_slug_names_the_known_ones(tmp_path):
    orgs = orgs_from(tmp_path, TWO_ORGS)
    with pytest.raises(SettingsError, match=r"2 orgs are configured .*\(us, eu\): name one with --org SLUG"):
        orgs.get()
    with pytest.raises(SettingsError, match=r"Unknown org 'apac': the orgs configured in .* are us, eu"):
        orgs.get("apac")
    with pytest.raises(SettingsError, match=r"Unknown org 'us'.*single-org variables are default"):
        load_orgs({}).get("us")
    for near in ("u", "US", "us "):  # a slug is named whole: --org u is no org, not "us"
        with pytest.raises(SettingsError, match=r"Unknown org .*are us, eu"):
            orgs.get(near)


def test_with_an_orgs_file_the_doctor_lists_only_the_variables_problems():
    # Each org's key and id are its entry's: "LANGSMITH_API_KEY is not set" would send the
    # operator to a variable the orgs file makes unused.
    problems = Settings.problems_of_env({ORGS_FILE_VARIABLE: "orgs.yaml", "LANGSMITH_ACCESS_MAX_RETRIES": "-1"})
    assert len(problems) == 1 and problems[0].startswith("LANGSMITH_ACCESS_MAX_RETRIES must be")


# ------------------------------------------------------------------ refusals


def test_a_file_that_does_not_exist(tmp_path):
    with pytest.raises(SettingsError, match=r"LANGSMITH_ACCESS_ORGS_FILE names .*missing.yaml, which cannot be read"):
        load_orgs({ORGS_FILE_VARIABLE: str(tmp_path / "missing.yaml")})


def test_a_file_that_does_not_parse_names_the_line_but_never_shows_it(tmp_path):
    # A broken line that holds a pasted key: the position is shown, the line is not.
    text = TWO_ORGS.replace("  api_key_env: LANGSMITH_API_KEY_EU", f"  api_key_env: [{EU_KEY}")
    message = refusal(tmp_path, text)
    assert "is not valid YAML (line 9, column 9: expected ',' or ']', but got ':')" in message, message
    assert "a YAML list of orgs" in message
    # The bracket left open on the last line: YAML finds it at the end of the file, which it
    # marks on a line after the last newline; said as the end of the file, on its last line.
    unclosed = refusal(tmp_path, text.replace("  policy: policies/eu.yaml\n", ""))
    assert "is not valid YAML (the end of the file, line 8: expected ',' or ']', but got '<stream end>')" in (
        unclosed), unclosed


def test_a_file_that_is_not_utf8_is_named_with_the_fix(tmp_path):
    path = tmp_path / "orgs.yaml"
    path.write_bytes(TWO_ORGS.replace("slug: us", "slug: us # caf\u00e9").encode("latin-1"))
    with pytest.raises(SettingsError) as refused:
        load_orgs({ORGS_FILE_VARIABLE: str(path)})
    message = str(refused.value)
    assert message.startswith(f"The orgs file {path} is not UTF-8 text") and "save it as UTF-8" in message


@pytest.mark.parametrize("text", ["", "slug: us\n", "[]\n", "just text\n"])
def test_a_file_that_is_not_a_list_of_orgs(tmp_path, text):
    assert "must be a non-empty YAML list of orgs" in refusal(tmp_path, text)


def test_a_duplicate_slug(tmp_path):
    text = TWO_ORGS.replace("slug: eu", "slug: us")
    message = refusal(tmp_path, text)
    assert "entry 2 (line 5)" in message and "slug 'us' is already used" in message
    assert "give each org its own slug" in message


def test_the_same_org_twice_under_two_slugs(tmp_path):
    text = TWO_ORGS.replace(EU_ID, US_ID).replace("https://eu.api.smith.langchain.com/api/v1/",
                                                  "https://api.smith.langchain.com/")
    message = refusal(tmp_path, text)
    assert "entry 2" in message and f"same organization (organization_id {US_ID}) as 'us', on the same endpoint" in message


def test_the_same_org_id_through_another_endpoint(tmp_path):
    """An org's id is a random UUID: under another URL (a proxy, localhost for 127.0.0.1) it is
    still the same org, which two entries would provision from two queues."""
    text = TWO_ORGS.replace(EU_ID, US_ID)
    message = refusal(tmp_path, text)
    assert "entry 2" in message and f"same organization (organization_id {US_ID}) as 'us'" in message
    assert "reached through another endpoint (https://eu.api.smith.langchain.com" in message


def test_two_orgs_naming_the_same_key_variable(tmp_path):
    """A service key belongs to one organization: two orgs under one key variable was taken, and
    one of them failed every run (or, with its id mistaken too, read the other org)."""
    text = TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", "api_key_env: LANGSMITH_API_KEY_US")
    for refuse_unusable_keys in (True, False):  # the Dagster definitions too
        with pytest.raises(SettingsError) as error:
            load_orgs({ORGS_FILE_VARIABLE: str(_written(tmp_path, text)), "LANGSMITH_API_KEY_US": US_KEY},
                      refuse_unusable_keys=refuse_unusable_keys)
        message = str(error.value)
        assert "entry 2 (line 5): org 'eu' names" in message and US_KEY not in message
        assert "api_key_env LANGSMITH_API_KEY_US, the key variable of 'us' too" in message
        assert "give each org its own variable (like LANGSMITH_API_KEY_EU)" in message


def _written(tmp_path: Path, text: str) -> Path:
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(text, encoding="utf-8")
    return orgs_file


def test_a_missing_key_variable(tmp_path):
    with pytest.raises(SettingsError) as error:
        orgs_from(tmp_path, TWO_ORGS, LANGSMITH_API_KEY_EU="")
    message = str(error.value)
    assert "entry 2 (line 5), slug 'eu'" in message
    assert "the variable LANGSMITH_API_KEY_EU named by api_key_env is not set" in message
    assert "service key (lsv2_sk_...)" in message and US_KEY not in message


def test_loaded_for_a_deployment_an_org_without_a_usable_key_stops_only_its_own_runs(tmp_path):
    # The Dagster definitions load the orgs so: a code location that failed to load for one
    # org's missing secret would stop every org's schedules and sensors.
    token = "lsv2_pt_personal000000000000000000_secret"
    for eu_key, problem in (("", "the variable LANGSMITH_API_KEY_EU named by api_key_env is not set"),
                            (token, "LANGSMITH_API_KEY_EU (the key of org 'eu'")):
        orgs_file = tmp_path / "orgs.yaml"
        orgs_file.write_text(TWO_ORGS, encoding="utf-8")
        env = {ORGS_FILE_VARIABLE: str(orgs_file), **KEYS, "LANGSMITH_API_KEY_EU": eu_key}
        with pytest.raises(SettingsError):  # the CLI's load refuses the whole file, as before
            load_orgs(env)
        us, eu = load_orgs(env, refuse_unusable_keys=False)
        assert us.key_problem is None and us.client().api_key.reveal() == US_KEY
        assert eu.settings.api_key is None and problem in (eu.key_problem or "")
        with pytest.raises(SettingsError) as refused:  # using eu's key says why, naming the entry
            eu.client()
        assert str(refused.value) == eu.key_problem and str(orgs_file) in eu.key_problem
        [configuration, *_] = run_checks(org=eu).checks  # the doctor (check_langsmith_connection)
        assert (configuration.status, configuration.detail) == ("fail", eu.key_problem)
        assert token not in eu.key_problem and token not in repr(eu)
    # A structural mistake still stops the whole load: it is the file that is wrong.
    orgs_file.write_text(TWO_ORGS.replace("slug: eu", "slug: us"), encoding="utf-8")
    with pytest.raises(SettingsError, match="already used"):
        load_orgs({ORGS_FILE_VARIABLE: str(orgs_file), **KEYS}, refuse_unusable_keys=False)


SHARED_HOOK = "https://hooks.example.com/shared/s3cr3t-shared"
EU_HOOK = "https://hooks.slack.com/services/T0/B0/s3cr3t-eu"
EU_OWN_WEBHOOK = TWO_ORGS + "  webhook_url_env: LANGSMITH_ACCESS_WEBHOOK_URL_EU\n  webhook_format: slack\n"


def test_an_org_may_have_its_own_webhook_named_by_its_variable(tmp_path):
    # eu's team reads its own channel: its notifications go there, in its format; us keeps the
    # shared webhook of LANGSMITH_ACCESS_WEBHOOK_URL.
    us, eu = orgs_from(tmp_path, EU_OWN_WEBHOOK, LANGSMITH_ACCESS_WEBHOOK_URL=SHARED_HOOK,
                       LANGSMITH_ACCESS_WEBHOOK_URL_EU=f" {EU_HOOK}\n")
    assert (us.settings.webhook_url.reveal(), us.settings.webhook_format) == (SHARED_HOOK, "json")
    assert (eu.settings.webhook_url.reveal(), eu.settings.webhook_format) == (EU_HOOK, "slack")
    assert us.notifies and eu.notifies and eu.webhook_problem is None
    assert EU_HOOK not in repr(eu) and "s3cr3t" not in repr(eu)
    # Without a shared one, only eu notifies.
    us, eu = orgs_from(tmp_path, EU_OWN_WEBHOOK, LANGSMITH_ACCESS_WEBHOOK_URL_EU=EU_HOOK)
    assert not us.notifies and eu.settings.webhook_url.reveal() == EU_HOOK


@pytest.mark.parametrize("value, said", [
    ("", "the variable LANGSMITH_ACCESS_WEBHOOK_URL_EU named by webhook_url_env is not set"),
    ("hooks.slack.com/services/T0/B0/s3cr3t-eu", "the variable LANGSMITH_ACCESS_WEBHOOK_URL_EU named by "
     "webhook_url_env must be an http(s) URL"),
])
def test_an_orgs_webhook_variable_unset_or_no_url_is_refused_or_its_problem_for_a_deployment(tmp_path, value, said):
    message = refusal(tmp_path, EU_OWN_WEBHOOK, LANGSMITH_ACCESS_WEBHOOK_URL=SHARED_HOOK,
                      LANGSMITH_ACCESS_WEBHOOK_URL_EU=value)
    assert "entry 2 (line 5), slug 'eu'" in message and said in message, message
    assert "s3cr3t" not in message
    # Loaded for a deployment, eu's notifications are still queued (they wait), never sent to
    # the shared webhook, which another team reads; us is untouched.
    orgs_file = tmp_path / "orgs.yaml"
    us, eu = load_orgs({ORGS_FILE_VARIABLE: str(orgs_file), **KEYS, "LANGSMITH_ACCESS_WEBHOOK_URL": SHARED_HOOK,
                        "LANGSMITH_ACCESS_WEBHOOK_URL_EU": value}, refuse_unusable_keys=False)
    assert us.settings.webhook_url.reveal() == SHARED_HOOK and us.webhook_problem is None
    assert eu.settings.webhook_url is None and eu.notifies
    assert said in eu.webhook_problem and eu.webhook_problem.endswith("wait until then.")
    assert "s3cr3t" not in eu.webhook_problem


def test_an_orgs_slack_incoming_webhook_in_json_is_refused_whichever_names_it(tmp_path):
    # Its own webhook with no format of its own (the shared one is json), or the shared Slack
    # webhook with the entry's own json: Slack would refuse every one of the org's notifications.
    own_in_json = TWO_ORGS + "  webhook_url_env: LANGSMITH_ACCESS_WEBHOOK_URL_EU\n"
    message = refusal(tmp_path, own_in_json, LANGSMITH_ACCESS_WEBHOOK_URL_EU=EU_HOOK)
    assert message.endswith(
        "entry 2 (line 5), slug 'eu': the variable LANGSMITH_ACCESS_WEBHOOK_URL_EU named by webhook_url_env is a "
        "Slack incoming webhook (https://hooks.slack.com/services/..., the rest not shown: it is a secret), which "
        "takes only Slack's message body: set its webhook_format to slack. As json, Slack would refuse every "
        "notification."), message
    message = refusal(tmp_path, TWO_ORGS + "  webhook_format: json\n", LANGSMITH_ACCESS_WEBHOOK_URL=EU_HOOK,
                      LANGSMITH_ACCESS_WEBHOOK_FORMAT="slack")
    assert message.endswith(
        "entry 2 (line 5), slug 'eu': the shared webhook, LANGSMITH_ACCESS_WEBHOOK_URL, is a Slack incoming "
        "webhook (https://hooks.slack.com/services/..., the rest not shown: it is a secret), which takes only "
        "Slack's message body: set its webhook_format to slack. As json, Slack would refuse every notification."
    ), message
    assert "s3cr3t" not in message
    # Loaded for a deployment, the org's own is its webhook_problem: its notifications wait, never
    # sent in a body Slack refuses.
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(own_in_json)
    us, eu = load_orgs({ORGS_FILE_VARIABLE: str(orgs_file), **KEYS, "LANGSMITH_ACCESS_WEBHOOK_URL_EU": EU_HOOK},
                       refuse_unusable_keys=False)
    assert eu.settings.webhook_url is None and "Slack incoming webhook" in eu.webhook_problem
    assert us.webhook_problem is None


def test_an_orgs_webhook_that_is_its_endpoint_is_refused_whichever_names_it_even_for_a_deployment(tmp_path):
    # eu's endpoint (…/api/v1/ in the file) as its own webhook, or us's as the shared one: every
    # notification would go to LangSmith, or, were the endpoint the pasted one, every request's
    # key to the receiver. Refused for a deployment too: not a webhook_problem that lets syncs run.
    eu_endpoint = "https://eu.api.smith.langchain.com"
    own = TWO_ORGS + "  webhook_url_env: LANGSMITH_ACCESS_WEBHOOK_URL_EU\n"
    message = refusal(tmp_path, own, LANGSMITH_ACCESS_WEBHOOK_URL_EU=eu_endpoint)
    assert message.endswith(
        "entry 2 (line 5), slug 'eu': the variable LANGSMITH_ACCESS_WEBHOOK_URL_EU named by webhook_url_env and "
        "endpoint are the same URL (not shown: a webhook's URL is a secret): LangSmith's API key would be sent to "
        "the webhook's receiver, or every notification to LangSmith. Set endpoint to your LangSmith API's URL "
        "(https://api.smith.langchain.com for LangSmith Cloud US) and the variable LANGSMITH_ACCESS_WEBHOOK_URL_EU "
        "named by webhook_url_env to the receiver's (revoke the webhook URL if the key was sent there)."), message
    orgs_file = tmp_path / "orgs.yaml"
    with pytest.raises(SettingsError, match="named by webhook_url_env and endpoint are the same URL"):
        load_orgs({ORGS_FILE_VARIABLE: str(orgs_file), **KEYS, "LANGSMITH_ACCESS_WEBHOOK_URL_EU": eu_endpoint},
                  refuse_unusable_keys=False)

    message = refusal(tmp_path, TWO_ORGS, LANGSMITH_ACCESS_WEBHOOK_URL="https://api.smith.langchain.com/api/v1")
    assert ("entry 1 (line 1), slug 'us': the shared webhook, LANGSMITH_ACCESS_WEBHOOK_URL, and endpoint are "
            "the same URL (not shown: a webhook's URL is a secret): ") in message, message
    # With an orgs file, LANGSMITH_ENDPOINT and its default are no org's endpoint: the shared
    # webhook is compared with the entries' alone (eu only here).
    [eu] = orgs_from(tmp_path, TWO_ORGS[TWO_ORGS.index("- slug: eu"):],
                     LANGSMITH_ACCESS_WEBHOOK_URL="https://api.smith.langchain.com", LANGSMITH_ENDPOINT=SHARED_HOOK)
    assert eu.settings.endpoint == eu_endpoint
    assert eu.settings.webhook_url.reveal() == "https://api.smith.langchain.com"


@pytest.mark.parametrize("written", ["https://hooks.slack.com/services/T0/B0/s3cr3t-eu", "WEBHOOK-EU"])
def test_a_webhook_variable_name_that_is_not_one_is_refused_without_being_shown(tmp_path, written):
    message = refusal(tmp_path, TWO_ORGS + f"  webhook_url_env: {written}\n")
    assert "webhook_url_env must be the name of an environment variable" in message
    assert "LANGSMITH_ACCESS_WEBHOOK_URL_EU" in message and written not in message


def test_an_orgs_webhook_format_must_be_one_of_the_formats(tmp_path):
    message = refusal(tmp_path, TWO_ORGS + "  webhook_format: teams\n")
    assert "slug 'eu': webhook_format must be one of json, slack" in message, message
    # The webhook's URL written as the format (beside webhook_url_env) is a secret: not shown.
    message = refusal(tmp_path, TWO_ORGS + "  webhook_format: https://hooks.slack.com/services/T0/B0/s3cr3t-eu\n")
    assert "slug 'eu': webhook_format must be one of json, slack, and the value set looks like a URL" in message
    assert "the URL belongs in the variable webhook_url_env names" in message and "s3cr3t" not in message, message
    # Its own format alone applies to the shared webhook.
    _, eu = orgs_from(tmp_path, TWO_ORGS + "  webhook_format: ' Slack '\n", LANGSMITH_ACCESS_WEBHOOK_URL=SHARED_HOOK)
    assert (eu.settings.webhook_url.reveal(), eu.settings.webhook_format) == (SHARED_HOOK, "slack")


def test_a_key_variable_holding_a_personal_token_names_the_variable_not_the_token(tmp_path):
    token = "lsv2_pt_personal000000000000000000_secret"
    message = refusal(tmp_path, TWO_ORGS, LANGSMITH_API_KEY_US=token)
    assert token not in message
    assert "LANGSMITH_API_KEY_US (the key of org 'us'" in message and "personal access token" in message


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "12345-abc", "00000000-0000-4000-8000-00000000000"])
def test_an_org_id_that_is_not_a_uuid(tmp_path, bad_id):
    message = refusal(tmp_path, TWO_ORGS.replace(EU_ID, bad_id))
    assert "entry 2 (line 5), slug 'eu': organization_id must be the organization's UUID" in message
    assert repr(bad_id) in message


@pytest.mark.parametrize("slug", ["../etc", "us/eu", "a\\\\b", ".."])
def test_a_slug_with_path_characters(tmp_path, slug):
    message = refusal(tmp_path, TWO_ORGS.replace("slug: eu", f'slug: "{slug}"'))
    assert "entry 2 (line 5)" in message and "has path characters" in message


@pytest.mark.parametrize("slug", ["logs", "access_parquet", "access_docs"])
def test_a_slug_naming_a_folder_the_single_org_database_keeps_beside_it(tmp_path, slug):
    # LANGSMITH_ACCESS_DUCKDB is data/access.duckdb: its logs/, access_parquet/ and access_docs/
    # are in data/, where the org folders go (a deployment that moved from one org to several).
    message = refusal(tmp_path, TWO_ORGS.replace("slug: eu", f"slug: {slug}"))
    assert f"entry 2 (line 5): slug {slug!r} is the name of a folder a single-org database keeps" in message
    assert "choose another slug" in message
    # Another database file name, other names: a slug that is only like them is fine.
    assert orgs_from(tmp_path, TWO_ORGS.replace("slug: eu", "slug: langsmith_access_parquet")).get(
        "langsmith_access_parquet")


@pytest.mark.parametrize("slug", ["EU", "-eu", "eu prod", "e" * 33, "eu.prod", "é"])
def test_a_slug_not_matching_the_pattern(tmp_path, slug):
    message = refusal(tmp_path, TWO_ORGS.replace("slug: eu", f'slug: "{slug}"'))
    assert "entry 2 (line 5)" in message and "must match [a-z0-9][a-z0-9_-]{0,31}" in message


def test_the_longest_slug_is_accepted(tmp_path):
    slug = "e" + "-_9" * 10 + "x"
    assert len(slug) == 32
    assert orgs_from(tmp_path, TWO_ORGS.replace("slug: eu", f"slug: {slug}")).slugs == ("us", slug)


@pytest.mark.parametrize(("endpoint", "why"), [
    ("ftp://eu.example.com", "must be an http(s) URL"),
    ("https://", "must be an http(s) URL"),
    ("https://eu.example.com/?x=1", "without a query or fragment"),
    ("https://eu.example.com:port", "invalid port"),
])
def test_a_bad_endpoint(tmp_path, endpoint, why):
    message = refusal(tmp_path, TWO_ORGS.replace("https://eu.api.smith.langchain.com/api/v1/", endpoint))
    assert "entry 2 (line 5), slug 'eu': endpoint" in message and why in message


@pytest.mark.parametrize("without", ["", '  endpoint: ""\n', "  endpoint:\n"])
def test_a_missing_entry_key(tmp_path, without):
    # Left out, or given no value: the same refusal.
    message = refusal(tmp_path, TWO_ORGS.replace("  endpoint: https://api.smith.langchain.com\n", without))
    assert "entry 1 (line 1) lacks endpoint" in message
    assert "every entry needs slug, organization_id, endpoint, api_key_env" in message


def test_an_unknown_entry_key(tmp_path):
    message = refusal(tmp_path, TWO_ORGS.replace("  policy:", "  polcy:"))
    assert "entry 2 (line 5) has unknown keys 'polcy'" in message
    assert "slug, organization_id, endpoint, api_key_env, policy, webhook_url_env, webhook_format (policy, " \
        "webhook_url_env, webhook_format optional)" in message, message


def test_a_key_pasted_into_the_file_is_refused_without_being_repeated(tmp_path):
    for text in (TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f"api_key_env: {EU_KEY}"),
                 TWO_ORGS.replace("  policy: policies/eu.yaml", f"  api_key: {EU_KEY}")):
        message = refusal(tmp_path, text)
        assert "entry 2 (line 5)" in message and "looks like an API key" in message
        assert "name that variable in api_key_env" in message


def test_a_key_anywhere_in_a_value_or_as_an_entry_key_is_refused_without_being_repeated(tmp_path):
    # A line copied from an env file, an `export NAME KEY` pasted whole, a key as a mapping key.
    for text, named in (
        (TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f"api_key_env: LANGSMITH_API_KEY_EU={EU_KEY}"),
         "api_key_env holds"),
        (TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f'api_key_env: "export KEY {EU_KEY}"'),
         "api_key_env holds"),
        (TWO_ORGS.replace("  policy: policies/eu.yaml", f"  {EU_KEY}: 1"),
         "a value holding what looks like an API key (not shown) holds"),
    ):
        message = refusal(tmp_path, text)
        assert "entry 2 (line 5)" in message and "looks like an API key" in message, message
        assert named in message, message
        assert "_secret" not in message and "eu0000" not in message


# A real key's shape: its secret part, pasted without the prefix, is still the key.
KEY_BODY = "d2684601c96139ed551e01bd7fa3a962_e523e412c2"


def test_a_key_in_a_value_yaml_quotes_or_the_variable_itself_is_never_repeated(tmp_path):
    # Its secret part without the prefix (a valid variable name, or a value), a key YAML quotes
    # in its own problem (an alias, a tag), a key given twice as an entry's key, and a key set
    # in LANGSMITH_ACCESS_ORGS_FILE itself: each refused, none repeated.
    for text in (
        TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f"api_key_env: {KEY_BODY}"),
        TWO_ORGS.replace(EU_ID, KEY_BODY),
        TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f"api_key_env: *{EU_KEY}"),
        TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f"api_key_env: !{EU_KEY} x"),
        TWO_ORGS.replace("  policy: policies/eu.yaml", f"  {EU_KEY}: 1\n  {EU_KEY}: 1"),
    ):
        message = refusal(tmp_path, text)
        assert KEY_BODY not in message and "eu0000" not in message, message
    assert "api_key_env holds what looks like an API key" in refusal(
        tmp_path, TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", f"api_key_env: {KEY_BODY}"))
    with pytest.raises(SettingsError, match="LANGSMITH_ACCESS_ORGS_FILE names a value holding") as error:
        load_orgs({ORGS_FILE_VARIABLE: EU_KEY})
    assert "eu0000" not in str(error.value)


def test_a_path_that_merely_contains_a_key_prefix_is_no_key(tmp_path):
    orgs = orgs_from(tmp_path, TWO_ORGS.replace("policies/eu.yaml", "policies/tools__ls__rules.yaml"))
    assert orgs.get("eu").policy_path == tmp_path / "policies" / "tools__ls__rules.yaml"


def test_with_an_orgs_file_the_single_org_variables_are_not_read(tmp_path):
    # Each entry gives its own endpoint, key and org id: a stale or wrong single-org variable
    # (here none of them valid) stops nothing, in the CLI or the Dagster definitions.
    stale = {"LANGSMITH_ENDPOINT": "notaurl", "LANGSMITH_API_KEY": "lsv2_pt_personal_token_here_000000",
             "LANGSMITH_ORGANIZATION_ID": "not-a-uuid"}
    orgs = orgs_from(tmp_path, TWO_ORGS, **stale)
    assert [org.endpoint for org in orgs] == ["https://api.smith.langchain.com",
                                               "https://eu.api.smith.langchain.com"]
    assert orgs.get("us").client().api_key.reveal() == US_KEY
    shared = Settings.from_env({ORGS_FILE_VARIABLE: str(tmp_path / "orgs.yaml"), **stale})
    assert shared.endpoint == Settings().endpoint and shared.api_key is None
    # Without the file, the same variables are the org and are checked.
    with pytest.raises(SettingsError, match="LANGSMITH_ENDPOINT"):
        Settings.from_env(stale)


def test_a_key_variable_name_that_is_not_a_variable_name(tmp_path):
    message = refusal(tmp_path, TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", "api_key_env: eu key"))
    assert "api_key_env must be the name of an environment variable" in message and "'eu key'" in message
    # No shell can export a name that starts with a digit.
    message = refusal(tmp_path, TWO_ORGS.replace("api_key_env: LANGSMITH_API_KEY_EU", "api_key_env: '2KEY'"))
    assert "api_key_env must be the name of an environment variable" in message and "'2KEY'" in message


def test_a_value_that_is_not_text(tmp_path):
    message = refusal(tmp_path, TWO_ORGS.replace("slug: eu", "slug: 2024"))
    assert "entry 2 (line 5): slug must be text: put the value in quotes" in message


def test_an_entry_that_is_not_a_mapping(tmp_path):
    message = refusal(tmp_path, TWO_ORGS + "- eu-prod\n")
    assert "entry 3 (line 10) must be a mapping" in message


def test_a_key_given_twice_in_one_entry(tmp_path):
    message = refusal(tmp_path, TWO_ORGS.replace("  policy: policies/eu.yaml", "  slug: eu2"))
    assert "entry 2 (line 5) gives slug more than once" in message


def test_refusals_come_before_anything_reads_a_database_or_the_network(tmp_path):
    # Loading touches nothing but the orgs file: no org folder, no database is created.
    orgs_from(tmp_path, TWO_ORGS)
    with pytest.raises(SettingsError):
        orgs_from(tmp_path, TWO_ORGS.replace(EU_ID, "nope"))
    assert not (tmp_path / "data").exists()
    assert isinstance(load_orgs({}).get(), Org)


def test_an_entry_may_take_shared_keys_from_a_yaml_merge_key_and_override_them(tmp_path):
    # Several orgs in one region, their endpoint written once (`<<: *cloud`): the keys an entry
    # gives itself override the merged ones, as YAML says; none of them is given twice.
    orgs = orgs_from(tmp_path, f"""\
- &cloud
  slug: us
  organization_id: {US_ID}
  endpoint: https://api.smith.langchain.com
  api_key_env: LANGSMITH_API_KEY_US
- <<: *cloud
  slug: eu
  organization_id: {EU_ID}
  api_key_env: LANGSMITH_API_KEY_EU
""")
    eu = orgs.get("eu")
    assert (eu.endpoint, eu.organization_id, eu.client().api_key.reveal()) == (
        "https://api.smith.langchain.com", EU_ID, EU_KEY)
    # A key the entry itself gives twice is still refused, beside a merge key too.
    message = refusal(tmp_path, TWO_ORGS.replace("- slug: us", "- &us\n  slug: us")
                      + "- <<: *us\n  slug: ap\n  slug: apac\n")
    assert "entry 3 (line 11) gives slug more than once" in message


GRANT = ("request", "grant", "--user", "ada@example.com", "--workspace", "Platform", "--role", "Editor")


def two_org_folders(tmp_path: Path, monkeypatch, holding: dict[str, str]) -> Path:
    """TWO_ORGS in use, with a folder of data/ for each slug of ``holding`` whose database's last
    sync was for the org id given; returns data/."""
    data = tmp_path / "data"
    for slug, held in holding.items():
        (data / slug).mkdir(parents=True)
        with duckdb.connect(str(data / slug / "langsmith_access.duckdb")) as conn:
            conn.execute("CREATE TABLE main.sync_runs (status VARCHAR, organization_id VARCHAR, "
                         "finished_at TIMESTAMPTZ)")
            conn.execute("INSERT INTO main.sync_runs VALUES ('succeeded', ?, now())", [held])
    (tmp_path / "orgs.yaml").write_text(TWO_ORGS, encoding="utf-8")
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(tmp_path / "orgs.yaml"))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(data / "langsmith_access.duckdb"))
    for name, key in KEYS.items():
        monkeypatch.setenv(name, key)
    return data


def test_only_an_unlisted_org_folder_with_work_left_is_warned_of_and_its_work_counted(tmp_path, monkeypatch):
    # 'us' is listed: its own runs settle its open request. 'gone' holds nothing open, only a
    # time-bound grant still to end (the access that would never end) beside one already ended;
    # 'older' two open requests.
    gone_id, older_id = "00000000-0000-4000-8000-0000000000cc", "00000000-0000-4000-8000-0000000000dd"
    data = two_org_folders(tmp_path, monkeypatch, {"us": US_ID, "gone": gone_id, "older": older_id})
    rows = {"us": [("p", "grant", "pending", None)],
            "gone": [("g", "grant", "applied", "2099-01-01"), ("x", "grant", "applied", None)],
            "older": [("p1", "grant", "pending", None), ("p2", "revoke", "in_progress", None)]}
    for slug, requests in rows.items():
        with duckdb.connect(str(data / slug / "langsmith_access.duckdb")) as conn:
            conn.execute("CREATE TABLE main.provisioning_requests (request_id VARCHAR, action VARCHAR, "
                         "status VARCHAR, expires_at TIMESTAMPTZ, parent_request_id VARCHAR)")
            conn.executemany("INSERT INTO main.provisioning_requests VALUES (?, ?, ?, ?, NULL)", requests)
    with duckdb.connect(str(data / "gone" / "langsmith_access.duckdb")) as conn:
        # A time-bound grant whose end was applied already: nothing of it is left to end.
        conn.execute("INSERT INTO main.provisioning_requests VALUES ('e', 'grant', 'applied', '2026-01-01', NULL), "
                     "('e-end', 'revoke', 'applied', NULL, 'e')")

    warnings = unlisted_org_warnings(load_orgs(refuse_unusable_keys=False))
    assert [w.split(", which no entry")[0] for w in warnings] == [
        f"{data / 'gone'} holds organization {gone_id}'s database", f"{data / 'older'} holds organization "
        f"{older_id}'s database"], warnings
    assert ", with 1 time-bound grant still to end: no run settles them now" in warnings[0]
    assert ", with 2 open requests: no run settles them now" in warnings[1]
    assert "provision --org gone`" in warnings[0] and "provision --org older`" in warnings[1]


@pytest.mark.parametrize("name", ["langsmith_access.duckdb", "access.duckdb"])
def test_the_single_org_database_left_beside_the_org_folders_with_work_is_warned_of(tmp_path, monkeypatch, name):
    # 'us' ran on the single-org variables (data/langsmith_access.duckdb: a pending request and a
    # time-bound grant), then moved into the orgs file without moving its files (README: "Moving
    # an org ... into an orgs file"). No run under the file reads that database: its request is
    # never applied and the grant's access never ends, so sync --all-orgs and doctor must say so.
    data = two_org_folders(tmp_path, monkeypatch, {})
    data.mkdir()
    single = data / name  # LANGSMITH_ACCESS_DUCKDB's own name (the org folders' files are langsmith_access.*)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(single))
    with duckdb.connect(str(single)) as conn:
        conn.execute("CREATE TABLE main.sync_runs (status VARCHAR, organization_id VARCHAR, finished_at TIMESTAMPTZ)")
        conn.execute("INSERT INTO main.sync_runs VALUES ('succeeded', ?, now())", [US_ID])
        conn.execute("CREATE TABLE main.provisioning_requests (request_id VARCHAR, action VARCHAR, "
                     "status VARCHAR, expires_at TIMESTAMPTZ, parent_request_id VARCHAR)")
        conn.execute("INSERT INTO main.provisioning_requests VALUES ('p', 'grant', 'pending', NULL, NULL), "
                     "('g', 'grant', 'applied', '2099-01-01', NULL)")

    [warning] = unlisted_org_warnings(load_orgs(refuse_unusable_keys=False))
    assert warning.startswith(
        f"{single} (the single-org variables' database) holds organization {US_ID}'s data, with 1 open request "
        f"and 1 time-bound grant still to end: no run settles them while {tmp_path / 'orgs.yaml'} is used"), warning
    assert warning.endswith(f"move them into {data / 'us'} before the first run of org 'us'."), warning

    # Too late to move it: data/us/ has a database of its own (the org's first run there came first).
    (data / "us").mkdir()
    duckdb.connect(str(data / "us" / "langsmith_access.duckdb")).close()
    [warning] = unlisted_org_warnings(load_orgs(refuse_unusable_keys=False))
    assert "org 'us' has started a database of its own since, so settle them with LANGSMITH_ACCESS_ORGS_FILE " \
           "unset and the single-org variables set" in warning, warning
    assert f"its files are everything named {single.stem}* beside it" in warning, warning

    # Its work settled (the grant's end applied, the request done): nothing left to warn of.
    with duckdb.connect(str(single)) as conn:
        conn.execute("UPDATE main.provisioning_requests SET status = 'applied' WHERE request_id = 'p'")
        conn.execute("INSERT INTO main.provisioning_requests VALUES ('g-end', 'revoke', 'applied', NULL, 'g')")
    assert unlisted_org_warnings(load_orgs(refuse_unusable_keys=False)) == []


def test_a_slug_renamed_in_the_orgs_file_is_refused_while_its_old_folder_holds_the_org(tmp_path, monkeypatch):
    # 'us' was 'us-old' until the file was edited: data/us-old/ holds the org's queue and history
    # (time-bound grants still to end among them). A new, empty data/us/ would be a second queue
    # of the same org, and nothing would ever settle the old one.
    data = two_org_folders(tmp_path, monkeypatch, {"us-old": US_ID.upper()})

    refused = cli_in_this_process(*GRANT, "--org", "us")
    assert refused.returncode == 1, refused
    assert (f"{data / 'us' / 'langsmith_access.duckdb'} does not exist yet, but "
            f"{data / 'us-old' / 'langsmith_access.duckdb'} holds this organization's data") in refused.stderr
    assert f"move the files of {data / 'us-old'}" in refused.stderr and US_KEY not in refused.stderr
    assert not list((data / "us").glob("langsmith_access*.duckdb"))  # nothing created, nothing queued
    # A sync or a provisioning run is refused the same, inside its run, and leaves no failure log
    # there: a logs/ folder in data/us/ would be in the way of the fix's move of data/us-old/logs/.
    for run in (("sync", "--org", "us"), ("provision", "--org", "us"), ("provision", "--org", "us", "--dry-run")):
        done = cli_in_this_process(*run)
        assert done.returncode == 1, done
        assert f"move the files of {data / 'us-old'}" in done.stderr and "details (stack traces)" not in done.stderr
    # Nor any folder at all (not even the writer lease's lock file): the refusal comes first.
    assert not (data / "us").exists(), sorted((data / "us").iterdir())
    # A command that only reads says the same, not "run sync first" (which the refusal above stops).
    for reads in (("requests", "--org", "us"), ("requests", "--org", "us", "--json"),
                  ("access-at", "--org", "us", "--time", "now")):
        done = cli_in_this_process(*reads)
        assert done.returncode == 1, done
        assert f"{data / 'us-old' / 'langsmith_access.duckdb'} holds this organization's data" in done.stderr, done
        assert "run langsmith-access sync first" not in done.stderr
    # The other org, whose data is nowhere else, has no database yet: the fix names the command
    # as that org runs it.
    unsynced = cli_in_this_process("access-at", "--org", "eu", "--time", "now")
    assert unsynced.returncode == 1 and unsynced.stderr.endswith(
        "does not exist yet: run langsmith-access sync --org eu first.\n"), unsynced.stderr
    # Its requests are refused as any org's before its first sync, not as a renamed slug's.
    request = cli_in_this_process(*GRANT, "--org", "eu")
    assert request.returncode == 2 and "run `langsmith-access sync --org eu` first" in request.stderr, request
    assert not list((data / "eu").glob("langsmith_access*.duckdb"))


def test_a_refused_decision_is_said_as_such_when_another_orgs_database_cannot_be_read(tmp_path, monkeypatch):
    # `approve --org eu` with an id eu does not hold looks in the other orgs' queues to say whose
    # it is: us's damaged database must not turn eu's refusal (exit 2) into us's error (exit 1).
    data = two_org_folders(tmp_path, monkeypatch, {"us": US_ID, "eu": EU_ID})
    damaged = data / "us" / "langsmith_access.duckdb"
    damaged.write_bytes(b"not a DuckDB file" * 100)
    for verb in ("approve", "deny"):
        done = cli_in_this_process(verb, "no-such-request", "--by", "ops@example.com", "--org", "eu")
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("refused: unknown request id no-such-request") and str(damaged) not in (
            done.stderr), done.stderr


def test_two_swapped_slugs_are_refused_naming_the_slug_that_holds_the_org(tmp_path, monkeypatch):
    # data/us/ holds the eu org's data and data/eu/ the us org's: the orgs file's two slugs were
    # swapped. The refusal names the slug whose folder holds the org, not "a new path" (which
    # would only start a second database of the org).
    data = two_org_folders(tmp_path, monkeypatch, {"us": EU_ID, "eu": US_ID})

    for slug, other, held in (("us", "eu", EU_ID), ("eu", "us", US_ID)):
        refused = cli_in_this_process(*GRANT, "--org", slug)
        assert refused.returncode == 1, refused
        assert f"holds organization {held}'s data" in refused.stderr, refused.stderr
        assert (f"{data / other / 'langsmith_access.duckdb'} holds organization "
                f"{US_ID if slug == 'us' else EU_ID}'s data: give this org the slug '{other}'") in refused.stderr
        assert "a path that does not exist yet" not in refused.stderr
        assert US_KEY not in refused.stderr and EU_KEY not in refused.stderr


def test_a_changed_org_id_without_an_orgs_file_still_names_a_new_path_as_the_fix(tmp_path, monkeypatch):
    database = tmp_path / "access.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE TABLE main.sync_runs (status VARCHAR, organization_id VARCHAR, finished_at TIMESTAMPTZ)")
        conn.execute("INSERT INTO main.sync_runs VALUES ('succeeded', ?, now())", [EU_ID])
    monkeypatch.delenv(ORGS_FILE_VARIABLE, raising=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", US_ID)
    refused = cli_in_this_process("request", "grant", "--user", "ada@example.com", "--workspace", "Platform",
                                  "--role", "Editor")
    assert refused.returncode == 1, refused
    assert "point LANGSMITH_ACCESS_DUCKDB" in refused.stderr and "a path that does not exist yet" in refused.stderr
