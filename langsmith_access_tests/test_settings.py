"""Settings: every default written once (the dataclass), the environment read over it."""

from __future__ import annotations

import dataclasses
import pickle
import re
from datetime import timedelta
from pathlib import Path

import pytest

from langsmith_access.settings import (
    CLIENT_FIELDS,
    ENVIRONMENT,
    ClientSettings,
    Secret,
    Settings,
    SettingsError,
    cache_directory,
    check_api_key,
    load_orgs,
    mask_key_fragments,
    mask_keys,
)

ORG = "00000000-0000-4000-8000-000000000001"


def test_an_empty_environment_gives_the_dataclass_defaults():
    assert Settings.from_env({}) == Settings()
    # Empty variables count as unset.
    assert Settings.from_env({variable: "" for _, variable, _ in ENVIRONMENT}) == Settings()


def test_every_setting_has_one_variable():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert [name for name, _, _ in ENVIRONMENT] == [f.name for f in dataclasses.fields(Settings)]
    assert len({variable for _, variable, _ in ENVIRONMENT}) == len(fields)


def test_the_client_defaults_are_the_settings_defaults():
    client = ClientSettings(api_key=Secret("lsv2_sk_x"), organization_id=ORG)
    for name in CLIENT_FIELDS:
        assert getattr(client, name) == getattr(Settings(), name), name
    key = {"LANGSMITH_API_KEY": "lsv2_sk_abc", "LANGSMITH_ORGANIZATION_ID": ORG}
    assert Settings.from_env(key).client() == ClientSettings(api_key=Secret("lsv2_sk_abc"), organization_id=ORG)


def test_the_documented_defaults():
    # DESIGN.md section 1 (endpoint, database), section 5 (a drop beyond 20% stops the sync),
    # section 8 (the fixed 60-second rate-limit window), section 9 (hourly sync, inventory at :30).
    settings = Settings.from_env({})
    assert (settings.endpoint, settings.duckdb_path) == ("https://api.smith.langchain.com",
                                                         Path("data/langsmith_access.duckdb"))
    assert (settings.max_shrink_share, settings.rate_limit_window_seconds) == (0.2, 60.0)
    assert (settings.sync_cron, settings.inventory_cron) == ("0 * * * *", "30 * * * *")


def test_variables_override_the_defaults():
    settings = Settings.from_env({
        "LANGSMITH_ENDPOINT": "http://127.0.0.1:9/", "LANGSMITH_ACCESS_DUCKDB": "x.duckdb",
        "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "12", "LANGSMITH_ACCESS_MAX_RETRIES": "0",
        "LANGSMITH_ACCESS_MAX_SHRINK_SHARE": "0.5", "LANGSMITH_ACCESS_SYNC_CRON": "5 * * * *",
    })
    assert (settings.endpoint, settings.duckdb_path, settings.read_timeout_seconds) == ("http://127.0.0.1:9", Path("x.duckdb"), 12.0)
    assert (settings.max_retries, settings.max_shrink_share, settings.sync_cron) == (0, 0.5, "5 * * * *")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LANGSMITH_ACCESS_REQUESTS_PER_MINUTE", "0", "positive whole number"),
    ("LANGSMITH_ACCESS_MAX_RETRIES", "-1", "0 or more"),
    ("LANGSMITH_ACCESS_MAX_SHRINK_SHARE", "2", "between 0 and 1"),
    ("LANGSMITH_ENDPOINT", "ftp://x", "http(s) URL"),
    ("LANGSMITH_ACCESS_UNUSED_DAYS", "0", "positive whole number"),
    # Taken before, and every sync then failed in dbt (INT32 day arithmetic), naming no variable.
    ("LANGSMITH_ACCESS_UNUSED_DAYS", "99999999999", "a number of days from 1 to 3650"),
])
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(SettingsError, match=variable) as error:
        Settings.from_env({variable: value})
    assert message in str(error.value)


@pytest.mark.parametrize("variable", ["LANGSMITH_ACCESS_TIMEOUT_SECONDS", "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS"])
def test_seconds_may_be_a_fraction_but_are_positive_and_finite(variable):
    field = {"LANGSMITH_ACCESS_TIMEOUT_SECONDS": "read_timeout_seconds",
             "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS": "rate_limit_window_seconds"}[variable]
    assert getattr(Settings.from_env({variable: " 2.5\n"}), field) == 2.5
    assert getattr(Settings.from_env({variable: "30"}), field) == 30.0
    for bad in ("0", "-1", "0.0", "nan", "inf", "thirty", "1,5"):
        with pytest.raises(SettingsError, match=f"^{variable} must be a positive number of seconds"):
            Settings.from_env({variable: bad})


@pytest.mark.parametrize("variable, field", [("LANGSMITH_ACCESS_DUCKDB", "duckdb_path"),
                                             ("LANGSMITH_ACCESS_POLICY", "policy_path")])
def test_a_path_with_spaces_or_a_newline_around_it_is_the_path(tmp_path, variable, field):
    # Read as typed, " /x/a.duckdb\n" was a relative folder named " " and a database nobody opens.
    path = tmp_path / "a.file"
    assert getattr(Settings.from_env({variable: f"  {path}\n"}), field) == path
    with pytest.raises(SettingsError, match=f"{variable} is blank"):
        Settings.from_env({variable: " \n"})


def test_a_shrink_share_of_exactly_0_or_1_is_allowed():
    assert Settings.from_env({"LANGSMITH_ACCESS_MAX_SHRINK_SHARE": "0"}).max_shrink_share == 0.0
    assert Settings.from_env({"LANGSMITH_ACCESS_MAX_SHRINK_SHARE": "1"}).max_shrink_share == 1.0
    for bad in ("-0.1", "1.01", "nan", "a lot"):
        with pytest.raises(SettingsError, match="between 0 and 1"):
            Settings.from_env({"LANGSMITH_ACCESS_MAX_SHRINK_SHARE": bad})


def test_a_secret_cannot_be_pickled():
    # Pickled settings could end up in Dagster's run storage, the key in them.
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Settings(api_key=Secret("lsv2_sk_" + "0" * 32)))


