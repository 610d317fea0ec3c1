"""TikTok handles: accept what users paste, keep one canonical form.

``@Name``, ``name``, ``https://www.tiktok.com/@name``, ``tiktok.com/@name/video/123?lang=en``
all become ``name``. TikTok usernames are letters, digits, ``_`` and ``.``, case-insensitive.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_URL = re.compile(r"^(?:https?://)?(?:[a-z0-9-]+\.)*tiktok\.com/@([^/?#\s]+)", re.IGNORECASE)
_HANDLE = re.compile(r"[a-z0-9_.]{1,30}")


def normalize_handle(raw: str) -> str | None:
    """The canonical handle, or None when ``raw`` cannot be a TikTok username."""
    text = raw.strip()
    match = _URL.match(text)
    if match:
        text = unquote(match.group(1))
    elif text.startswith("@"):
        text = text[1:]
    text = text.lower()
    if not _HANDLE.fullmatch(text) or text.strip(".") == "" or text.endswith("."):
        return None
    return text


def profile_url(handle: str) -> str:
    return f"https://www.tiktok.com/@{handle}"
