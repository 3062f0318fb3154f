"""Text as it enters Lorebot: no NUL and no unpaired surrogate ever reaches the database or a log.

PostgreSQL's text columns refuse NUL (SQLite keeps it), and an unpaired UTF-16 surrogate (a JSON
"\\ud800" escape with no partner) cannot be encoded as UTF-8 at all. Free text (a question, a
bot message) is cleaned: NUL carries no meaning in it and is dropped, an unpaired surrogate
becomes U+FFFD, the replacement character. A value that names something (a conversation key,
a form or query field, a password) would name something else once cleaned, so it is refused
instead (`text_problem`).
"""

from __future__ import annotations

import re

# Python keeps a JSON surrogate pair as one code point; any surrogate left in a str is unpaired.
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """Free text without NUL characters and with unpaired surrogates replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _SURROGATE.sub(REPLACEMENT, value)


def text_problem(value: str) -> str:
    """Why a value that names something cannot be stored as it is ("" when it can)."""
    if "\x00" in value:
        return "contains a NUL character"
    surrogate = _SURROGATE.search(value)
    if surrogate:
        return f"contains an unpaired surrogate (U+{ord(surrogate.group()):04X})"
    return ""