def test_a_secret_never_shows_itself_however_it_is_printed():
    # Settings and ClientSettings leave the key out of their repr, but a Secret is also passed
    # on alone (the secrets removed from a failed run's message, a client's fields): repr, str,
    # format and the repr of a container holding it show stars, never the value.
    value = "lsv2_sk_" + "5ec2e7" * 6
    secret = Secret(value)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>60}", "%s %r" % (secret, secret),
                 repr((secret, None)), repr(ClientSettings(api_key=secret, organization_id=ORG))):
        assert value not in text and "5ec2e7" not in text, text
    assert secret.reveal() == value
    # Equal exactly when the values are: settings read from two environments compare by their keys.
    assert secret == Secret(value) and secret != Secret(value + "0") and secret != value


def test_governance_settings():
    settings = Settings.from_env({
        "LANGSMITH_ACCESS_POLICY": "policy.yaml", "LANGSMITH_ACCESS_WEBHOOK_URL": " https://hooks.example.com/T0/B0/s3cret ",
        "LANGSMITH_ACCESS_WEBHOOK_FORMAT": "Slack", "LANGSMITH_ACCESS_EXPIRY_WARNING": "2h",
    })
    assert settings.policy_path == Path("policy.yaml")
    assert settings.webhook_url == Secret("https://hooks.example.com/T0/B0/s3cret")
    assert (settings.webhook_format, settings.expiry_warning) == ("slack", timedelta(hours=2))
    assert "s3cret" not in repr(settings) and "s3cret" not in f"{settings.webhook_url}"
    defaults = Settings()
    assert (defaults.policy_path, defaults.webhook_url, defaults.webhook_format) == (None, None, "json")
    assert defaults.expiry_warning == timedelta(hours=24)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "hooks.example.com/s3cret", "must be an http(s) URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "ftp://hooks.example.com/s3cret", "must be an http(s) URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "http://[s3cret/", "must be an http(s) URL"),
    # A port that is no port, or a space: refused here, not "could not connect" at every delivery.
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "https://hooks.example.com:44e/s3cret", "must be an http(s) URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "https://hooks.example.com:99999/s3cret", "must be an http(s) URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "https://hooks.example.com/s3cret token", "must be an http(s) URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "https://hooks.example.com:0/s3cret", "must be an http(s) URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", "https://hooks.example.com/s3cret\x07", "must be an http(s) URL"),
    # A blank value was "not an http(s) URL (not shown)": nothing to see, so nothing to fix.
    ("LANGSMITH_ACCESS_WEBHOOK_URL", " \n", "is blank (only spaces or quotes): set it to the receiver's http(s) URL, or unset"),
    ("LANGSMITH_ACCESS_WEBHOOK_URL", '""', "is blank (only spaces or quotes)"),
    ("LANGSMITH_ACCESS_WEBHOOK_FORMAT", "teams", "must be one of json, slack"),
    # The webhook's URL set in its neighbour, the format variable: quoted, its token (in the
    # path of a Slack URL) was in the doctor's output and every command's error.
    ("LANGSMITH_ACCESS_WEBHOOK_FORMAT", "https://hooks.slack.com/services/T0/B0/s3cret",
     "looks like a URL (not shown: a webhook's URL is a secret): the URL belongs in LANGSMITH_ACCESS_WEBHOOK_URL"),
    ("LANGSMITH_ACCESS_WEBHOOK_FORMAT", "hooks.slack.com/services/T0/B0/s3cret", "looks like a URL (not shown"),
    ("LANGSMITH_ACCESS_EXPIRY_WARNING", "0s", "is zero"),
    ("LANGSMITH_ACCESS_EXPIRY_WARNING", "1 day", "is not a duration"),
])
def test_bad_governance_values_name_the_variable_and_never_show_the_url(variable, value, message):
    with pytest.raises(SettingsError, match=variable) as error:
        Settings.from_env({variable: value})
    assert message in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize("variable", ["LANGSMITH_ACCESS_WEBHOOK_FORMAT", "LANGSMITH_ACCESS_UNUSED_DAYS",
                                      "LANGSMITH_ACCESS_SYNC_CRON", "LANGSMITH_ACCESS_MAX_SHRINK_SHARE"])
def test_a_long_bad_value_is_quoted_by_its_start_and_length_not_whole(variable):
    # A file's content pasted into a variable was echoed whole: the fix drowned after it.
    pasted = "line of a file\n" * 1000
    problems = Settings.problems_of_env({variable: pasted})
    assert problems and problems[0].startswith(variable), problems
    assert len(problems[0]) < 400 and "line of a file\\nline" in problems[0], problems[0]


SLACK_HOOK = "https://hooks.slack.com/services/T0/B0/s3cret"


@pytest.mark.parametrize("written_format", [None, "json", " JSON "])
def test_a_slack_incoming_webhook_is_refused_in_any_format_but_slack(written_format):
    # Slack answers 400 to any body but its own ({"text": ...}): every notification was retried
    # from the outbox forever, and only its last_error said why.
    env = {"LANGSMITH_ACCESS_WEBHOOK_URL": SLACK_HOOK}
    if written_format is not None:
        env["LANGSMITH_ACCESS_WEBHOOK_FORMAT"] = written_format
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert str(error.value) == (
        "LANGSMITH_ACCESS_WEBHOOK_URL is a Slack incoming webhook (https://hooks.slack.com/services/..., the rest "
        "not shown: it is a secret), which takes only Slack's message body: set LANGSMITH_ACCESS_WEBHOOK_FORMAT "
        "to slack. As json, Slack would refuse every notification.")
    assert "s3cret" not in str(error.value)
    assert any("Slack incoming webhook" in problem for problem in Settings.problems_of_env(env))  # the doctor's
    assert Settings.from_env({**env, "LANGSMITH_ACCESS_WEBHOOK_FORMAT": "slack"}).webhook_format == "slack"
    # A Slack workflow's webhook takes any JSON: the payload, as json sends it.
    workflow = Settings.from_env({"LANGSMITH_ACCESS_WEBHOOK_URL": "https://hooks.slack.com/triggers/T0/1/s3cret"})
    assert workflow.webhook_format == "json"


HOOK = "https://hooks.example.com/notify/s3cret"


