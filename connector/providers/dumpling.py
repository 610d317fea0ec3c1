"""Dumpling AI: the seed API itself (``POST /api/v1/get-tiktok-*``, Bearer key).

Cursors are numbers (``minCursor`` -> ``minTime``); ``requestSource`` is forwarded. Error
bodies come as ``{"error": "text"}`` or ``{"error": {"code", "message"}, "status": "error"}``.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..config import URL, Setting, Settings
from ..errors import UpstreamError, kind_for_status
from ..records import Page, profile_record, user_records
from .base import Provider
from .http import UpstreamHTTP, response_json

PATHS = {
    "profile": "/api/v1/get-tiktok-profile",
    "followers": "/api/v1/get-tiktok-user-followers",
    "following": "/api/v1/get-tiktok-user-following",
}
LIST_KEYS = {"followers": "followers", "following": "followingList"}


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', '')} {error.get('message', '')}".strip()
        if error is not None:
            return str(error)
    return str(body)[:200]


class DumplingProvider(Provider):
    name = "dumpling"
    cursor_form = "a number"
    page_credits = 1  # the seed: "This endpoint costs 1 credit per successful request"
    own_settings = (
        Setting("DUMPLING_API_KEY", help="Dumpling AI API key (`sk_…`)", secret=True, credential=True),
        Setting("DUMPLING_BASE_URL", "https://app.dumplingai.com", "Dumpling AI base URL", URL()),
    )

    def __init__(self, api_key: str, base_url: str, *, settings: Settings | None = None,
                 caller_key: bool = False, transport: httpx.BaseTransport | None = None):
        self.api_key = api_key
        self.caller_key = caller_key
        self.http = UpstreamHTTP(base_url, provider=self.name, settings=settings, transport=transport,
                                 headers={"Authorization": f"Bearer {api_key}"}, secrets=(api_key,))

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "DumplingProvider":
        if not credentials:
            cls.require_credentials(settings)
        key = credentials or settings.dumpling_api_key
        return cls(key, settings.dumpling_base_url, settings=settings, caller_key=bool(credentials))

    def accepts_cursor(self, cursor: Any) -> bool:
        # The manifest hands digit strings over as ints; anything else would only make
        # Dumpling answer "reported an issue" (or a 5xx) for what is the caller's mistake.
        if isinstance(cursor, str):
            return cursor.isascii() and cursor.isdigit()
        return isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def close(self) -> None:
        self.http.close()

    # -- wire ------------------------------------------------------------------

    def _post(self, which: str, body: dict) -> dict:
        response = self.http.request("POST", PATHS[which], json=body)
        if response.status_code != 200:
            self._raise_for(response)
        try:
            data = response_json(response)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamError("invalid_data", f"non-JSON body from {which}", provider=self.name) from None
        if not isinstance(data, dict):
            raise UpstreamError("invalid_data", f"{which} body is not an object", provider=self.name)
        return data

    def _raise_for(self, response: httpx.Response) -> None:
        status = response.status_code
        text = _error_text(response)
        kind = kind_for_status(status)
        if status == 400 and "could not process" in text.lower():
            kind = "could_not_process"
        elif status in (401, 403) and self.caller_key:
            kind = "provider_key_rejected"
        elif status == 403 and "credit" in text.lower():
            # The operator's Dumpling account is out of credits: not the caller's fault.
            kind = "unavailable"
        elif status == 500 and "not configured" in text.lower():
            kind = "unavailable"
        elif status == 503:
            # The seed documents 503 as "Rate limit exceeded with an upstream service".
            kind = "rate_limited"
        raise UpstreamError(kind, f"HTTP {status}: {text}", provider=self.name,
                            retry_after=response.extensions.get("retry_after"))

    # -- actions -----------------------------------------------------------------

    def get_profile(self, handle: str, *, request_source: str = "API") -> dict:
        data = self._post("profile", {"handle": handle, "requestSource": request_source})
        user, stats = data.get("user"), data.get("stats")
        if not isinstance(user, dict) or not isinstance(stats, dict):
            raise UpstreamError("invalid_data", "profile without user/stats objects", provider=self.name)
        items = data.get("itemList")
        return profile_record(user, stats, items if isinstance(items, list) else [])

    def _list(self, which: str, handle: str, cursor: Any, count: int | None, request_source: str) -> Page:
        body: dict = {"handle": handle, "requestSource": request_source}
        if cursor is not None:
            body["minTime"] = cursor
        if count is not None:
            body["count"] = count
        data = self._post(which, body)
        entries = data.get(LIST_KEYS[which])
        records = user_records(entries) if isinstance(entries, list) else None
        if records is None:
            raise UpstreamError("invalid_data", f"{which} list missing or malformed", provider=self.name)
        has_more = data.get("hasMore")
        if not isinstance(has_more, bool):
            has_more = bool(has_more) if has_more in (0, 1) else bool(entries)
        total = data.get("total")
        return Page(
            records=records,
            next_cursor=data.get("minCursor"),
            max_cursor=data.get("maxCursor"),
            has_more=has_more,
            total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        )

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._list("followers", handle, cursor, count, request_source)

    def list_following(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._list("following", handle, cursor, count, request_source)
