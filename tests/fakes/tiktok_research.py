"""Fake TikTok Research API: ``seeds/tiktok-research-followers.txt`` plus UPSTREAMS.md.

Routes (all ``POST``):

``/v2/oauth/token/``             form ``client_key, client_secret, grant_type=client_credentials``
                                 -> ``{"access_token": "clt.…", "expires_in": token_ttl,
                                 "token_type": "Bearer"}``
``/v2/research/user/info/``      query ``fields=a,b,…`` (required), JSON body ``{"username"}``
                                 -> ``{"data": {only the requested fields}, "error": {…}}``
``/v2/research/user/followers/`` JSON body ``{username, max_count?, cursor?}``
``/v2/research/user/following/`` -> ``{"data": {"user_followers" | "user_following":
                                 [{"display_name", "username"}], "cursor", "has_more"},
                                 "error": {…}}``

The research routes need ``Authorization: Bearer <access token>``. Tokens live
``token_ttl`` seconds; ``expire_all_tokens()`` kills every token at once (a walk then
fails with ``access_token_invalid`` until the client fetches a new one) and
``token_requests`` counts calls to the token route. ``scope_authorized = False`` makes every
research call fail with ``scope_not_authorized``.

User info fields: display_name, bio_description, avatar_url, is_verified, follower_count,
following_count, likes_count, video_count, bio_url (unknown fields are ``invalid_params``).

Cursor (unix seconds): a request returns the followers who followed *on or before*
``cursor`` (default: now), newest first, ``max_count`` of them (default 20, 1..100, else
``invalid_params``). The returned ``cursor`` is the last item's timestamp minus one, so
passing it back gives the next page with no overlap and no gap (timestamps within a list
are distinct). With ``inclusive_cursor=True`` the returned cursor is the last item's own
timestamp, so that item comes again at the top of the next page: the reading of the real
API's "on or before" that clients must survive (dedupe, and never trust a cursor that
does not move). An empty page returns the request's cursor and ``has_more: false``.

Every research answer is ``{"data": {...}, "error": {"code", "message", "log_id"}}``; errors
carry ``"data": {}``. Codes and statuses:

=========================  ====  ========================================================
``ok``                     200
``invalid_params``         400   bad body, fields, max_count or cursor; and accounts that
                                 cannot be served (below)
``access_token_invalid``   401   missing, unknown or expired token
``scope_not_authorized``   401   (``scope_authorized = False``; injected 403s too)
``rate_limit_exceeded``    429
``internal_error``         500   (also for injected 5xx)
=========================  ====  ========================================================

Accounts the API cannot serve. The Research API documents no "not found" code, and public
clients report 400 ``invalid_params`` for unknown and private users, so the fake answers:

- missing account: 400 ``invalid_params``, message "user not found: <username>" (all routes)
- private account: 400 ``invalid_params``, message "user is private: <username>" (all routes;
  the Research API serves public accounts only)
- hidden lists: user info works; followers/following give 400 ``invalid_params`` with
  "user's followers list is not public: <username>" (or following).

Token route errors use the OAuth shape ``{"error", "error_description", "log_id"}``:
401 ``invalid_client`` (wrong key or secret), 400 ``invalid_request`` (a field missing),
400 ``invalid_grant`` (grant_type is not client_credentials), and for injected failures
on ``endpoint="token"`` 429/5xx ``temporarily_unavailable``.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from .server import FakeServer, json_response, parse_json_body
from .world import FakeAccount, FakeUser, FakeWorld

USER_INFO_FIELDS = (
    "display_name", "bio_description", "avatar_url", "is_verified", "follower_count",
    "following_count", "likes_count", "video_count", "bio_url",
)
ERROR_CODES = {
    400: "invalid_params",
    401: "access_token_invalid",
    403: "scope_not_authorized",
    429: "rate_limit_exceeded",
}
OAUTH_ERROR_CODES = {400: "invalid_request", 401: "invalid_client"}
_LIST_KEYS = {"followers": "user_followers", "following": "user_following"}


def log_id() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + uuid.uuid4().hex[:18].upper()


def _ok() -> dict[str, str]:
    return {"code": "ok", "message": "", "log_id": log_id()}


def _user_info(user: FakeUser) -> dict[str, Any]:
    return {
        "display_name": user.nickname,
        "bio_description": user.bio,
        "avatar_url": user.avatar_urls()["large"],
        "is_verified": user.verified,
        "follower_count": user.follower_count,
        "following_count": user.following_count,
        "likes_count": user.heart_count,
        "video_count": user.video_count,
        "bio_url": user.bio_link or "",
    }


class _Reject(Exception):
    """Stop handling a research call and answer with this error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeTikTokResearch(FakeServer):
    """Fake TikTok Research API over a :class:`FakeWorld`; see the module docstring."""

    routes = (
        ("/v2/oauth/token/", "token", "POST"),
        ("/v2/research/user/info/", "info", "POST"),
        ("/v2/research/user/followers/", "followers", "POST"),
        ("/v2/research/user/following/", "following", "POST"),
    )
    control_endpoints = frozenset({"token"})
    default_count = 20
    max_count = 100

    def __init__(
        self,
        world: FakeWorld,
        client_key: str = "ck_test",
        client_secret: str = "cs_test",
        token_ttl: int = 7200,
        *,
        inclusive_cursor: bool = False,
        **server_options: Any,
    ):
        super().__init__(world, **server_options)
        self.client_key = client_key
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.inclusive_cursor = inclusive_cursor
        self.scope_authorized = True
        self.token_requests = 0
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._tokens_lock = threading.Lock()

    @property
    def env(self) -> dict[str, str]:
        """Environment that points the connector at this fake."""
        return {
            "TIKTOK_CLIENT_KEY": self.client_key,
            "TIKTOK_CLIENT_SECRET": self.client_secret,
            "TIKTOK_BASE_URL": self.url,
        }

    def expire_all_tokens(self) -> None:
        with self._tokens_lock:
            self._tokens.clear()

    # -- provider look of errors ------------------------------------------------------------

    def error_response(
        self,
        status: int,
        endpoint: str | None,
        message: str | None = None,
        *,
        request: Request | None = None,
    ) -> Response:
        if endpoint == "token":
            code = OAUTH_ERROR_CODES.get(status, "temporarily_unavailable")
            body = {"error": code, "error_description": message or code, "log_id": log_id()}
            return json_response(body, status)
        code = ERROR_CODES.get(status, "internal_error")
        return self._error(status, code, message or f"{code} (injected by the fake)")

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return json_response({"data": {}, "error": {"code": code, "message": message, "log_id": log_id()}}, status)

    def bad_shape_body(self, endpoint: str) -> Any:
        if endpoint == "token":
            return {"token_type": "Bearer", "expires_in": self.token_ttl}
        return {"data": {"cursor": 0, "has_more": True}, "error": _ok()}

    # -- token route ------------------------------------------------------------------------

    def on_token(self, request: Request) -> Response:
        self.token_requests += 1
        form = request.form
        if not all(form.get(name) for name in ("client_key", "client_secret", "grant_type")):
            return self.error_response(400, "token", "client_key, client_secret and grant_type are required")
        if form["grant_type"] != "client_credentials":
            body = {"error": "invalid_grant", "error_description": "Unsupported grant_type.", "log_id": log_id()}
            return json_response(body, 400)
        if (form["client_key"], form["client_secret"]) != (self.client_key, self.client_secret):
            return self.error_response(401, "token", "Client key or secret is incorrect.")
        token = "clt." + secrets.token_urlsafe(30)
        with self._tokens_lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        return json_response({"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"})

    # -- research routes --------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self._tokens_lock:
            expiry = self._tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            raise _Reject(401, "access_token_invalid", "The access token is invalid, expired or not found in the request.")
        if not self.scope_authorized:
            raise _Reject(401, "scope_not_authorized", "The client is not authorized for research.data.basic.")

    def _account(self, body: dict, which: str | None) -> FakeAccount:
        username = body.get("username")
        if not isinstance(username, str) or not username.strip():
            raise _Reject(400, "invalid_params", "username is required")
        account = self.world.get(username)
        if account is None or account.status == "missing":
            raise _Reject(400, "invalid_params", f"user not found: {username}")
        if account.status == "private":
            raise _Reject(400, "invalid_params", f"user is private: {username}")
        if which and account.status == "hidden":
            raise _Reject(400, "invalid_params", f"user's {which} list is not public: {username}")
        return account

    def _research(self, request: Request, handler: Any, *args: Any) -> Response:
        """Auth, JSON body, then ``handler(body, *args)``; _Reject becomes the error answer."""
        try:
            self._authorize(request)
            ok, body = parse_json_body(request)
            if not ok or not isinstance(body, dict):
                raise _Reject(400, "invalid_params", "The request body is not a JSON object.")
            return json_response({"data": handler(body, *args), "error": _ok()})
        except _Reject as reject:
            return self._error(reject.status, reject.code, reject.message)

    def on_info(self, request: Request) -> Response:
        fields = [name for name in request.args.get("fields", "").split(",") if name]
        unknown = sorted(set(fields) - set(USER_INFO_FIELDS))

        def info(body: dict) -> dict:
            if not fields or unknown:
                raise _Reject(400, "invalid_params", f"Invalid fields: {','.join(unknown) or '(none given)'}")
            everything = _user_info(self._account(body, None).user)
            return {name: everything[name] for name in fields}

        return self._research(request, info)

    def on_followers(self, request: Request) -> Response:
        return self._research(request, self._list, "followers")

    def on_following(self, request: Request) -> Response:
        return self._research(request, self._list, "following")

    def _list(self, body: dict, which: str) -> dict:
        count, cursor = body.get("max_count"), body.get("cursor")
        if count is None:
            count = self.default_count
        if type(count) is not int or not 1 <= count <= self.max_count:
            raise _Reject(400, "invalid_params", f"max_count must be an integer from 1 to {self.max_count}")
        if cursor is None:
            cursor = int(time.time())
        elif type(cursor) is not int or cursor < 0:
            raise _Reject(400, "invalid_params", "cursor must be a unix timestamp in seconds")
        self._account(body, which)
        # "on or before cursor" is world.page's "strictly before cursor + 1"
        items, last, has_more = self.world.page(body["username"], which, before=cursor + 1, count=count)
        if items:
            cursor = last if self.inclusive_cursor else last - 1
        return {
            _LIST_KEYS[which]: [{"display_name": u.nickname, "username": u.handle} for u, _ in items],
            "cursor": cursor,
            "has_more": has_more,
        }