@pytest.mark.parametrize("endpoint, webhook", [
    (HOOK, HOOK),  # the webhook's URL pasted as the endpoint: every request's key would go to the receiver
    ("https://HOOKS.example.com:443/notify/s3cret/api/v1", f" {HOOK}/ "),  # the same address, written apart
    (None, "https://api.smith.langchain.com/"),  # the endpoint (the default one) pasted as the webhook
])
def test_a_webhook_url_that_is_the_langsmith_endpoint_is_refused_without_being_shown(endpoint, webhook):
    env = {"LANGSMITH_ACCESS_WEBHOOK_URL": webhook}
    if endpoint is not None:
        env["LANGSMITH_ENDPOINT"] = endpoint
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert str(error.value) == (
        "LANGSMITH_ACCESS_WEBHOOK_URL and LANGSMITH_ENDPOINT are the same URL (not shown: a webhook's URL is a "
        "secret): LangSmith's API key would be sent to the webhook's receiver, or every notification to LangSmith. "
        "Set LANGSMITH_ENDPOINT to your LangSmith API's URL (https://api.smith.langchain.com for LangSmith Cloud "
        "US) and LANGSMITH_ACCESS_WEBHOOK_URL to the receiver's (revoke the webhook URL if the key was sent there).")
    assert str(error.value) in Settings.problems_of_env(env)  # the doctor's
    # Another address, on the same host or not, is another receiver: a deliberate one.
    for elsewhere in (f"{HOOK}/other", "https://hooks.example.com:8443/notify/s3cret",
                      "http://hooks.example.com/notify/s3cret"):
        assert Settings.from_env({**env, "LANGSMITH_ACCESS_WEBHOOK_URL": elsewhere}).webhook_url.reveal() == elsewhere


CRONS = ["0 * * * *", "*/15 * * * *", "30 9-17 * * mon-fri", "0 0 1 jan,jul *", "5,35 */2 1-15/2 * 0",
         "0 0 * * 7", "* * ? * *", "@hourly", "@DAILY", "61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
         "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *", "* * * *", "? * * * *", "@every5m"]


@pytest.mark.parametrize("variable", ["LANGSMITH_ACCESS_SYNC_CRON", "LANGSMITH_ACCESS_INVENTORY_CRON"])
def test_a_cron_is_refused_exactly_where_dagsters_schedules_would_refuse_it(variable):
    """A bad cron is a settings error naming the variable, not a traceback when the definitions
    load (it was for the sync's schedule); what Dagster accepts, these accept."""
    from dagster._utils.schedules import is_valid_cron_schedule

    for cron in CRONS:
        try:
            Settings.from_env({variable: cron})
        except SettingsError as error:
            assert not is_valid_cron_schedule(cron), (cron, str(error))
            assert variable in str(error) and repr(cron) in str(error)
        else:
            assert is_valid_cron_schedule(cron), cron
    assert sum(not is_valid_cron_schedule(cron) for cron in CRONS) >= 8  # both verdicts are exercised


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_a_cron_naming_a_day_no_month_has_is_refused(cron):
    # Five valid fields, but Dagster would fail to load the schedule or never run it.
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"LANGSMITH_ACCESS_SYNC_CRON": cron})
    assert "LANGSMITH_ACCESS_SYNC_CRON never fires" in str(error.value) and repr(cron) in str(error.value)
    for fine in ("0 0 31 * *", "0 0 29 2 *", "15 4 * * 1-5"):  # some months, leap years, weekdays
        assert Settings.from_env({"LANGSMITH_ACCESS_SYNC_CRON": fine}).sync_cron == fine


def test_a_cron_is_refused_as_never_firing_exactly_when_dagster_finds_no_tick():
    import itertools
    import time

    from dagster._utils.schedules import cron_string_iterator

    def dagster_fires(cron: str) -> bool:
        try:
            next(cron_string_iterator(time.time(), cron, "UTC"))
        except Exception:
            return False
        return True

    verdicts = []
    for day, month, weekday in itertools.product(
            ("28", "29", "30", "31", "30,31", "29-31", "*/30", "?"), ("*", "2", "4", "2,4", "4-6", "feb", "11-2", "2/12"),
            ("*", "1")):
        cron = f"0 0 {day} {month} {weekday}"
        try:
            Settings.from_env({"LANGSMITH_ACCESS_SYNC_CRON": cron})
            refused = False
        except SettingsError as error:
            assert "never fires" in str(error), (cron, str(error))
            refused = True
        verdicts.append(refused)
        assert refused == (not dagster_fires(cron)), cron
    assert any(verdicts) and not all(verdicts)


PASTED_KEY = "lsv2_sk_" + "5ec2e7" * 6


