"""Who may use the console: the operator, signed in once with ``CONNECTOR_ADMIN_KEY``.

- Signing in compares the key entered with the admin key in constant time (SHA-256 digests
  compared with :func:`hmac.compare_digest`). Caller keys (``tc_…``) never open the console;
  an ``Authorization`` header is not even read.
- A signed-in browser holds one cookie: ``{"csrf": token, "exp": unix seconds}`` signed with a
  secret derived from the admin key by HMAC, so changing the key signs every browser out. It is
  HttpOnly, SameSite=Strict, limited to ``/console/`` and Secure when the request came over HTTPS.
- Every form that changes something carries the cookie's CSRF token; the sign-in form, before
  there is a session, the token of a short-lived cookie of its own (double submit).
- Expiry uses ``svc.clock``, so tests move time instead of waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeSerializer

SESSION_COOKIE = "connector_console"
LOGIN_COOKIE = "connector_console_login"
COOKIE_PATH = "/console/"
SESSION_SECONDS = 12 * 3600
LOGIN_SECONDS = 3600


def cookie_secret(admin_key: str) -> bytes:
    """The signing secret: an HMAC of a fixed label under the admin key (never stored)."""
    return hmac.new(admin_key.encode("utf-8", "surrogatepass"), b"connector console cookie v1",
                    hashlib.sha256).digest()


def is_admin_key(admin_key: str, entered: str) -> bool:
    digest = hashlib.sha256
    return hmac.compare_digest(digest(admin_key.encode("utf-8", "surrogatepass")).digest(),
                               digest(entered.encode("utf-8", "surrogatepass")).digest())


def same_token(expected: str | None, got: str | None) -> bool:
    return bool(expected) and bool(got) and hmac.compare_digest(expected.encode(), got.encode()[:200])


class Gate:
    """Makes and reads the console's signed cookies."""

    def __init__(self, admin_key: str, clock):
        self.clock = clock
        self._signer = URLSafeSerializer(cookie_secret(admin_key), salt="connector-console")
        self._admin_key = admin_key

    def check_key(self, entered: str) -> bool:
        return is_admin_key(self._admin_key, entered)

    def _make(self, kind: str, seconds: float) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        return token, self._signer.dumps({"kind": kind, "csrf": token, "exp": self.clock() + seconds})

    def _read(self, kind: str, value: str | None) -> str | None:
        if not value or len(value) > 1024:
            return None
        try:
            data = self._signer.loads(value)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("kind") != kind or not isinstance(data.get("csrf"), str):
            return None
        exp = data.get("exp")
        if not isinstance(exp, (int, float)) or exp < self.clock():
            return None
        return data["csrf"]

    def new_session(self) -> tuple[str, str]:
        """``(csrf token, cookie value)`` of a signed-in browser."""
        return self._make("session", SESSION_SECONDS)

    def session(self, value: str | None) -> str | None:
        """The CSRF token of a valid session cookie, else None."""
        return self._read("session", value)

    def new_login(self) -> tuple[str, str]:
        return self._make("login", LOGIN_SECONDS)

    def login(self, value: str | None) -> str | None:
        return self._read("login", value)


def set_cookie(response, name: str, value: str, seconds: int, secure: bool) -> None:
    response.set_cookie(name, value, max_age=seconds, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=secure)


def clear_cookie(response, name: str, secure: bool) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=secure)
