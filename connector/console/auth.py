"""Who may use the console: the operator, signed in with ``CONNECTOR_ADMIN_KEY``.

- Signing in compares the key entered with the admin key in constant time (SHA-256 digests
  compared with :func:`hmac.compare_digest`). Caller keys (``tc_…``) never open the console;
  an ``Authorization`` header is not even read.
- Sessions are kept on the server (table ``console_sessions``): the cookie carries only a
  random id, stored as its SHA-256 with the session's CSRF token, its expiry and a fingerprint
  of the admin key it was opened with. Signing out deletes the row, so a copied cookie stops
  working everywhere; a session opened under another admin key is refused (changing the key
  signs every browser out). The cookie is HttpOnly, SameSite=Strict, limited to ``/console/``
  and Secure when the request came over HTTPS.
- Every form that changes something carries the session's CSRF token; the sign-in form, before
  there is a session, the token of a short-lived signed cookie of its own (double submit).
- Failed sign-ins are limited per client address and over all addresses
  (:class:`SignInThrottle`, token buckets, per process); beyond them the form answers 429 with
  ``Retry-After`` before the key is even compared, and a log line names the address (never the
  key entered).
- Time comes from ``svc.clock``, so tests move time instead of waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from ..store.schema import console_sessions

SESSION_COOKIE = "connector_console"
LOGIN_COOKIE = "connector_console_login"
COOKIE_PATH = "/console/"
SESSION_SECONDS = 12 * 3600
LOGIN_SECONDS = 3600
# Failed sign-ins: (attempts at once, seconds until one more is allowed).
PER_ADDRESS = (10, 30.0)
OVERALL = (100, 1.0)


def cookie_secret(admin_key: str) -> bytes:
    """The sign-in form cookie's signing secret: an HMAC of a fixed label under the admin key."""
    return hmac.new(admin_key.encode("utf-8", "surrogatepass"), b"connector console cookie v1",
                    hashlib.sha256).digest()


def admin_fingerprint(admin_key: str) -> str:
    """What a session remembers of the admin key it was opened with (never the key)."""
    return hmac.new(admin_key.encode("utf-8", "surrogatepass"), b"connector console session v1",
                    hashlib.sha256).hexdigest()


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def is_admin_key(admin_key: str, entered: str) -> bool:
    digest = hashlib.sha256
    return hmac.compare_digest(digest(admin_key.encode("utf-8", "surrogatepass")).digest(),
                               digest(entered.encode("utf-8", "surrogatepass")).digest())


def same_token(expected: str | None, got: str | None) -> bool:
    return bool(expected) and bool(got) and hmac.compare_digest(expected.encode(), got.encode()[:200])


