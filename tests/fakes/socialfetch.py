"""Fake Social Fetch: ``seeds/socialfetch-followers.txt`` plus the facts in UPSTREAMS.md.

Routes (all ``GET``, header ``x-api-key: <api_key>``):

``/v1/tiktok/profiles/{handle}``            profile
``/v1/tiktok/profiles/{handle}/followers``  query ``cursor?``, ``trim?``, ``userId?``
``/v1/tiktok/profiles/{handle}/following``  same query

Success (always HTTP 200, also for accounts that cannot be listed)::

    {"data": {"lookupStatus": "found" | "hidden" | "private" | "not_found",
              "followers" | "accounts": [{handle, displayName, avatarUrl,
                                          avatarUrls: {large, medium, thumb}, platformUserId,
                                          secUid, bio, verified, privateAccount,
                                          metrics: {followers, following}}],
              "page": {"nextCursor": str | None, "hasMore": bool},
              "totalFollowers" | "totalFollowing": int | None},
     "meta": {"requestId": "req_...", "creditsCharged": 1, "version": "v1"}}

    {"data": {"lookupStatus": "found" | "private" | "not_found",
              "profile": {handle, displayName, bio, avatarUrl, avatarUrls, verified,
                          privateAccount, platformUserId, secUid, accountCreatedAt (ISO 8601),
                          bioLink} | None,
              "metrics": {followers, following, likes, videos} | None},
     "meta": {...}}

Lists: ``hidden``/``private``/``not_found`` come with an empty list, ``page`` ``{null, false}``
and a null total. Profiles: a hidden account is ``found``; a private one is ``private``
with its profile and metrics; ``not_found`` has null profile and metrics. ``trim=true``
drops ``avatarUrls`` and ``bio`` from list items. Pages hold ``page_size`` items (default 20).

Cursor: ``page.nextCursor`` is an opaque URL-safe base64 token (it encodes the list, the
handle and the last item's timestamp). Passing it back as ``cursor`` gives the next page,
no overlap; a token that does not decode, or belongs to another list or handle, is a 400.

Every 200 costs one credit (``meta.creditsCharged`` 1). Errors are
``{"error": {"code", "message"}}``; the statuses (UPSTREAMS.md leaves them unsure) are:

==========================  ======  ==================================================
``bad_request``             400     bad handle, cursor or trim
``unauthorized``            401     missing or wrong ``x-api-key``
``insufficient_credits``    402     only with ``credits=`` set, once they run out
``lookup_failed``           502     Social Fetch could not reach TikTok: an upstream
                                    failure, not "no such account" (that is a 200 with
                                    ``not_found``), so a gateway status fits best
``temporarily_unavailable`` 503     also 429, with ``Retry-After`` (default 1 s)
``internal_error``          500
``not_found``               404     unknown route only
==========================  ======  ==================================================
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from werkzeug.wrappers import Request, Response

from .server import FakeServer, json_response
from .world import USERNAME_RE, FakeUser, FakeWorld

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_credits",
    403: "insufficient_credits",
    404: "not_found",
    405: "bad_request",
    429: "temporarily_unavailable",
    500: "internal_error",
    502: "lookup_failed",
    503: "temporarily_unavailable",
}
_MESSAGES = {
    "bad_request": "The request is invalid.",
    "unauthorized": "Missing or invalid API key.",
    "insufficient_credits": "Not enough credits. Top up your Social Fetch balance.",
    "not_found": "No such endpoint.",
    "lookup_failed": "The TikTok lookup failed. Try again later.",
    "temporarily_unavailable": "The service is temporarily unavailable. Try again later.",
    "internal_error": "An internal error occurred.",
}
# lookupStatus per world account status, for lists and for profiles
_LIST_STATUS = {"ok": "found", "hidden": "hidden", "private": "private", "missing": "not_found"}
_PROFILE_STATUS = {"ok": "found", "hidden": "found", "private": "private", "missing": "not_found"}
_LIST_KEYS = {"followers": ("followers", "totalFollowers"), "following": ("accounts", "totalFollowing")}


def encode_cursor(which: str, handle: str, before: int) -> str:
    raw = json.dumps({"l": which, "h": handle, "t": before}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, which: str, handle: str) -> int:
    """The timestamp inside a cursor; ValueError unless it was made for this list."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
        if state["l"] != which or state["h"] != handle or not isinstance(state["t"], int):
            raise ValueError(token)
        return state["t"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError(token) from exc


def item_json(user: FakeUser, trim: bool) -> dict[str, Any]:
    avatars = user.avatar_urls()
    item = {
        "handle": user.handle,
        "displayName": user.nickname,
        "avatarUrl": avatars["large"],
        "avatarUrls": avatars,
        "platformUserId": user.id,
        "secUid": user.sec_uid,
        "bio": user.bio,
        "verified": user.verified,
        "privateAccount": user.private,
        "metrics": {"followers": user.follower_count, "following": user.following_count},
    }
    if trim:
        del item["avatarUrls"], item["bio"]
    return item


class FakeSocialFetch(FakeServer):
    """Fake Social Fetch over a :class:`FakeWorld`; see the module docstring."""

    routes = (
        ("/v1/tiktok/profiles/<handle>", "profile", "GET"),
        ("/v1/tiktok/profiles/<handle>/followers", "followers", "GET"),
        ("/v1/tiktok/profiles/<handle>/following", "following", "GET"),
    )

    def __init__(
        self,
        world: FakeWorld,
        api_key: str = "sfk_test",
        *,
        page_size: int = 20,
        **server_options: Any,
    ):
        super().__init__(world, **server_options)
        self.api_key = api_key
        self.page_size = page_size

    @property
    def env(self) -> dict[str, str]:
        """Environment that points the connector at this fake."""
        return {"SOCIALFETCH_API_KEY": self.api_key, "SOCIALFETCH_BASE_URL": self.url}

    # -- provider look of errors ------------------------------------------------------------

    def error_response(
        self,
        status: int,
        endpoint: str | None,
        message: str | None = None,
        *,
        request: Request | None = None,
    ) -> Response:
        code = ERROR_CODES.get(status, "internal_error")
        response = json_response({"error": {"code": code, "message": message or _MESSAGES[code]}}, status)
        if status == 429:
            response.headers["Retry-After"] = "1"
        return response

    def bad_shape_body(self, endpoint: str) -> Any:
        return {"data": {"lookupStatus": "found"}, "meta": self._meta()}

    @staticmethod
    def _meta() -> dict[str, Any]:
        return {"requestId": f"req_{uuid.uuid4().hex[:24]}", "creditsCharged": 1, "version": "v1"}

    # -- request checks ---------------------------------------------------------------------

    def _prologue(self, request: Request, endpoint: str, handle: str) -> Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return self.error_response(401, endpoint)
        if not USERNAME_RE.match(handle):
            return self.error_response(400, endpoint, "handle must be a TikTok username (1-64 chars).")
        return None

    def _charge(self, endpoint: str) -> Response | None:
        """Take the request's one credit; the 402 answer when there is none left."""
        return None if self.spend() else self.error_response(402, endpoint)

    # -- endpoints --------------------------------------------------------------------------

    def on_profile(self, request: Request, handle: str) -> Response:
        error = self._prologue(request, "profile", handle) or self._charge("profile")
        if error is not None:
            return error
        account = self.world.get(handle)
        status = _PROFILE_STATUS[account.status if account else "missing"]
        profile = metrics = None
        if status != "not_found":
            user = account.user
            created = datetime.fromtimestamp(user.created_at, timezone.utc)
            profile = item_json(user, trim=False)
            del profile["metrics"]  # a profile's counts live in data.metrics
            profile["accountCreatedAt"] = created.isoformat().replace("+00:00", "Z")
            profile["bioLink"] = user.bio_link
            metrics = {
                "followers": user.follower_count,
                "following": user.following_count,
                "likes": user.heart_count,
                "videos": user.video_count,
            }
        return json_response(
            {"data": {"lookupStatus": status, "profile": profile, "metrics": metrics}, "meta": self._meta()}
        )

    def on_followers(self, request: Request, handle: str) -> Response:
        return self._list(request, "followers", handle)

    def on_following(self, request: Request, handle: str) -> Response:
        return self._list(request, "following", handle)

    def _list(self, request: Request, which: str, handle: str) -> Response:
        error = self._prologue(request, which, handle)
        if error is not None:
            return error
        handle = handle.removeprefix("@").lower()
        trim = request.args.get("trim", "false").lower()
        if trim not in ("true", "false", "1", "0"):
            return self.error_response(400, which, "trim must be true or false.")
        before = None
        if "cursor" in request.args:
            try:
                before = decode_cursor(request.args["cursor"], which, handle)
            except ValueError:
                return self.error_response(400, which, "cursor is invalid or expired.")
        error = self._charge(which)
        if error is not None:
            return error
        account = self.world.get(handle)
        status = _LIST_STATUS[account.status if account else "missing"]
        list_key, total_key = _LIST_KEYS[which]
        items, next_before, has_more = [], None, False
        if status == "found":
            items, next_before, has_more = self.world.page(handle, which, before=before, count=self.page_size)
        return json_response(
            {
                "data": {
                    "lookupStatus": status,
                    list_key: [item_json(user, trim in ("true", "1")) for user, _ in items],
                    "page": {
                        "nextCursor": encode_cursor(which, handle, next_before) if has_more else None,
                        "hasMore": has_more,
                    },
                    total_key: len(account.relation(which)) if status == "found" else None,
                },
                "meta": self._meta(),
            }
        )
