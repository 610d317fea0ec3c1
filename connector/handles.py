"""TikTok handles: accept what users paste, keep one canonical form.

``@Name``, ``name``, ``https://www.tiktok.com/@name``, ``tiktok.com/@name/video/123?lang=en``
all become ``name``. TikTok usernames are letters, digits, ``_`` and ``.``, case-insensitive.
:func:`handle_problem` says what is wrong with one that is not, for the caller to fix.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# TikTok's sign-up form allows 2-24 characters; the connector accepts up to 30 (as it always
# has) and leaves the rest to the upstream.
MAX_HANDLE_LENGTH = 30
HANDLE_RULE = (f"A TikTok handle is 1 to {MAX_HANDLE_LENGTH} letters (a-z), digits (0-9), underscores (_) "
               "or periods (.), not ending with a period, written as name, @name or "
               "https://www.tiktok.com/@name")

_URL = re.compile(r"^(?:https?://)?(?:[a-z0-9-]+\.)*tiktok\.com/@([^/?#\s]+)", re.IGNORECASE)
_HANDLE = re.compile(rf"[a-z0-9_.]{{1,{MAX_HANDLE_LENGTH}}}")
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.")


def _candidate(raw: str) -> str:
    """``raw`` without what users paste around a handle (spaces at the ends, ``@``, the URL)."""
    text = raw.strip()
    match = _URL.match(text)
    if match:
        text = unquote(match.group(1))
    elif text.startswith("@"):
        text = text[1:]
    return text.lower()


def normalize_handle(raw: str) -> str | None:
    """The canonical handle, or None when ``raw`` cannot be a TikTok username."""
    text = _candidate(raw)
    if not _HANDLE.fullmatch(text) or text.strip(".") == "" or text.endswith("."):
        return None
    return text


def handle_problem(raw: str) -> str:
    """What is wrong with a handle :func:`normalize_handle` refused, and the rule to follow."""
    text = _candidate(raw)
    bad = next((c for c in text if c not in _ALLOWED), None)
    problems = []
    if not text:
        problems.append("is empty")
    elif "://" in text or text.startswith("www."):
        problems.append("is a link to another site than tiktok.com")
    elif bad is not None:
        shown = ("a space" if bad.isspace() else repr(bad) if bad.isprintable()
                 else f"the character U+{ord(bad):04X}")
        problems.append(f"contains {shown}")
    if len(text) > MAX_HANDLE_LENGTH:
        problems.append(f"is {len(text)} characters long")
    if not problems:
        problems.append("ends with a period")
    return f"{HANDLE_RULE}; this one {' and '.join(problems)}."


def profile_url(handle: str) -> str:
    return f"https://www.tiktok.com/@{handle}"