class Gate:
    """Opens, reads and ends console sessions; makes and reads the sign-in form's cookie."""

    def __init__(self, admin_key: str, clock, store):
        self.clock = clock
        self.store = store
        self._signer = URLSafeSerializer(cookie_secret(admin_key), salt="connector-console")
        self._admin_key = admin_key
        self._fingerprint = admin_fingerprint(admin_key)

    def check_key(self, entered: str) -> bool:
        return is_admin_key(self._admin_key, entered)

    def new_session(self) -> tuple[str, str]:
        """``(csrf token, cookie value)`` of a newly signed-in browser. Expired sessions, and
        those of a previous admin key, are deleted on the way."""
        session_id, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        with self.store.write() as conn:
            conn.execute(console_sessions.delete().where(sa.or_(
                console_sessions.c.expires_at < now, console_sessions.c.admin_fingerprint != self._fingerprint)))
            conn.execute(console_sessions.insert().values(
                id_hash=_id_hash(session_id), csrf=csrf, admin_fingerprint=self._fingerprint, created_at=now,
                expires_at=now + SESSION_SECONDS))
        return csrf, session_id

    def session(self, value: str | None) -> str | None:
        """The CSRF token of the session this cookie value names, if it is open, else None."""
        if not value or len(value) > 100 or not value.isascii():
            return None
        with self.store.connect() as conn:
            row = conn.execute(sa.select(console_sessions.c.csrf, console_sessions.c.admin_fingerprint,
                                         console_sessions.c.expires_at)
                               .where(console_sessions.c.id_hash == _id_hash(value))).first()
        if row is None or row.expires_at < self.clock() \
                or not hmac.compare_digest(row.admin_fingerprint, self._fingerprint):
            return None
        return row.csrf

    def end_session(self, value: str | None) -> None:
        """Sign out: the session is deleted, wherever its cookie was copied."""
        if value and len(value) <= 100 and value.isascii():
            with self.store.write() as conn:
                conn.execute(console_sessions.delete().where(console_sessions.c.id_hash == _id_hash(value)))

    def new_login(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        return token, self._signer.dumps({"kind": "login", "csrf": token, "exp": self.clock() + LOGIN_SECONDS})

    def login(self, value: str | None) -> str | None:
        if not value or len(value) > 1024:
            return None
        try:
            data = self._signer.loads(value)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("kind") != "login" or not isinstance(data.get("csrf"), str):
            return None
        exp = data.get("exp")
        if not isinstance(exp, (int, float)) or exp < self.clock():
            return None
        return data["csrf"]


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens, self.at = tokens, at


class SignInThrottle:
    """Failed console sign-ins allowed per client address and overall: a token bucket each
    (``(burst, seconds per token)``), on the clock passed in. Only failures take a token; when
    a bucket is empty every attempt is refused before the key is compared. Counted in this
    process (gunicorn's workers each count)."""

    MAX_ADDRESSES = 10_000

    def __init__(self, clock, per_address: tuple[int, float] = PER_ADDRESS, overall: tuple[int, float] = OVERALL):
        self.clock = clock
        self.per_address, self.overall = per_address, overall
        self._addresses: dict[str, _Bucket] = {}
        self._all = _Bucket(float(overall[0]), clock())
        self._lock = threading.Lock()

    @staticmethod
    def _fill(bucket: _Bucket, rule: tuple[int, float], now: float) -> None:
        burst, every = rule
        bucket.tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.at) / every)
        bucket.at = now

    def _bucket(self, address: str, now: float) -> _Bucket:
        bucket = self._addresses.get(address)
        if bucket is None:
            if len(self._addresses) >= self.MAX_ADDRESSES:   # bounded: forget addresses whose bucket refilled
                for other in list(self._addresses):
                    self._fill(self._addresses[other], self.per_address, now)
                    if self._addresses[other].tokens >= self.per_address[0]:
                        del self._addresses[other]
            bucket = self._addresses[address] = _Bucket(float(self.per_address[0]), now)
        return bucket

    def wait(self, address: str) -> tuple[int, str] | None:
        """``(seconds, whose limit)`` before a sign-in from ``address`` may be tried, or None."""
        now = self.clock()
        with self._lock:
            mine = self._bucket(address, now)
            self._fill(mine, self.per_address, now)
            self._fill(self._all, self.overall, now)
            waits = []
            if mine.tokens < 1:
                waits.append((math.ceil((1 - mine.tokens) * self.per_address[1]), "this address"))
            if self._all.tokens < 1:
                waits.append((math.ceil((1 - self._all.tokens) * self.overall[1]), "all addresses"))
        return max(waits) if waits else None

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            mine = self._bucket(address, now)
            for bucket, rule in ((mine, self.per_address), (self._all, self.overall)):
                self._fill(bucket, rule, now)
                bucket.tokens = max(0.0, bucket.tokens - 1)


def set_cookie(response, name: str, value: str, seconds: int, secure: bool) -> None:
    response.set_cookie(name, value, max_age=seconds, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=secure)


def clear_cookie(response, name: str, secure: bool) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=secure)