@pytest.mark.parametrize(("variable", "value", "message"), [
    # A key pasted into the wrong variable, or a secret in the endpoint's URL: refused, never shown.
    ("LANGSMITH_ORGANIZATION_ID", PASTED_KEY, "must be the organization's UUID"),
    ("LANGSMITH_ENDPOINT", PASTED_KEY, "must be an http(s) URL"),
    ("LANGSMITH_ENDPOINT", f"https://api.smith.langchain.com/?key={PASTED_KEY}", "without a query"),
    ("LANGSMITH_ENDPOINT", "https://alice:5ec2e7pw@langsmith.example.com/api/v1", "must not carry a user name"),
    ("LANGSMITH_ENDPOINT", "https://5ec2e7token@langsmith.example.com/api/v1", "must not carry a user name"),
    ("LANGSMITH_ENDPOINT", "https://langsmith.example.com/api/v1#5ec2e7", "without a query or fragment"),
    ("LANGSMITH_ACCESS_MAX_RETRIES", PASTED_KEY, "must be a whole number"),
    # A key's body without its prefix (32 hex digits, '_', 10 more) is the key all the same.
    ("LANGSMITH_ORGANIZATION_ID", "5ec2e7" * 5 + "5e_5ec2e75ec2", "must be the organization's UUID"),
    # The duration parser quotes what it was given: a key pasted here was repeated whole.
    ("LANGSMITH_ACCESS_EXPIRY_WARNING", PASTED_KEY, "is not a duration"),
    # A path is printed (sync's "published to ...", the policy's refusals) and names files on
    # disk: a key pasted there was taken as a file name.
    ("LANGSMITH_ACCESS_DUCKDB", PASTED_KEY, "holds what looks like an API key"),
    ("LANGSMITH_ACCESS_DUCKDB", f"data/{PASTED_KEY}.duckdb", "holds what looks like an API key"),
    ("LANGSMITH_ACCESS_POLICY", PASTED_KEY, "holds what looks like an API key"),
    # A key's body without its prefix in a path is the key all the same.
    ("LANGSMITH_ACCESS_POLICY", "policies/" + "5ec2e7" * 5 + "5e_5ec2e75ec2.yaml", "holds what looks like an API key"),
])
def test_a_value_that_holds_a_secret_is_refused_without_showing_it(variable, value, message):
    with pytest.raises(SettingsError, match=variable) as error:
        # (The org id is checked when a client is made from the settings.)
        Settings.from_env({variable: value, "LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32}).client()
    assert message in str(error.value)
    assert "5ec2e7" not in str(error.value)


@pytest.mark.parametrize(("key", "message"), [
    ("   ", "LANGSMITH_API_KEY is empty"),
    ("lsv2_pt_" + "5ec2e7" * 6, "LANGSMITH_API_KEY is a personal access token (lsv2_pt_...)"),
    ("ls__" + "5ec2e7" * 6, "LANGSMITH_API_KEY does not look like a LangSmith service key"),
    ("sk-proj-" + "5ec2e7" * 6, "LANGSMITH_API_KEY does not look like a LangSmith service key"),
])
def test_a_key_that_is_no_service_key_is_refused_before_any_request(key, message):
    # DESIGN.md section 1: refused when a client is made from the settings, with the fix.
    settings = Settings.from_env({"LANGSMITH_API_KEY": key, "LANGSMITH_ORGANIZATION_ID": ORG})
    with pytest.raises(SettingsError, match="lsv2_sk_") as error:
        settings.client()
    assert str(error.value).startswith(message)
    assert "5ec2e7" not in str(error.value)


def test_a_client_needs_the_organization_id():
    with pytest.raises(SettingsError, match="^LANGSMITH_ORGANIZATION_ID is not set: set it to your organization"):
        Settings.from_env({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32}).client()


@pytest.mark.parametrize("written", [ORG, f" {ORG}\n", ORG.upper(), "{" + ORG + "}", ORG.replace("-", ""),
                                     f'"{ORG}"', f"'{ORG}'\n"])
def test_the_organization_id_is_sent_in_its_canonical_form(written):
    # A newline from a secret file, upper case or braces from another tool: the same UUID,
    # sent as X-Organization-Id the way LangSmith writes it.
    env = {"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": written}
    assert Settings.from_env(env).client().organization_id == ORG
    # And everywhere else it goes (sync_runs.organization_id, the database's owner, review
    # sheets): the same spelling, never the newline or the quotes it was set with.
    assert Settings.from_env(env).organization_id == ORG


KEY_BODY = "0123456789abcdef" * 2 + "_" + "0123456789"  # a service key past its lsv2_sk_ prefix


def test_keys_and_their_fragments_are_cut_from_text():
    key = "lsv2_sk_" + KEY_BODY
    assert mask_keys(f"user {key} here") == "user lsv2_*** here"
    assert mask_keys(f"legacy ls__{'ab' * 16}.") == "legacy ls__***."
    # A message masked where it is made and again where it is shown: the same mask.
    assert mask_keys(mask_keys(f"user {key} and ls__{'ab' * 16}")) == "user lsv2_*** and ls__***"
    # Pasted without its prefix, in either case, it is still the key.
    assert mask_keys(f"reason: {KEY_BODY}") == mask_keys(f"reason: {KEY_BODY.upper()}") == "reason: ***"
    # The doctor's text names the prefix itself (lsv2_sk_...): kept; a server quoting a piece of
    # the key (a prefix and 12 characters or more) is cut, as is the key's body alone.
    assert mask_key_fragments(f"set a key (lsv2_sk_...), got {key[:17]}") == "set a key (lsv2_sk_...), got lsv2_***"
    assert mask_key_fragments(f"got {key[:16]}") == f"got {key[:16]}"  # too short to be a key's part
    assert mask_key_fragments(f"body {KEY_BODY.upper()}") == "body ***"


@pytest.mark.parametrize(("key", "message"), [
    ("lsv2_sk_", "LANGSMITH_API_KEY is only a key's prefix"),
    ("lsv2_sk_...", "LANGSMITH_API_KEY is only a key's prefix"),
    ("lsv2_sk_…", "LANGSMITH_API_KEY is only a key's prefix"),
    ("lsv2_sk_...5ec2", "LANGSMITH_API_KEY is a key's short form as LangSmith lists it"),
    ("lsv2_sk_5ec2…5ec2", "LANGSMITH_API_KEY is a key's short form as LangSmith lists it"),
    ("lsv2_sk_5ec2e7" * 6 + ";", "LANGSMITH_API_KEY holds characters no LangSmith key has"),
    ("lsv2_sk_5ec2e7$5ec2e7", "LANGSMITH_API_KEY holds characters no LangSmith key has"),
])
def test_a_prefix_a_short_form_or_a_stray_character_is_no_key(key, message):
    """Each passed the prefix check before, and failed only at LangSmith's 401, whose answer
    says nothing of the placeholder or the short form copied from the key listing."""
    with pytest.raises(SettingsError) as error:
        check_api_key(key)
    assert str(error.value).startswith(message)
    assert "5ec2" not in str(error.value)


def test_a_key_of_letters_digits_underscores_and_dashes_is_taken():
    check_api_key("lsv2_sk_" + KEY_BODY)
    check_api_key("lsv2_sk_" + KEY_BODY.upper() + "-x")


@pytest.mark.parametrize("quoted", ['"lsv2_sk_0123456789abcdef"', "'lsv2_sk_0123456789abcdef'", '"lsv2_pt_0123"'])
def test_a_key_kept_inside_its_quotes_is_named_so_and_never_shown(quoted):
    with pytest.raises(SettingsError, match="LANGSMITH_API_KEY holds the key inside quotes") as error:
        check_api_key(quoted)
    assert "0123" not in str(error.value)


@pytest.mark.parametrize("around", [" {} ", "{}\n", "\t{}\r\n"])
def test_whitespace_around_a_key_is_the_shells_not_the_keys(around, tmp_path):
    # A secret file or `echo` leaves a newline at the end: the key inside is the one used, from
    # LANGSMITH_API_KEY and from an orgs file's key variable alike. Inside a key it is refused.
    key = "lsv2_sk_" + "0" * 32
    assert Settings.from_env({"LANGSMITH_API_KEY": around.format(key)}).api_key.reveal() == key
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text("- slug: us\n  organization_id: 00000000-0000-4000-8000-000000000001\n"
                    "  endpoint: https://api.smith.langchain.com\n  api_key_env: LANGSMITH_API_KEY_US\n")
    [org] = load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": str(orgs), "LANGSMITH_API_KEY_US": around.format(key)})
    assert org.settings.api_key.reveal() == key
    with pytest.raises(SettingsError, match="contains whitespace"):
        check_api_key("lsv2_sk_0000 0000")


def test_langchain_endpoint_is_read_where_langsmith_endpoint_is_unset_as_the_sdks_do():
    eu = "https://eu.api.smith.langchain.com"
    assert Settings.from_env({"LANGCHAIN_ENDPOINT": eu + "/api/v1"}).endpoint == eu
    both = {"LANGCHAIN_ENDPOINT": eu, "LANGSMITH_ENDPOINT": "https://langsmith.example.com/api/v1"}
    assert Settings.from_env(both).endpoint == "https://langsmith.example.com"
    with pytest.raises(SettingsError, match="^LANGCHAIN_ENDPOINT must be an http"):
        Settings.from_env({"LANGCHAIN_ENDPOINT": "ftp://x"})
    # The key never falls back: LANGCHAIN_API_KEY is a tracing key.
    assert Settings.from_env({"LANGCHAIN_API_KEY": "lsv2_sk_x"}).api_key is None


@pytest.mark.parametrize(("raw", "value"), [("3", 3), (" 3\n", 3), ("0", 0)])
def test_max_retries_reads_as_every_other_number(raw, value):
    # A newline from a ConfigMap or an env file is no more part of this number than of the others.
    assert Settings.from_env({"LANGSMITH_ACCESS_MAX_RETRIES": raw}).max_retries == value


@pytest.mark.parametrize("raw", ["²", "-1", "2.5", "three"])
def test_a_max_retries_that_is_no_whole_number_names_the_variable(raw):
    # (A superscript digit passes str.isdigit but not int(): it was a ValueError traceback.)
    with pytest.raises(SettingsError, match="^LANGSMITH_ACCESS_MAX_RETRIES must be a whole number, 0 or more"):
        Settings.from_env({"LANGSMITH_ACCESS_MAX_RETRIES": raw})


@pytest.mark.parametrize("endpoint", ["https://lang smith.example.com/api/v1", "https://h.example/base path", "https://h.example/\x07"])
def test_an_endpoint_with_a_space_or_control_character_inside_is_refused(endpoint):
    # Not a URL: it was accepted, and every request then failed as "the connection closed".
    with pytest.raises(SettingsError, match="^LANGSMITH_ENDPOINT must be an http"):
        Settings.from_env({"LANGSMITH_ENDPOINT": endpoint})


# ------------------------------------------------- mutation survivors (each test fails on one)

README = Path(__file__).resolve().parents[1] / "README.md"
# Variables whose README default is no value ("required", "none: ..."): the field stays None.
NO_DEFAULT = {"LANGSMITH_API_KEY", "LANGSMITH_ORGANIZATION_ID", "LANGSMITH_ACCESS_POLICY",
              "LANGSMITH_ACCESS_WEBHOOK_URL"}


def test_every_default_the_readme_documents_is_the_settings_default():
    # README "Configuration" is where users read the defaults (rate budget, retries, unused days,
    # sensor interval...): a default changed in the code alone would surprise every deployment.
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`LANGSMITH_"):
            rows[cells[0].strip("`")] = cells[-1]
    defaults = Settings()
    for name, variable, parse in ENVIRONMENT:
        documented = rows[variable]  # every variable is in the table
        if variable in NO_DEFAULT:
            assert not documented.startswith("`") and getattr(defaults, name) is None, (variable, documented)
        else:
            assert documented.startswith("`"), (variable, documented)
            assert getattr(defaults, name) == parse(variable, documented.split("`")[1]), (variable, documented)


def test_unused_days_are_1_to_3650_as_documented():
    assert Settings.from_env({"LANGSMITH_ACCESS_UNUSED_DAYS": "3650"}).unused_days == 3650
    assert Settings.from_env({"LANGSMITH_ACCESS_UNUSED_DAYS": "1"}).unused_days == 1
    refused = "^LANGSMITH_ACCESS_UNUSED_DAYS must be a number of days from 1 to 3650, got '3651'"
    with pytest.raises(SettingsError, match=refused):
        Settings.from_env({"LANGSMITH_ACCESS_UNUSED_DAYS": "3651"})


def test_the_webhook_format_reads_as_every_other_value():
    # A newline from a ConfigMap or an env file is not part of the word.
    assert Settings.from_env({"LANGSMITH_ACCESS_WEBHOOK_FORMAT": " slack\n"}).webhook_format == "slack"


def test_an_endpoint_whose_port_holds_a_key_is_refused_without_showing_it():
    with pytest.raises(SettingsError, match="^LANGSMITH_ENDPOINT has an invalid port") as error:
        Settings.from_env({"LANGSMITH_ENDPOINT": f"https://langsmith.example.com:{PASTED_KEY}/api/v1"})
    assert "5ec2e7" not in str(error.value)


@pytest.mark.parametrize("port", ["0", "00", "65536"])
def test_an_endpoint_on_a_port_no_server_listens_on_is_refused(port):
    # Port 0 parses, but every request to it would fail to connect, run after run.
    with pytest.raises(SettingsError, match="^LANGSMITH_ENDPOINT has an invalid port") as error:
        Settings.from_env({"LANGSMITH_ENDPOINT": f"https://langsmith.example.com:{port}/api/v1"})
    # Says what a port may be, not only that this one is not it.
    assert str(error.value).endswith(
        ". Give a port from 1 to 65535 after the host (like https://langsmith.example.com:8443), or none "
        "for the scheme's own (443 for https)."), error.value
    assert Settings.from_env({"LANGSMITH_ENDPOINT": "https://langsmith.example.com:8443/api/v1"}).endpoint == (
        "https://langsmith.example.com:8443")


def test_a_doubled_slash_before_the_api_suffix_leaves_no_trailing_slash():
    # Every request path is appended to the origin: "https://h.example/" would make it "//api/v1".
    assert Settings.from_env({"LANGSMITH_ENDPOINT": "https://h.example//api/v1/"}).endpoint == "https://h.example"


def test_a_long_organization_id_is_cut_short_in_the_message():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32,
                           "LANGSMITH_ORGANIZATION_ID": "x" * 500}).client()
    assert f"got '{'x' * 64}…'" in str(error.value) and "x" * 65 not in str(error.value)


