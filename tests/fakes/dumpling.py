"""Fake Dumpling AI: the three TikTok endpoints of ``seeds/dumpling-*.txt``.

Routes (all ``POST``, JSON body, ``Authorization: Bearer <api_key>``):

``/api/v1/get-tiktok-user-followers``  body ``{handle, minTime?, count?, requestSource?}``
``/api/v1/get-tiktok-user-following``  same body
``/api/v1/get-tiktok-profile``         body ``{handle, requestSource?}``

Success shapes::

    {"followers" | "followingList": [{"user": {id, uniqueId, nickname, avatarThumb, signature,
                                               verified, secUid, privateAccount},
                                      "stats": {followerCount, followingCount, heartCount,
                                                videoCount, diggCount}}],
     "maxCursor": <followed_at of the first item>, "minCursor": <followed_at of the last item>,
     "hasMore": bool, "total": <list length, not capped>}
    {"user": {... as the profile seed ...}, "stats": {...}, "itemList": []}

Cursor: ``minTime`` returns the items followed strictly before it, so passing a page's
``minCursor`` back as ``minTime`` gives the next page with no overlap. ``minTime`` absent
or 0 means the newest page. An empty page echoes the request's ``minTime`` (or 0) in both
cursors. ``count`` defaults to 30 and is clamped to 1..100.

Errors, with the seed documents' messages word for word (``{noun}`` is followers,
following or profile):

=====  ==================================================================================
400    "Invalid JSON in request body" / "'handle' parameter is required and must be a
       non-empty string." / "The {noun} service could not process the handle." (a handle
       that is not a bare username: URLs, spaces; one leading @ is tolerated) /
       "The {noun} service reported an issue." (bad minTime or count)
401    "API key is invalid or missing."
403    "Insufficient credits. Please top up your account." (only with ``credits=`` set;
       a list page costs 1, a profile 2)
404    "Followers list not found for user: X" / "Following list not found for user: X"
       for missing, private and hidden accounts; "TikTok profile not found for handle: X"
       for missing ones (private and hidden profiles are returned)
429    "Rate limit exceeded. Please try again later." + Retry-After, when more than
       ``rate_limit`` requests arrive within one minute
500    "An unexpected server error occurred while fetching the TikTok user followers: ..."
502    "Received invalid data structure from followers service." (profile: "... data format
       from profile service.")
503    "Rate limit exceeded. Please try again later." (profile: "Rate limit exceeded with
       the profile service. Please try again later.")
=====  ==================================================================================

``error_form="object"`` switches every error body to the envelope of Dumpling's API
introduction, ``{"error": {"code", "message"}, "status": "error"}``, with the codes of
``ERROR_CODES``. Every answer carries ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining``.
``request_sources`` records the ``requestSource`` each request sent (body, else the
``X-Request-Source`` header, else None).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from .server import FakeServer, json_response, parse_json_body
from .world import USERNAME_RE, FakeUser, FakeWorld

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "insufficient_credits",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "upstream_rate_limited",
}
_LIST_KEYS = {"followers": "followers", "following": "followingList"}


def _messages(endpoint: str | None, handle: str) -> dict[int, str]:
    """The seed documents' default message per status, for one endpoint."""
    common = {
        401: "API key is invalid or missing.",
        403: "Insufficient credits. Please top up your account.",
        429: "Rate limit exceeded. Please try again later.",
    }
    if endpoint == "profile":
        return common | {
            400: "The profile service reported an issue.",
            404: f"TikTok profile not found for handle: {handle}",
            500: "An unexpected server error occurred while fetching the TikTok profile: "
            "upstream request failed",
            502: "Received invalid data format from profile service.",
            503: "Rate limit exceeded with the profile service. Please try again later.",
        }
    noun = endpoint or "followers"
    return common | {
        400: f"The {noun} service reported an issue.",
        404: f"{noun.title()} list not found for user: {handle}",
        500: f"An unexpected server error occurred while fetching the TikTok user {noun}: "
        "upstream request failed",
        502: f"Received invalid data structure from {noun} service.",
        503: "Rate limit exceeded. Please try again later.",
    }


def user_json(user: FakeUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "uniqueId": user.handle,
        "nickname": user.nickname,
        "avatarThumb": user.avatar_urls()["thumb"],
        "signature": user.bio,
        "verified": user.verified,
        "secUid": user.sec_uid,
        "privateAccount": user.private,
    }


def stats_json(user: FakeUser) -> dict[str, int]:
    return {
        "followerCount": user.follower_count,
        "followingCount": user.following_count,
        "heartCount": user.heart_count,
        "videoCount": user.video_count,
        "diggCount": user.digg_count,
    }


