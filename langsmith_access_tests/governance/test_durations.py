"""Durations: ``<n>s|m|h|d`` with n >= 1, never beyond the 365-day ceiling."""

from datetime import timedelta

import pytest

from langsmith_access.governance.durations import CEILING, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(("text", "expected"), [
    ("45s", timedelta(seconds=45)),
    ("30m", timedelta(minutes=30)),
    ("8h", timedelta(hours=8)),
    ("90d", timedelta(days=90)),
    ("365d", CEILING),
    ("8760h", CEILING),
    (" 1h ", timedelta(hours=1)),
])
def test_valid_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("0s", "is zero"),
    ("0d", "is zero"),
    ("-1h", "is not a duration"),
    ("9999d", "longer than the ceiling of 365d"),
    ("366d", "longer than the ceiling of 365d"),
    ("31536001s", "longer than the ceiling of 365d"),
    ("abc", "is not a duration"),
    ("1.5h", "is not a duration"),
    ("8 h", "is not a duration"),
    ("1h30m", "is not a duration"),
    ("2w", "is not a duration"),  # weeks are not a unit: 14d
    ("8H", "is not a duration"),
    ("", "is not a duration"),
    ("٣h", "is not a duration"),  # a non-ASCII digit
    (72, "must be a duration like 8h"),
    (None, "must be a duration like 8h"),
])
def test_bad_durations_are_refused_naming_what_and_how(text, reason):
    with pytest.raises(DurationError) as error:
        parse_duration(text, "approval.wait_at_most")
    message = str(error.value)
    assert reason in message
    assert message.startswith("approval.wait_at_most")
    if reason == "is zero":  # any unit's 1 is allowed, not only a unit as long as the one written
        assert "with n at least 1" in message and "at least 1d" not in message


def test_format_is_the_shortest_exact_form():
    assert [format_duration(parse_duration(t)) for t in ("3600s", "120m", "48h", "45s", "90m")] == [
        "1h", "2h", "2d", "45s", "90m"]
    # Zero (a recorded duration of 0 seconds ends at once) reads as seconds, not as days.
    assert format_duration(timedelta(0)) == "0s"


def test_a_long_value_is_quoted_by_its_start_and_length_not_whole():
    # A file pasted into --duration (or LANGSMITH_ACCESS_EXPIRY_WARNING) was echoed whole, the
    # format hint lost after 100,000 characters of it.
    with pytest.raises(DurationError) as error:
        parse_duration("8h " * 40_000, "--duration")
    assert str(error.value) == (f"--duration {('8h ' * 27)[:80]!r}… (120000 characters) is not a duration: write "
                                "<n>s, <n>m, <n>h or <n>d with n at least 1, e.g. 45s, 30m, 8h, 90d.")


@pytest.mark.parametrize("pasted", ["lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789",
                                    "0123456789abcdef" * 2 + "_0123456789"])
def test_a_key_pasted_as_a_duration_is_not_quoted(pasted):
    # A key pasted into --duration or a policy's duration (with or without its prefix) is named
    # as one, the way every other refused value is (quoting.shown): never repeated.
    with pytest.raises(DurationError) as error:
        parse_duration(pasted, "--duration")
    assert str(error.value) == ("--duration a value holding what looks like an API key (not shown) is not a duration: "
                                "write <n>s, <n>m, <n>h or <n>d with n at least 1, e.g. 45s, 30m, 8h, 90d.")
    assert "0123456789abcdef" not in str(error.value)