def test_the_cache_directory_is_its_variable_else_xdg_cache_home_else_home(tmp_path):
    # README "Configuration": LANGSMITH_ACCESS_CACHE_DIR, else $XDG_CACHE_HOME/langsmith-access.
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "langsmith-access"
    both = {"XDG_CACHE_HOME": str(tmp_path), "LANGSMITH_ACCESS_CACHE_DIR": str(tmp_path / "mine")}
    assert cache_directory(both) == tmp_path / "mine"
    assert cache_directory({}) == Path.home().absolute() / ".cache" / "langsmith-access"
    # An env file's spaces and newline are not the folder's name; spaces alone are no folder at all.
    assert cache_directory({"LANGSMITH_ACCESS_CACHE_DIR": f" {tmp_path / 'mine'}\n"}) == tmp_path / "mine"
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path), "LANGSMITH_ACCESS_CACHE_DIR": " "}) == (
        tmp_path / "langsmith-access")


def test_of_several_bad_variables_the_first_is_raised_and_the_doctor_lists_all():
    env = {"LANGSMITH_ENDPOINT": "ftp://x", "LANGSMITH_ACCESS_MAX_RETRIES": "-1"}
    with pytest.raises(SettingsError, match="^LANGSMITH_ENDPOINT must be an http"):
        Settings.from_env(env)
    problems = Settings.problems_of_env(env)
    assert problems[0].startswith("LANGSMITH_ENDPOINT must be an http")
    assert problems[1].startswith("LANGSMITH_ACCESS_MAX_RETRIES must be a whole number")


