"""TikTok Research API: client-credentials token, then ``POST /v2/research/user/...``.

- Token: ``POST /v2/oauth/token/`` (form ``client_key``, ``client_secret``,
  ``grant_type=client_credentials``), fetched on first use and kept until shortly before
  ``expires_in`` runs out. Concurrent requests share one fetch (a lock), and a research call
  answered ``access_token_invalid`` drops that token and is retried once with a new one.
- Credentials: the operator's ``TIKTOK_CLIENT_KEY``/``TIKTOK_CLIENT_SECRET``, or a caller's
  ``X-Provider-Key: client_key:client_secret``.
- Every answer is ``{"data", "error": {"code", "message", "log_id"}}``; the codes are mapped
  in :func:`kind_for_code` (leniently: unknown codes fall back to the HTTP status). The API
  has no "not found" code: unknown, private and hidden accounts come back as
  ``invalid_params`` whose message says so, which is our ``not_found``.
- Lists give only ``username`` and ``display_name``; every other field is ``None``.
- The upstream cursor is unix seconds ("followed on or before"). Whether the returned cursor
  repeats the last item's second is not documented, so records at the top of a page that
  ended the page whose cursor was sent are dropped, and a cursor that does not move is
  stepped back one second. What that needs to remember travels in the cursor we hand out
  (:func:`encode_cursor`), never in this process: the next page may be served by another
  worker, or by a fresh instance after the pool evicted this one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from typing import Any, Callable

import httpx

from ..config import URL, Setting, Settings
from ..errors import InvalidCursor, UpstreamError, kind_for_status
from ..records import Page, as_int, as_text, follower_key, profile_record, user_record
from .base import Provider
from .http import UpstreamHTTP, read_json

TOKEN_PATH = "/v2/oauth/token/"
INFO_PATH = "/v2/research/user/info/"
LIST_PATHS = {"followers": "/v2/research/user/followers/", "following": "/v2/research/user/following/"}
LIST_KEYS = {"followers": "user_followers", "following": "user_following"}
INFO_FIELDS = ("display_name,bio_description,avatar_url,is_verified,follower_count,following_count,"
               "likes_count,video_count,bio_url")
MAX_COUNT = 100

AUTH_CODES = frozenset({"access_token_invalid", "scope_not_authorized", "scope_permission_missed",
                        "invalid_token", "access_token_expired"})
PARAM_CODES = frozenset({"invalid_params", "invalid_param", "invalid_request"})
# How an invalid_params message says the account cannot be served (unknown, private, hidden lists).
NOT_FOUND_HINTS = ("not found", "not exist", "no such user", "private", "not public", "hidden")
OAUTH_CONFIG_CODES = frozenset({"invalid_client", "invalid_grant", "invalid_request",
                                "unauthorized_client", "access_denied", "invalid_scope"})


def kind_for_code(code: str, message: str, status: int) -> str:
    """The error kind for a research API error code (``status`` decides unknown codes)."""
    if code in AUTH_CODES:
        return "auth_failed"
    if code in PARAM_CODES:
        lowered = message.lower()
        return "not_found" if any(hint in lowered for hint in NOT_FOUND_HINTS) else "reported_issue"
    if code == "rate_limit_exceeded":
        return "rate_limited"
    if code == "internal_error":
        return "fetch_error"
    if code == "timeout":
        return "unavailable"
    return kind_for_status(status) if status != 200 else "fetch_error"


# -- the cursor we hand out ------------------------------------------------------

CURSOR_PREFIX = "tr1."
# Trailing records of a page that its cursor remembers: the ones the next page may repeat
# (those followed in the cursor's very second). Keeps a cursor under ~400 characters, well
# inside minTime's 512; should more share that second, the extra ones may come twice.
BOUNDARY_IDS = 24


def boundary_id(which: str, handle: str, key: str) -> str:
    """A short digest of a follower key, scoped to one list of one account, so a cursor sent
    for another list can never drop a follower the two lists share."""
    digest = hashlib.blake2b(f"{which}\n{handle.lower()}\n{key}".encode(), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


def encode_cursor(before: int, boundary: list[str]) -> str:
    """``tr1.`` + base64url of ``{"t": unix seconds to send upstream, "b": boundary ids}``."""
    state = json.dumps({"t": before, "b": boundary}, separators=(",", ":"))
    return CURSOR_PREFIX + base64.urlsafe_b64encode(state.encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> tuple[int | None, frozenset[str]]:
    """``(unix seconds, boundary ids)`` of a cursor; ValueError if we never made it.

    A bare number of seconds, what this provider handed out before ``tr1.`` (watches' gaps
    and walks' state files may still hold one), is read with no boundary.
    """
    if cursor is None or cursor == "":
        return None, frozenset()
    if isinstance(cursor, str) and cursor.strip().isdigit():
        cursor = int(cursor.strip())
    if as_int(cursor) is not None and cursor >= 0:
        return cursor, frozenset()
    if isinstance(cursor, str) and cursor.startswith(CURSOR_PREFIX):
        encoded = cursor[len(CURSOR_PREFIX):]
        try:
            state = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_",
                                                validate=True))
        except (binascii.Error, ValueError):
            state = None
        if isinstance(state, dict) and set(state) == {"t", "b"}:
            before, boundary = as_int(state["t"]), state["b"]
            if before is not None and before >= 0 and isinstance(boundary, list) \
                    and len(boundary) <= BOUNDARY_IDS and all(isinstance(b, str) and len(b) == 8 for b in boundary):
                return before, frozenset(boundary)
    raise ValueError(f"not a tiktok_research cursor: {str(cursor)[:40]!r}")


class TikTokResearchProvider(Provider):
    name = "tiktok_research"
    # Bare seconds are still read (decode_cursor) but no longer handed out, so not advertised.
    cursor_form = f"a string starting with {CURSOR_PREFIX}"
    own_settings = (
        Setting("TIKTOK_CLIENT_KEY", help="TikTok Research API client key", secret=True, credential=True),
        Setting("TIKTOK_CLIENT_SECRET", help="TikTok Research API client secret", secret=True, credential=True),
        Setting("TIKTOK_BASE_URL", "https://open.tiktokapis.com", "TikTok Research API base URL", URL()),
    )
    credential_form = "client_key:client_secret"

    def __init__(self, client_key: str, client_secret: str, base_url: str, *,
                 settings: Settings | None = None, caller_key: bool = False,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.client_key = client_key
        self.client_secret = client_secret
        self.caller_key = caller_key
        self.clock = clock
        self.http = UpstreamHTTP(base_url, provider=self.name, settings=settings, transport=transport,
                                 secrets=(client_secret,))
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "TikTokResearchProvider":
        if credentials:
            client_key, sep, client_secret = credentials.partition(":")
            if not sep or not client_key.strip() or not client_secret.strip():
                raise UpstreamError("provider_key_rejected",
                                    "X-Provider-Key for tiktok_research must be client_key:client_secret",
                                    provider=cls.name)
            return cls(client_key.strip(), client_secret.strip(), settings.tiktok_base_url,
                       settings=settings, caller_key=True)
        cls.require_credentials(settings)
        return cls(settings.tiktok_client_key, settings.tiktok_client_secret, settings.tiktok_base_url,
                   settings=settings)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.client_secret, self.client_key, self._token) if s)

    def accepts_cursor(self, cursor: Any) -> bool:
        try:
            decode_cursor(cursor)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        self.http.close()

    def _fail(self, kind: str, detail: str, retry_after: float | None = None) -> UpstreamError:
        if kind == "auth_failed" and self.caller_key:
            kind = "provider_key_rejected"
        return UpstreamError(kind, detail, provider=self.name, retry_after=retry_after)

    # -- token -----------------------------------------------------------------

    def access_token(self) -> str:
        """A valid token; the first caller fetches it while the others wait for it."""
        token = self._token
        if token is not None and self.clock() < self._token_expires:
            return token
        with self._token_lock:
            if self._token is None or self.clock() >= self._token_expires:
                self._token, self._token_expires = self._fetch_token()
            return self._token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:  # another thread may already have replaced it
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        response = self.http.request("POST", TOKEN_PATH, data={
            "client_key": self.client_key,
            "client_secret": self.client_secret,
            "grant_type": "client_credentials",
        }, headers={"Cache-Control": "no-cache"})
        if response.status_code != 200:
            self._raise_token_error(response)
        body = read_json(response, "token", self.name)
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token:
            if body.get("error"):
                self._raise_token_error(response)
            raise UpstreamError("invalid_data", "token answer without access_token", provider=self.name)
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            expires_in = 300  # unknown lifetime: keep it briefly; access_token_invalid refreshes anyway
        # Refresh a little early so a token never expires between our check and TikTok's.
        return token, self.clock() + expires_in - min(300.0, expires_in * 0.1)

    def _raise_token_error(self, response: httpx.Response) -> None:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        code, description = "", response.text[:200]
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):  # the research envelope, just in case
                code, description = str(error.get("code") or ""), str(error.get("message") or "")
            elif isinstance(error, str):
                code, description = error, str(body.get("error_description") or "")
        code = code.lower()
        if code in OAUTH_CONFIG_CODES or status in (400, 401, 403):
            kind = "auth_failed"
        elif status == 429:
            kind = "rate_limited"
        elif code == "temporarily_unavailable":
            kind = "unavailable"
        else:
            kind = kind_for_status(status)
        raise self._fail(kind, f"token HTTP {status} {code}: {description[:200]}",
                         response.extensions.get("retry_after"))

    # -- research calls ----------------------------------------------------------

    def _call(self, what: str, path: str, body: dict, params: dict | None = None) -> dict:
        for attempt in (1, 2):
            token = self.access_token()
            response = self.http.request("POST", path, params=params, json=body,
                                         headers={"Authorization": f"Bearer {token}"})
            code, message, data = self._read(response, what)
            if code == "ok":
                return data
            if code == "access_token_invalid" and attempt == 1:
                self._forget_token(token)  # expired early or revoked: one fresh token, one retry
                continue
            kind = kind_for_code(code, message, response.status_code)
            raise self._fail(kind, f"{what} HTTP {response.status_code} {code}: {message}",
                             response.extensions.get("retry_after"))
        raise AssertionError("unreachable")

    def _read(self, response: httpx.Response, what: str) -> tuple[str, str, dict]:
        """``(code, message, data)`` of a research answer; ``code`` is "ok" on success."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status == 200:
                raise UpstreamError("invalid_data", f"{what} body is not a JSON object", provider=self.name)
            return "", response.text[:200], {}
        error, data = body.get("error"), body.get("data")
        code, message = "", ""
        if isinstance(error, dict):
            code = str(error.get("code") or "").lower()
            message = str(error.get("message") or "")[:200]
        elif isinstance(error, str):
            code = error.lower()
        if status == 200 and code in ("ok", ""):
            if not isinstance(data, dict):
                raise UpstreamError("invalid_data", f"{what} without a data object", provider=self.name)
            return "ok", message, data
        if code == "ok":  # an error status that claims success
            code = ""
        return code, message, {}

    # -- actions -----------------------------------------------------------------

    def get_profile(self, handle: str, *, request_source: str = "API") -> dict:
        data = self._call("profile", INFO_PATH, {"username": handle}, params={"fields": INFO_FIELDS})
        known = [name for name in INFO_FIELDS.split(",") if name in data]
        if not known:
            raise UpstreamError("invalid_data", "user info without any requested field", provider=self.name)
        bio_url = as_text(data.get("bio_url"))
        likes = as_int(data.get("likes_count"))
        is_verified = data.get("is_verified")
        user = {
            "uniqueId": handle,
            "nickname": as_text(data.get("display_name")),
            "avatarThumb": as_text(data.get("avatar_url")),
            "signature": as_text(data.get("bio_description")),
            "verified": is_verified if isinstance(is_verified, bool) else None,
            "bioLink": {"link": bio_url, "risk": None} if bio_url else None,
        }
        stats = {
            "followerCount": as_int(data.get("follower_count")),
            "followingCount": as_int(data.get("following_count")),
            "heart": likes,
            "heartCount": likes,
            "videoCount": as_int(data.get("video_count")),
        }
        return profile_record(user, stats, [])

    def _list(self, which: str, handle: str, cursor: Any, count: int | None) -> Page:
        try:
            before, boundary = decode_cursor(cursor)
        except ValueError:
            raise InvalidCursor(self.name, self.cursor_form, cursor) from None
        body: dict = {"username": handle, "max_count": min(max(1, count or MAX_COUNT), MAX_COUNT)}
        if before is not None:
            body["cursor"] = before
        data = self._call(which, LIST_PATHS[which], body)
        items = data.get(LIST_KEYS[which])
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("username"), str) and i["username"] for i in items
        ):
            raise UpstreamError("invalid_data", f"{which} list missing or malformed", provider=self.name)
        has_more, next_cursor = data.get("has_more"), data.get("cursor")
        if not isinstance(has_more, bool) or (has_more and as_int(next_cursor) is None):
            raise UpstreamError("invalid_data", f"{which} page state malformed", provider=self.name)
        records = [user_record({"uniqueId": i["username"], "nickname": as_text(i.get("display_name"))}, None)
                   for i in items]
        ids = [boundary_id(which, handle, follower_key(r)) for r in records]
        repeated = 0
        while repeated < len(ids) and ids[repeated] in boundary:
            repeated += 1  # the end of the previous page again ("on or before" the cursor)
        if before is not None and has_more and next_cursor >= before:
            next_cursor = before - 1  # never hand out a cursor that does not move
        next_page = encode_cursor(next_cursor, ids[-BOUNDARY_IDS:]) if as_int(next_cursor) is not None else None
        return Page(records=records[repeated:], next_cursor=next_page, max_cursor=None, has_more=has_more,
                    total=None)

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._list("followers", handle, cursor, count)

    def list_following(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._list("following", handle, cursor, count)
