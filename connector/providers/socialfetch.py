"""Social Fetch: ``GET /v1/tiktok/profiles/{handle}[/followers|/following]``, ``x-api-key``.

Wire facts (``seeds/socialfetch-followers.txt`` and UPSTREAMS.md):

- Accounts that cannot be listed come back as HTTP 200 with ``data.lookupStatus``
  ``hidden``, ``private`` or ``not_found`` and an empty list: that is our ``not_found``.
  A profile's ``lookupStatus`` is ``found``, ``private`` (profile and metrics still given,
  so it is returned like Dumpling returns private profiles) or ``not_found``.
- Failures use ``{"error": {"code", "message"}}``; the HTTP status of each code is not
  documented, so the code decides and the status only refines (see :meth:`_raise_for`).
- The cursor is opaque: ``data.page.nextCursor`` is surfaced as ``minCursor`` and comes back
  as ``minTime``. Pages have the upstream's size; ``count`` cannot be honoured (cutting a
  page short would skip the rest of it, since the cursor points past its last item).
- ``meta.creditsCharged`` (and ``requestId``) go to ``Page.meta``.
- ``trim=true`` is not sent: it drops ``bio`` and ``avatarUrls``, which become ``signature``
  and ``avatarThumb``, so it saves bytes only by losing fields the records carry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from ..config import URL, Setting, Settings
from ..errors import UpstreamError, kind_for_status
from ..records import Page, as_int, as_text, profile_record, user_record
from .base import Provider
from .http import UpstreamHTTP, read_json

PROFILE_PATH = "/v1/tiktok/profiles/{handle}"
LIST_KEYS = {"followers": ("followers", "totalFollowers"), "following": ("accounts", "totalFollowing")}
LIST_STATUSES = frozenset({"found", "hidden", "private", "not_found"})
PROFILE_STATUSES = frozenset({"found", "private", "not_found"})



def _id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return as_text(value) or None



def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _avatars(item: dict) -> dict:
    urls = item.get("avatarUrls")
    return urls if isinstance(urls, dict) else {}


def _unix(value: Any) -> int | None:
    """``accountCreatedAt`` (ISO 8601) as unix seconds, like the seed's ``createTime``."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _user(item: dict) -> dict:
    """The seed's follower ``user`` fields from a Social Fetch account item."""
    return {
        "id": _id(item.get("platformUserId")),
        "uniqueId": as_text(item.get("handle")),
        "nickname": as_text(item.get("displayName")),
        "avatarThumb": as_text(_avatars(item).get("thumb")),
        "signature": as_text(item.get("bio")),
        "verified": _bool(item.get("verified")),
        "secUid": as_text(item.get("secUid")),
        "privateAccount": _bool(item.get("privateAccount")),
    }