def test_a_variable_refused_as_read_is_not_also_said_to_be_unset():
    # A key pasted into the org id is refused when read; the doctor's list then said as well
    # that LANGSMITH_ORGANIZATION_ID "is not set", which it is.
    problems = Settings.problems_of_env({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32,
                                         "LANGSMITH_ORGANIZATION_ID": PASTED_KEY})
    assert len(problems) == 1 and problems[0].startswith("LANGSMITH_ORGANIZATION_ID must be the organization's UUID")
    assert "5ec2e7" not in problems[0]


@pytest.mark.parametrize(("written", "origin"), [
    ("http://api", "http://api"), ("http://api/", "http://api"), ("https://API", "https://API"),
    ("http://api/api/v1/", "http://api"), ("http://api:8080/api", "http://api:8080"),
])
def test_a_host_named_api_is_a_host_not_the_api_suffix(written, origin):
    # DESIGN.md section 8: the host root is accepted as written; a self-hosted install reached by
    # its container's or service's name ("api") was refused as "no http(s) URL".
    assert Settings.from_env({"LANGSMITH_ENDPOINT": written}).endpoint == origin


@pytest.mark.parametrize(("written", "origin"), [
    ("https://langsmith.example.com/API/V1", "https://langsmith.example.com"),
    ("https://eu.api.smith.langchain.com/Api/v1/", "https://eu.api.smith.langchain.com"),
    ("https://example.com/ls/API", "https://example.com/ls"),
])
def test_the_api_suffix_is_the_suffix_in_any_case(written, origin):
    # Kept, a /API/V1 written in capitals became a base path: every request went to
    # /API/V1/api/v1/... and missed the API.
    assert Settings.from_env({"LANGSMITH_ENDPOINT": written}).endpoint == origin


@pytest.mark.parametrize("written", ["https://langsmith.example.com/api/v1?", "https://langsmith.example.com/api/v1#",
                                     "https://langsmith.example.com?/api/v1"])
def test_an_endpoint_with_an_empty_query_or_fragment_is_refused(written):
    # Kept, every request went to <endpoint>?/api/v1/... (or #/api/v1/...): to the URL's path
    # alone, the route in its query or fragment, so the checks blamed the wrong thing.
    with pytest.raises(SettingsError, match="LANGSMITH_ENDPOINT must be the API's base URL without a query or fragment"):
        Settings.from_env({"LANGSMITH_ENDPOINT": written})


@pytest.mark.parametrize("path", ["ls__archive/langsmith_access.duckdb", "data/lsv2_notes.duckdb", "data/x.duckdb"])
def test_a_path_that_merely_mentions_a_key_prefix_is_a_path(path):
    settings = Settings.from_env({"LANGSMITH_ACCESS_DUCKDB": path, "LANGSMITH_ACCESS_POLICY": path})
    assert settings.duckdb_path == settings.policy_path == Path(path)


@pytest.mark.parametrize("variable", ["LANGSMITH_ACCESS_TIMEOUT_SECONDS", "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS"])
def test_seconds_past_an_hour_are_refused_naming_the_variable(variable):
    # 9999999999 ("never") was taken, then every request failed in the socket layer with an
    # OverflowError naming no variable, while the doctor (its own timeout capped) said all was ok.
    assert Settings.from_env({variable: "3600"}) == Settings.from_env({variable: "3600.0"})
    for bad in ("3600.5", "30000", "9999999999", "1e300"):
        with pytest.raises(SettingsError, match=f"^{variable} must be a number of seconds from more than 0 to 3600"):
            Settings.from_env({variable: bad})


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quotes_an_env_file_kept_around_a_path_or_the_webhook_url_are_not_part_of_it(tmp_path, quote):
    # `docker run --env-file` passes LANGSMITH_ACCESS_DUCKDB="data/x.duckdb" with its quotes: read
    # as typed, the sync wrote a database under a folder named '"data' that no analyst opens, and
    # a quoted webhook URL was refused as "not an http(s) URL" without a word about the quotes.
    database, policy, url = tmp_path / "a.duckdb", tmp_path / "policy.yaml", "https://hooks.example.com/T0/B0/x"
    settings = Settings.from_env({
        "LANGSMITH_ACCESS_DUCKDB": f"{quote}{database}{quote}", "LANGSMITH_ACCESS_POLICY": f" {quote}{policy}{quote}\n",
        "LANGSMITH_ACCESS_WEBHOOK_URL": f"{quote}{url}{quote}",
    })
    assert (settings.duckdb_path, settings.policy_path) == (database, policy)
    assert settings.webhook_url == Secret(url)
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("- slug: us\n  organization_id: 00000000-0000-4000-8000-000000000001\n"
                         "  endpoint: https://api.smith.langchain.com\n  api_key_env: KEY_US\n", encoding="utf-8")
    orgs = load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": f"{quote}{orgs_file}{quote}", "KEY_US": "lsv2_sk_" + "a" * 20,
                      "LANGSMITH_ACCESS_DUCKDB": str(database)})
    assert orgs.source == orgs_file and orgs.slugs == ("us",)
    with pytest.raises(SettingsError, match="LANGSMITH_ACCESS_DUCKDB is blank"):
        Settings.from_env({"LANGSMITH_ACCESS_DUCKDB": f"{quote}{quote}"})


