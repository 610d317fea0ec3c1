"""Caller keys: created, listed, revoked, topped up, and authenticated on every request.

Keys are random (``tc_`` + 43 characters) and stored only as SHA-256 hashes; a key found in the
database is trusted ``AUTH_CACHE_SECONDS`` before it is looked up again. Keys from
``CONNECTOR_API_KEYS`` have no credit limit and the default rate limit.

:class:`KeyStore` is what the service holds; each of its other jobs is a module of its own:
per-minute rate limits (:mod:`.rates`), credits and credit leases (:mod:`.credits`), usage
statistics (:mod:`.usage`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from . import Store
from .credits import LEASE_GRACE, LEASE_MAX, LEASE_TTL, CreditLeases
from .rates import RateState, RateWindows
from .schema import api_keys, key_usage
from .usage import UsageLog

__all__ = ["AUTH_CACHE_SECONDS", "Caller", "KeyStore", "LEASE_GRACE", "LEASE_MAX", "LEASE_TTL", "RateState",
           "hash_key"]

KEY_PREFIX = "tc_"
AUTH_CACHE_SECONDS = 1.0  # a key found in the database is trusted this long before it is looked up again


def now() -> datetime:
    return datetime.now(timezone.utc)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Caller:
    """An authenticated caller key."""

    id: str
    name: str
    credits: int | None     # None: no credit limit
    rate_limit: int
    static: bool = False


class KeyStore(RateWindows, CreditLeases, UsageLog):
    """Caller keys, and (through its bases) their rate limits, credits and usage."""

    def __init__(self, store: Store, static_keys: tuple[str, ...] = (), default_rate_limit: int = 120,
                 clock=time.time):
        self.store = store
        self.default_rate_limit = default_rate_limit
        self.clock = clock
        self._auth_cache: dict[str, tuple[Caller, float]] = {}   # key hash -> (caller, when looked up)
        self._init_rates()
        self._init_credits()
        self._init_usage()
        self.static = {hash_key(k): Caller(id="static_" + hash_key(k)[:12], name="CONNECTOR_API_KEYS",
                                           credits=None, rate_limit=default_rate_limit, static=True)
                       for k in static_keys}

    # -- management (CLI) ------------------------------------------------------

    def create(self, name: str = "", credits: int | None = None, rate_limit: int | None = None) -> tuple[str, dict]:
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {"id": "key_" + secrets.token_hex(6), "name": name, "key_hash": hash_key(raw),
               "key_prefix": raw[:8], "credits": credits, "rate_limit": rate_limit, "created_at": now()}
        with self.store.write() as conn:
            conn.execute(api_keys.insert().values(**row))
        return raw, row

    def list(self) -> list[dict]:
        self.flush_usage()
        with self.store.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
            usage = conn.execute(
                sa.select(key_usage.c.key_id, key_usage.c.request_source,
                          sa.func.sum(key_usage.c.requests).label("requests"))
                .group_by(key_usage.c.key_id, key_usage.c.request_source)
            ).all()
            leased = self.leased_credits(conn)
        by_key: dict[str, dict] = {}
        for key_id, source, count in usage:
            by_key.setdefault(key_id, {})[source] = int(count)
        return [{**{k: v for k, v in row.items() if k != "key_hash"},
                 "credits": None if row["credits"] is None else row["credits"] + leased.get(row["id"], 0),
                 "requests": by_key.get(row["id"], {})}
                for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self.store.write() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                  .values(revoked_at=now()))
        self._auth_cache.clear()
        return result.rowcount == 1

    def top_up(self, key_id: str, credits: int) -> int | None:
        """Add credits; returns the new balance (None for a key without a limit)."""
        with self.store.write() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.id == key_id, api_keys.c.credits.is_not(None))
                                  .values(credits=api_keys.c.credits + credits))
            if result.rowcount != 1:
                exists = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id)).first()
                if exists is None:
                    raise KeyError(key_id)
                return None
        return self.balance(key_id)

    # -- the request path ------------------------------------------------------

    def authenticate(self, raw: str | None) -> Caller | None:
        if not raw or len(raw) > 256:
            return None
        digest = hash_key(raw)
        if digest in self.static:
            return self.static[digest]
        # A key looked up less than AUTH_CACHE_SECONDS ago is not looked up again: a revocation
        # made by another process takes effect within that time (this process's own at once).
        t = self.clock()
        cached = self._auth_cache.get(digest)
        if cached is not None and 0 <= t - cached[1] < AUTH_CACHE_SECONDS:
            return cached[0]
        with self.store.connect() as conn:
            row = conn.execute(sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.credits,
                                         api_keys.c.rate_limit)
                               .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
                               ).first()
        if row is None:
            self._auth_cache.pop(digest, None)
            return None
        caller = Caller(id=row.id, name=row.name, credits=row.credits,
                        rate_limit=row.rate_limit or self.default_rate_limit)
        if len(self._auth_cache) >= 10_000:   # bounded: many keys simply take turns in the database
            self._auth_cache.clear()
        self._auth_cache[digest] = (caller, t)
        return caller

    def close(self) -> None:
        self.release_credit_leases()