class SocialFetchProvider(Provider):
    name = "socialfetch"
    own_settings = (
        Setting("SOCIALFETCH_API_KEY", help="Social Fetch API key (`sfk_…`)", secret=True, credential=True),
        Setting("SOCIALFETCH_BASE_URL", "https://api.socialfetch.dev", "Social Fetch base URL", URL()),
    )

    def __init__(self, api_key: str, base_url: str, *, settings: Settings | None = None,
                 caller_key: bool = False, transport: httpx.BaseTransport | None = None):
        self.api_key = api_key
        self.caller_key = caller_key
        self.http = UpstreamHTTP(base_url, provider=self.name, settings=settings, transport=transport,
                                 headers={"x-api-key": api_key}, secrets=(api_key,))

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "SocialFetchProvider":
        if not credentials:
            cls.require_credentials(settings)
        key = credentials or settings.socialfetch_api_key
        return cls(key, settings.socialfetch_base_url, settings=settings, caller_key=bool(credentials))

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def close(self) -> None:
        self.http.close()

    # -- wire ------------------------------------------------------------------

    def _get(self, what: str, path: str, params: dict | None = None) -> dict:
        response = self.http.request("GET", path, params=params)
        if response.status_code != 200:
            self._raise_for(response)
        body = read_json(response, what, self.name)
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpstreamError("invalid_data", f"{what}: no data object", provider=self.name)
        return body

    def _raise_for(self, response: httpx.Response) -> None:
        status = response.status_code
        code, message = "", ""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict):
            code = str(error.get("code") or "").lower()
            message = str(error.get("message") or "")[:200]
        elif isinstance(error, str):
            message = error[:200]
        else:
            message = response.text[:200]
        retry_after = response.extensions.get("retry_after")
        if code == "unauthorized" or (not code and status == 401):
            kind = "provider_key_rejected" if self.caller_key else "auth_failed"
        elif code == "insufficient_credits" or (not code and status in (402, 403)):
            # Whose account ran dry decides who must act: the caller's key, or the operator's.
            kind = "provider_key_rejected" if self.caller_key else "unavailable"
        elif code == "temporarily_unavailable" or status == 429:
            kind = "rate_limited"
        elif code == "bad_request" or (not code and status in (400, 422)):
            kind = "could_not_process" if "handle" in message.lower() else "reported_issue"
        elif code == "lookup_failed":
            # "No such account" is a 200 with lookupStatus; a failed lookup is TikTok failing.
            kind = "not_found" if status == 404 else "fetch_error"
        elif code == "internal_error":
            kind = "fetch_error" if status in (200, 500) else kind_for_status(status)
        elif status == 404:
            # Missing accounts are 200s here, so a 404 means a wrong route or base URL.
            kind = "fetch_error"
        else:
            kind = kind_for_status(status)
        raise UpstreamError(kind, f"HTTP {status} {code}: {message}".strip(), provider=self.name,
                            retry_after=retry_after)

    # -- actions -----------------------------------------------------------------

    def get_profile(self, handle: str, *, request_source: str = "API") -> dict:
        body = self._get("profile", PROFILE_PATH.format(handle=quote(handle, safe="")))
        data = body["data"]
        status = data.get("lookupStatus")
        if status not in PROFILE_STATUSES:
            raise UpstreamError("invalid_data", f"profile lookupStatus {str(status)[:40]!r}", provider=self.name)
        if status == "not_found":
            raise UpstreamError("not_found", "lookupStatus not_found", provider=self.name)
        profile, metrics = data.get("profile"), data.get("metrics")
        if not isinstance(profile, dict) or not isinstance(metrics, (dict, type(None))):
            raise UpstreamError("invalid_data", "profile without a profile object", provider=self.name)
        metrics = metrics or {}
        avatars = _avatars(profile)
        bio_link = as_text(profile.get("bioLink"))
        user = {
            **_user(profile),
            "avatarLarger": as_text(avatars.get("large")),
            "avatarMedium": as_text(avatars.get("medium")),
            "createTime": _unix(profile.get("accountCreatedAt")),
            "bioLink": {"link": bio_link, "risk": None} if bio_link else None,
        }
        likes = as_int(metrics.get("likes"))
        stats = {
            "followerCount": as_int(metrics.get("followers")),
            "followingCount": as_int(metrics.get("following")),
            "heart": likes,
            "heartCount": likes,
            "videoCount": as_int(metrics.get("videos")),
        }
        return profile_record(user, stats, [])

    def _list(self, which: str, handle: str, cursor: Any) -> Page:
        params = {}
        if cursor is not None and cursor != "":
            params["cursor"] = str(cursor)
        body = self._get(which, PROFILE_PATH.format(handle=quote(handle, safe="")) + f"/{which}", params)
        data, meta = body["data"], body.get("meta")
        list_key, total_key = LIST_KEYS[which]
        status = data.get("lookupStatus")
        if status not in LIST_STATUSES:
            raise UpstreamError("invalid_data", f"{which} lookupStatus {str(status)[:40]!r}", provider=self.name)
        if status != "found":
            raise UpstreamError("not_found", f"lookupStatus {status}", provider=self.name)
        items, page = data.get(list_key), data.get("page")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items) \
                or not isinstance(page, dict):
            raise UpstreamError("invalid_data", f"{which} list or page missing or malformed", provider=self.name)
        records = []
        for item in items:
            metrics = item.get("metrics") if isinstance(item.get("metrics"), dict) else {}
            user = _user(item)
            if not (user["id"] or user["secUid"] or user["uniqueId"]):
                raise UpstreamError("invalid_data", f"{which} item without any identity", provider=self.name)
            records.append(user_record(user, {"followerCount": as_int(metrics.get("followers")),
                                              "followingCount": as_int(metrics.get("following"))}))
        next_cursor = page.get("nextCursor")
        has_more = page.get("hasMore")
        if not isinstance(next_cursor, (str, type(None))) or not isinstance(has_more, bool):
            raise UpstreamError("invalid_data", f"{which} page state malformed", provider=self.name)
        if has_more and not next_cursor:
            raise UpstreamError("invalid_data", f"{which} says hasMore without a nextCursor", provider=self.name)
        page_meta = {}
        if isinstance(meta, dict):
            if as_int(meta.get("creditsCharged")) is not None:
                page_meta["creditsCharged"] = meta["creditsCharged"]
            if isinstance(meta.get("requestId"), str):
                page_meta["requestId"] = meta["requestId"]
        return Page(records=records, next_cursor=next_cursor if has_more else None, max_cursor=None,
                    has_more=has_more, total=as_int(data.get(total_key)), meta=page_meta)

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._list("followers", handle, cursor)

    def list_following(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._list("following", handle, cursor)