def test_a_cache_directory_under_home_written_with_a_tilde_is_under_home(monkeypatch, tmp_path):
    # An env file or a systemd unit does not expand "~": read as typed it is a folder named "~"
    # in whatever directory the process runs in.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_directory({"LANGSMITH_ACCESS_CACHE_DIR": "~/cache"}) == tmp_path / "cache"


def test_quotes_an_env_file_kept_around_the_cache_directory_are_not_part_of_it(tmp_path):
    # As in the path variables: read as typed, '"/srv/cache"' was a folder named '"' in the
    # working directory, and dbt's manifest was rebuilt there.
    for written in (f'"{tmp_path}/cache"', f"'{tmp_path}/cache'\n"):
        assert cache_directory({"LANGSMITH_ACCESS_CACHE_DIR": written}) == tmp_path / "cache"
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path), "LANGSMITH_ACCESS_CACHE_DIR": '""'}) == (
        tmp_path / "langsmith-access")


def test_settings_made_in_code_send_the_organization_id_in_its_canonical_form():
    # from_env canonicalizes; settings another caller builds (the runner, a script) go through
    # client() all the same.
    settings = Settings(api_key=Secret("lsv2_sk_" + "0" * 32), organization_id="{" + ORG.upper() + "}")
    assert settings.client().organization_id == ORG
    # Quotes kept around it (copied from an env file): the UUID inside, as from_env reads it.
    quoted = Settings(api_key=Secret("lsv2_sk_" + "0" * 32), organization_id=f"'{ORG}'\n")
    assert quoted.client().organization_id == ORG


def test_a_path_variable_or_an_orgs_policy_written_with_a_tilde_is_under_home(monkeypatch, tmp_path):
    # As LANGSMITH_ACCESS_CACHE_DIR: an env file or a systemd unit does not expand "~", and read
    # as typed the sync wrote its database under a folder named "~" in the working directory.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    settings = Settings.from_env({"LANGSMITH_ACCESS_DUCKDB": "~/data/a.duckdb", "LANGSMITH_ACCESS_POLICY": "~/p.yaml"})
    assert (settings.duckdb_path, settings.policy_path) == (home / "data" / "a.duckdb", home / "p.yaml")
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("- slug: us\n  organization_id: 00000000-0000-4000-8000-000000000001\n"
                         "  endpoint: https://api.smith.langchain.com\n  api_key_env: KEY_US\n  policy: ~/us.yaml\n",
                         encoding="utf-8")
    orgs = load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": "~/../orgs.yaml", "KEY_US": "lsv2_sk_" + "a" * 20,
                      "LANGSMITH_ACCESS_DUCKDB": "~/data/a.duckdb"})
    assert orgs.source == home / ".." / "orgs.yaml"
    assert orgs.get("us").policy_path == home / "us.yaml"
    assert orgs.get("us").duckdb_path == home / "data" / "us" / "langsmith_access.duckdb"


@pytest.mark.parametrize("pasted", [PASTED_KEY, "5ec2e7" * 5 + "5e_5ec2e75ec2"])
def test_a_key_pasted_into_the_organization_id_is_refused_when_read_not_kept(pasted):
    # Kept as set until a client was made, it was in the repr of the settings and of their org.
    with pytest.raises(SettingsError, match="^LANGSMITH_ORGANIZATION_ID must be the organization's UUID") as error:
        Settings.from_env({"LANGSMITH_ORGANIZATION_ID": pasted})
    assert "5ec2e7" not in str(error.value)
    # Anything else that is no UUID is still kept, for commands that call no API.
    assert Settings.from_env({"LANGSMITH_ORGANIZATION_ID": "my-org"}).organization_id == "my-org"


@pytest.mark.parametrize("quote", ['"', "'"])
def test_every_variable_reads_the_value_inside_one_pair_of_quotes(tmp_path, quote):
    # Some .env loaders (and `docker run --env-file`) keep the quotes: LANGSMITH_ACCESS_UNUSED_DAYS="90"
    # was refused as "not a positive whole number", while a quoted path was read as the path.
    written = {
        "LANGSMITH_ENDPOINT": "https://eu.api.smith.langchain.com",
        "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb"),
        "LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32,
        "LANGSMITH_ORGANIZATION_ID": ORG,
        "LANGSMITH_ACCESS_REQUESTS_PER_MINUTE": "600",
        "LANGSMITH_ACCESS_MAX_CONCURRENCY": "4",
        "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "12.5",
        "LANGSMITH_ACCESS_MAX_RETRIES": "2",
        "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS": "30",
        "LANGSMITH_ACCESS_SYNC_CRON": "15 */2 * * *",
        "LANGSMITH_ACCESS_INVENTORY_CRON": "@daily",
        "LANGSMITH_ACCESS_MAX_SHRINK_SHARE": "0.5",
        "LANGSMITH_ACCESS_UNUSED_DAYS": "30",
        "LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS": "10",
        "LANGSMITH_ACCESS_POLICY": str(tmp_path / "policy.yaml"),
        "LANGSMITH_ACCESS_WEBHOOK_URL": "https://hooks.example.com/T0/B0/x",
        "LANGSMITH_ACCESS_WEBHOOK_FORMAT": "slack",
        "LANGSMITH_ACCESS_EXPIRY_WARNING": "2h",
    }
    assert set(written) == {variable for _, variable, _ in ENVIRONMENT}
    plain = Settings.from_env(written)
    for field in dataclasses.fields(Settings):  # each value read, not a default that matched
        assert getattr(plain, field.name) != getattr(Settings(), field.name), field.name
    assert Settings.from_env({variable: f"{quote}{value}{quote}" for variable, value in written.items()}) == plain
    assert Settings.from_env({variable: f" {quote}{value}{quote}\n" for variable, value in written.items()}) == plain
    # An orgs file's key variable alike; a key is still never shown when a quoted value is refused.
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(f"- slug: us\n  organization_id: {ORG}\n  endpoint: https://api.smith.langchain.com\n"
                         "  api_key_env: KEY_US\n", encoding="utf-8")
    [org] = load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": str(orgs_file), "KEY_US": f"{quote}{written['LANGSMITH_API_KEY']}{quote}"})
    assert org.settings.api_key == plain.api_key
    with pytest.raises(SettingsError, match="^LANGSMITH_ACCESS_UNUSED_DAYS must be a positive whole number") as error:
        Settings.from_env({"LANGSMITH_ACCESS_UNUSED_DAYS": f"{quote}{written['LANGSMITH_API_KEY']}{quote}"})
    assert "0" * 32 not in str(error.value)


