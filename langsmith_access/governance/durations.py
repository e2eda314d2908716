"""Durations as the policy file and the command line write them: ``<n>s|m|h|d``, n >= 1.

``8h``, ``90d``, ``30m``, ``45s``. Nothing else: no sign, no fractions, no combinations
(``1h30m``), no spaces inside. Every duration is at most ``CEILING`` (365 days), the longest
access this project grants, with or without a policy.
"""

from __future__ import annotations

import re
from datetime import timedelta

from langsmith_access.quoting import shown

CEILING = timedelta(days=365)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+)([smhd])")
FORMAT_HINT = "write <n>s, <n>m, <n>h or <n>d with n at least 1, e.g. 45s, 30m, 8h, 90d"


class DurationError(ValueError):
    """Text that is not a duration of this format, or one outside 1 s .. 365 days."""


def parse_duration(text: object, what: str = "duration") -> timedelta:
    """The duration ``text`` writes, or ``DurationError`` naming ``what`` and the fix."""
    if not isinstance(text, str):
        raise DurationError(f"{what} must be a duration like 8h or 90d, got {text!r}: {FORMAT_HINT}.")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise DurationError(f"{what} {shown(text)} is not a duration: {FORMAT_HINT}.")
    count, unit = int(match.group(1)), match.group(2)
    if count < 1:
        raise DurationError(f"{what} {text!r} is zero: {FORMAT_HINT}.")
    seconds = count * UNITS[unit]
    if seconds > CEILING.total_seconds():
        raise DurationError(
            f"{what} {text!r} is longer than the ceiling of {format_duration(CEILING)}: "
            "no access is granted for longer."
        )
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The shortest exact form in this format (``timedelta(hours=8)`` -> ``8h``)."""
    seconds = int(duration.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
