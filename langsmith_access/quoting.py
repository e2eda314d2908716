"""How a message quotes a value someone gave us (a variable, an argument, a file's field).

A leaf module (it imports nothing of ours) so that every module that refuses a value quotes it the
same way, ``settings`` and the duration parser it imports included: at most the value's start and
its length, and never what looks like an API key pasted into the wrong place.
"""

from __future__ import annotations

import re

# What LangSmith keys start with (service keys, personal tokens, legacy keys): a value like
# this in the orgs file is a pasted key.
KEY_PREFIXES = ("lsv2_", "ls__")
# Put after a key prefix in a pattern that finds keys: not the product's own help text, which names
# a key by its shape ("an organization-scoped service key (lsv2_sk_...)"). No key holds a '.', so
# this spares the fix a message gives (masked, it read "(<key>...)") and never any key's characters.
NOT_A_KEY_SHAPE = r"(?![a-z]{2,4}_\.\.\.)"
# A key's secret part without its prefix (``lsv2_sk_`` and ``lsv2_pt_`` keys are the prefix, 32
# hex digits, ``_`` and 10 more): pasted without the prefix, it is still the key.
KEY_BODY = re.compile(r"(?<![A-Za-z0-9])[0-9a-fA-F]{32}_[0-9a-fA-F]{10}(?![A-Za-z0-9])")

# The most of a value a message quotes: a file's content pasted into a variable (or a value of
# 100,000 characters) was echoed whole, the message's fix lost after it.
SHOWN_AT_MOST = 80


def holds_key(raw: str) -> bool:
    """Whether ``raw`` holds what looks like an API key: a key prefix, or a key's secret part."""
    return any(prefix in raw for prefix in KEY_PREFIXES) or KEY_BODY.search(raw) is not None


def shown(raw: str) -> str:
    """``raw`` quoted for a message (its start, and its length, when it is long), unless it holds
    what looks like an API key (someone pasted one into the wrong variable or argument): then only
    that, never the value."""
    if holds_key(raw):
        return "a value holding what looks like an API key (not shown)"
    if len(raw) > SHOWN_AT_MOST:
        return f"{raw[:SHOWN_AT_MOST]!r}… ({len(raw)} characters)"
    return repr(raw)


def named(raw: str) -> str:
    """``raw`` as it is (a path, an entry's key), unless it holds what looks like an API key: then
    what ``shown`` says instead."""
    return shown(raw) if holds_key(raw) else raw