class FakeDumpling(FakeServer):
    """Fake Dumpling AI over a :class:`FakeWorld`; see the module docstring."""

    routes = (
        ("/api/v1/get-tiktok-user-followers", "followers", "POST"),
        ("/api/v1/get-tiktok-user-following", "following", "POST"),
        ("/api/v1/get-tiktok-profile", "profile", "POST"),
    )
    default_count = 30
    max_count = 100

    def __init__(
        self,
        world: FakeWorld,
        api_key: str = "sk_test",
        *,
        error_form: str = "string",
        rate_limit: int = 1000,
        **server_options: Any,
    ):
        if error_form not in ("string", "object"):
            raise ValueError("error_form must be 'string' or 'object'")
        super().__init__(world, **server_options)
        self.api_key = api_key
        self.error_form = error_form
        self.rate_limit = rate_limit
        self.request_sources: list[str | None] = []
        self._window = (0.0, 0)  # (start of the current minute, requests in it)
        self._window_lock = threading.Lock()

    @property
    def env(self) -> dict[str, str]:
        """Environment that points the connector at this fake."""
        return {"DUMPLING_API_KEY": self.api_key, "DUMPLING_BASE_URL": self.url}

    # -- provider look of errors ------------------------------------------------------------

    def error_response(
        self,
        status: int,
        endpoint: str | None,
        message: str | None = None,
        *,
        request: Request | None = None,
        handle: str | None = None,
    ) -> Response:
        if message is None:
            if handle is None and request is not None:  # an injected failure: name the handle asked for
                sent = parse_json_body(request)[1]
                handle = str(sent.get("handle", "")) if isinstance(sent, dict) else ""
            message = _messages(endpoint, handle or "").get(status, "Request failed.")
        if self.error_form == "object":
            body: dict[str, Any] = {
                "error": {"code": ERROR_CODES.get(status, "error"), "message": message},
                "status": "error",
            }
        else:
            body = {"error": message}
        return json_response(body, status)

    def bad_shape_body(self, endpoint: str) -> Any:
        if endpoint == "profile":
            return {"stats": {}, "itemList": []}
        return {"hasMore": True, "total": 1}

    def finish(self, response: Response, endpoint: str | None) -> Response:
        used = self._window[1]
        response.headers["X-RateLimit-Limit"] = str(self.rate_limit)
        response.headers["X-RateLimit-Remaining"] = str(max(self.rate_limit - used, 0))
        return response

    # -- request checks ---------------------------------------------------------------------

    def _over_rate_limit(self) -> int | None:
        """Count this request; seconds until the window resets when over the limit."""
        now = time.monotonic()
        with self._window_lock:
            started, used = self._window
            if now - started >= 60:
                started, used = now, 0
            self._window = (started, used + 1)
            if used + 1 > self.rate_limit:
                return max(int(60 - (now - started)) + 1, 1)
        return None

    def _prologue(self, request: Request, endpoint: str) -> tuple[dict | None, Response | None]:
        """Auth, rate limit, body and handle checks; returns ``(body, None)`` or ``(None, error)``."""
        if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
            return None, self.error_response(401, endpoint)
        retry_after = self._over_rate_limit()
        if retry_after is not None:
            response = self.error_response(429, endpoint)
            response.headers["Retry-After"] = str(retry_after)
            return None, response
        ok, body = parse_json_body(request)
        if not ok or not isinstance(body, dict):
            return None, self.error_response(400, endpoint, "Invalid JSON in request body")
        self.request_sources.append(body.get("requestSource") or request.headers.get("X-Request-Source"))
        handle = body.get("handle")
        if not isinstance(handle, str) or not handle.strip():
            return None, self.error_response(
                400, endpoint, "'handle' parameter is required and must be a non-empty string."
            )
        if not USERNAME_RE.match(handle.strip()):
            return None, self.error_response(400, endpoint, f"The {endpoint} service could not process the handle.")
        body["handle"] = handle.strip().removeprefix("@")
        return body, None

    # -- endpoints --------------------------------------------------------------------------

    def on_followers(self, request: Request) -> Response:
        return self._list(request, "followers")

    def on_following(self, request: Request) -> Response:
        return self._list(request, "following")

    def _list(self, request: Request, which: str) -> Response:
        body, error = self._prologue(request, which)
        if error is not None:
            return error
        handle = body["handle"]
        min_time, count = body.get("minTime"), body.get("count")
        try:
            min_time = _number(min_time) if min_time not in (None, "", 0) else None
            count = self.default_count if count in (None, "") else int(_number(count))
            count = min(max(count, 1), self.max_count)
        except ValueError:
            return self.error_response(400, which, handle=handle)
        account = self.world.get(handle)
        if account is None or account.status != "ok":
            return self.error_response(404, which, handle=handle)
        if not self.spend(1):
            return self.error_response(403, which)
        items, _, has_more = self.world.page(handle, which, before=min_time, count=count)
        empty_cursor = min_time or 0
        return json_response(
            {
                _LIST_KEYS[which]: [{"user": user_json(u), "stats": stats_json(u)} for u, _ in items],
                "maxCursor": items[0][1] if items else empty_cursor,
                "minCursor": items[-1][1] if items else empty_cursor,
                "hasMore": has_more,
                "total": len(account.relation(which)),
            }
        )

    def on_profile(self, request: Request) -> Response:
        body, error = self._prologue(request, "profile")
        if error is not None:
            return error
        handle = body["handle"]
        account = self.world.get(handle)
        if account is None or account.status == "missing":
            return self.error_response(404, "profile", handle=handle)
        if not self.spend(2):
            return self.error_response(403, "profile")
        user = account.user
        avatars = user.avatar_urls()
        return json_response(
            {
                "user": {
                    **user_json(user),
                    "shortId": "",
                    "avatarLarger": avatars["large"],
                    "avatarMedium": avatars["medium"],
                    "createTime": user.created_at,
                    "bioLink": {"link": user.bio_link, "risk": 0} if user.bio_link else None,
                    "secret": False,
                    "ftc": False,
                    "relation": 0,
                    "openFavorite": False,
                    "commentSetting": 0,
                    "duetSetting": 0,
                    "stitchSetting": 0,
                    "downloadSetting": 0,
                    "followingVisibility": 2 if account.status == "hidden" else 1,
                    "region": "US",
                    "language": "en",
                    "isOrganization": 0,
                },
                "stats": {
                    **stats_json(user),
                    "heart": user.heart_count,
                    "friendCount": 0,
                },
                "itemList": [],
            }
        )


def _number(value: Any) -> float:
    """A JSON number or numeric string; anything else (bools included) is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    number = float(value)
    if number < 0:
        raise ValueError(value)
    return int(number) if number.is_integer() else number