def test_max_concurrency_is_1_to_100_as_documented():
    # Unbounded, 10000 started 10000 threads and connections to wait on a rate limit that 100
    # calls in flight already reach (1000 requests per 10 s per key).
    variable = "LANGSMITH_ACCESS_MAX_CONCURRENCY"
    assert Settings.from_env({variable: "100"}).max_concurrency == 100
    assert Settings.from_env({variable: "1"}).max_concurrency == 1
    with pytest.raises(SettingsError) as error:
        Settings.from_env({variable: "101"})
    assert str(error.value).startswith(f"{variable} must be a whole number from 1 to 100, got '101': ")
    assert "set it to 100 or less, or unset it for the default (8)" in str(error.value)
    for bad in ("0", "-1", "10000", "eight"):
        with pytest.raises(SettingsError, match=f"^{variable} must be a whole number from 1 to 100, got '{bad}'"):
            Settings.from_env({variable: bad})
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"| `{variable}` | parallel calls when reading workspace by workspace (1 to 100:" in readme


@pytest.mark.parametrize("written", ["{long}", "{link}", "{link}/a.duckdb", "{loop}", "{loop}/a.duckdb"])
def test_a_database_path_that_cannot_be_looked_at_names_the_variable(tmp_path, written):
    # A name past the file system's 255 bytes, or a symlink to one (ENAMETOOLONG): a bare OSError,
    # naming no variable, stopped every command, and the doctor too. Two symlinks to each other
    # (ELOOP): `requests` said no database was there yet, `request grant` printed the OSError.
    (tmp_path / "link").symlink_to("a" * 300)
    (tmp_path / "loop").symlink_to(tmp_path / "back")
    (tmp_path / "back").symlink_to(tmp_path / "loop")
    path = written.format(long=tmp_path / ("b" * 300), link=tmp_path / "link", loop=tmp_path / "loop")
    variable = "LANGSMITH_ACCESS_DUCKDB"
    expected = f"^{variable} is {re.escape(path)}, which cannot be looked at \\(.+\\): point it at a database file"
    with pytest.raises(SettingsError, match=expected):
        Settings.from_env({variable: path})
    [problem] = Settings.problems_of_env({variable: path, "LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32,
                                          "LANGSMITH_ORGANIZATION_ID": ORG})
    assert re.match(expected, problem)


@pytest.mark.parametrize(("written", "suffix", "base"), [
    ("https://api.smith.langchain.com/api/v1/platform", "/api/v1/platform", "https://api.smith.langchain.com"),
    ("https://eu.api.smith.langchain.com/api/v1/platform/", "/api/v1/platform", "https://eu.api.smith.langchain.com"),
    (" https://api.smith.langchain.com/v1/platform\n", "/v1/platform", "https://api.smith.langchain.com"),
    ("https://example.com/ls/API/v1/Platform", "/api/v1/platform", "https://example.com/ls"),
])
def test_an_endpoint_ending_in_the_platform_routes_prefix_is_refused_with_the_value_to_set(tmp_path, written,
                                                                                        suffix, base):
    # Kept as a base path, every request went to .../platform/api/v1/... and missed the API (a
    # 404, or a self-hosted UI's page), however the doctor worded it.
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"LANGSMITH_ENDPOINT": written})
    assert str(error.value).startswith(f"LANGSMITH_ENDPOINT ends in {suffix}, the prefix of LangSmith's platform routes")
    assert f"set it to {base} or {base}/api/v1, as for LangChain's SDKs" in str(error.value)
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(f"- slug: us\n  organization_id: {ORG}\n  endpoint: {written.strip()}\n"
                         "  api_key_env: KEY_US\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=f"slug 'us': endpoint ends in {suffix}"):
        load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": str(orgs_file), "KEY_US": "lsv2_sk_" + "0" * 32})
    # The API's own base (and a host or base path merely named "platform") is still taken.
    assert Settings.from_env({"LANGSMITH_ENDPOINT": f"{base}/api/v1"}).endpoint == base
    assert Settings.from_env({"LANGSMITH_ENDPOINT": "http://platform/platform"}).endpoint == "http://platform/platform"


def test_an_endpoint_ending_in_the_platform_prefix_never_shows_a_key_in_the_value_to_set():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"LANGSMITH_ENDPOINT": f"https://example.com/{PASTED_KEY}/api/v1/platform"})
    assert PASTED_KEY[8:20] not in str(error.value) and "(not shown)" in str(error.value)


@pytest.mark.parametrize(("variable", "most", "field"), [
    ("LANGSMITH_ACCESS_REQUESTS_PER_MINUTE", 1_000_000, "requests_per_minute"),
    ("LANGSMITH_ACCESS_MAX_RETRIES", 100, "max_retries"),
    ("LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", 86_400, "provisioning_interval_seconds"),
])
def test_whole_numbers_past_any_sensible_value_are_refused_naming_the_variable(variable, most, field):
    # Unbounded, a requests-per-minute of 401 digits loaded and then overflowed the client's pacer
    # (OverflowError, naming no variable); 10**30 retries or a sensor interval of 10**30 seconds
    # loaded as if meant.
    assert getattr(Settings.from_env({variable: str(most)}), field) == most
    for bad in (str(most + 1), "1" * 401):
        with pytest.raises(SettingsError) as error:
            Settings.from_env({variable: bad})
        message = str(error.value)
        assert message.startswith(f"{variable} must be a whole number from ") and f" to {most}, got " in message


@pytest.mark.parametrize(("variable", "least", "field"), [
    ("LANGSMITH_ACCESS_REQUESTS_PER_MINUTE", 1, "requests_per_minute"),
    ("LANGSMITH_ACCESS_MAX_CONCURRENCY", 1, "max_concurrency"),
    ("LANGSMITH_ACCESS_MAX_RETRIES", 0, "max_retries"),
    ("LANGSMITH_ACCESS_UNUSED_DAYS", 1, "unused_days"),
    ("LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", 1, "provisioning_interval_seconds"),
])
def test_whole_numbers_below_their_documented_range_are_refused_naming_the_variable(variable, least, field):
    # README gives each range ("1 to 86400", "0 to 100"...): its least value is taken, one less is
    # refused naming the variable (a sensor interval of 0 loaded as if meant).
    assert getattr(Settings.from_env({variable: str(least)}), field) == least
    with pytest.raises(SettingsError, match=f"^{variable} must be "):
        Settings.from_env({variable: str(least - 1)})
