"""Caller keys, credits and per-minute rate limits.

Keys are random (``tc_`` + 43 characters) and stored only as SHA-256 hashes. Credits are
reserved with one conditional UPDATE before the upstream call and refunded if it fails, so
a balance never goes below zero however many requests race, and only successes cost.
Keys from ``CONNECTOR_API_KEYS`` have no credit limit and the default rate limit.

Usage statistics (requests and credits by key, action and requestSource) are counted in
memory and written at most once a second, piggybacked on a rate-limit write, so the hot
path costs one write per request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from . import Store, upsert
from .schema import api_keys, key_usage, rate_windows

KEY_PREFIX = "tc_"


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


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset_in: int
    allowed: bool


class KeyStore:
    def __init__(self, store: Store, static_keys: tuple[str, ...] = (), default_rate_limit: int = 120):
        self.store = store
        self.default_rate_limit = default_rate_limit
        self._usage: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._usage_lock = threading.Lock()
        self._usage_flushed = time.monotonic()
        # key id -> [window, requests left in this process's lease, window count when leased]
        self._leases: dict[str, list[int]] = {}
        self._lease_lock = threading.Lock()
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
        by_key: dict[str, dict] = {}
        for key_id, source, count in usage:
            by_key.setdefault(key_id, {})[source] = int(count)
        return [{**{k: v for k, v in row.items() if k != "key_hash"}, "requests": by_key.get(row["id"], {})}
                for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self.store.write() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                  .values(revoked_at=now()))
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
            return conn.execute(sa.select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar_one()

    def balance(self, key_id: str) -> int | None:
        with self.store.connect() as conn:
            return conn.execute(sa.select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar()

    # -- the request path ------------------------------------------------------

    def authenticate(self, raw: str | None) -> Caller | None:
        if not raw or len(raw) > 256:
            return None
        digest = hash_key(raw)
        if digest in self.static:
            return self.static[digest]
        with self.store.connect() as conn:
            row = conn.execute(sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.credits,
                                         api_keys.c.rate_limit)
                               .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
                               ).first()
        if row is None:
            return None
        return Caller(id=row.id, name=row.name, credits=row.credits,
                      rate_limit=row.rate_limit or self.default_rate_limit)

    def hit(self, caller: Caller, action: str, request_source: str, clock=time.time) -> RateState:
        """Count one request against the caller's current minute; record its requestSource.

        Each process takes the minute's allowance from the database in leases of 1/20 of the
        limit (one write serves that many requests), so with several processes a key may be
        refused up to 5 % early, never let through beyond its limit.
        """
        t = clock()
        window = int(t // 60)
        reset_in = max(1, 60 - int(t % 60))
        with self._lease_lock:
            lease = self._leases.get(caller.id)
            if lease is not None and lease[0] == window and lease[1] > 0:
                lease[1] -= 1
                self._count_usage(caller.id, action, request_source, requests=1)
                return RateState(limit=caller.rate_limit, remaining=max(0, caller.rate_limit - lease[2] + lease[1]),
                                 reset_in=reset_in, allowed=True)
        chunk = max(1, caller.rate_limit // 20)
        with self.store.write() as conn:
            count = conn.execute(
                upsert(self.store.dialect, rate_windows, {"key_id": caller.id, "window": window, "count": chunk},
                       ["key_id", "window"], {"count": rate_windows.c.count + chunk})
                .returning(rate_windows.c.count)
            ).scalar_one()
            granted = chunk - max(0, count - caller.rate_limit)
            if granted < chunk:  # hand back what is beyond the limit; the attempt itself still counts
                count = caller.rate_limit + (1 if granted <= 0 else 0)
                conn.execute(rate_windows.update()
                             .where(rate_windows.c.key_id == caller.id, rate_windows.c.window == window)
                             .values(count=count))
            if count == chunk:  # first lease of this window: prune the old ones
                conn.execute(rate_windows.delete().where(rate_windows.c.key_id == caller.id,
                                                         rate_windows.c.window < window - 1))
            if granted > 0:
                self._count_usage(caller.id, action, request_source, requests=1)
            if time.monotonic() - self._usage_flushed >= 1.0:
                self._flush_usage(conn)
        allowed = granted > 0
        with self._lease_lock:
            self._leases[caller.id] = [window, max(0, granted - 1), min(count, caller.rate_limit)]
        return RateState(limit=caller.rate_limit,
                         remaining=max(0, caller.rate_limit - min(count, caller.rate_limit) + max(0, granted - 1)),
                         reset_in=reset_in, allowed=allowed)

    def reserve(self, caller: Caller, cost: int) -> bool:
        """Take ``cost`` credits if the balance allows it. Never goes below zero."""
        if caller.credits is None or cost <= 0:
            return True
        with self.store.write() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.id == caller.id, api_keys.c.credits >= cost)
                                  .values(credits=api_keys.c.credits - cost))
        return result.rowcount == 1

    def refund(self, caller: Caller, cost: int) -> None:
        if caller.credits is None or cost <= 0:
            return
        with self.store.write() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == caller.id)
                         .values(credits=api_keys.c.credits + cost))

    def record_spend(self, caller: Caller, action: str, request_source: str, cost: int) -> None:
        """Count credits spent in the usage statistics (written with the next flush)."""
        if cost > 0:
            self._count_usage(caller.id, action, request_source, credits=cost)

    # -- usage statistics ------------------------------------------------------

    def _count_usage(self, key_id: str, action: str, source: str, requests: int = 0, credits: int = 0) -> None:
        with self._usage_lock:
            entry = self._usage[(key_id, action, source)]
            entry[0] += requests
            entry[1] += credits

    def _flush_usage(self, conn) -> None:
        with self._usage_lock:
            pending, self._usage = self._usage, defaultdict(lambda: [0, 0])
            self._usage_flushed = time.monotonic()
        stamp = now()
        for (key_id, action, source), (requests, credits) in sorted(pending.items()):
            conn.execute(upsert(self.store.dialect, key_usage,
                                {"key_id": key_id, "action": action, "request_source": source,
                                 "requests": requests, "credits_spent": credits, "last_used_at": stamp},
                                ["key_id", "action", "request_source"],
                                {"requests": key_usage.c.requests + requests,
                                 "credits_spent": key_usage.c.credits_spent + credits,
                                 "last_used_at": stamp}))

    def flush_usage(self) -> None:
        """Write the usage counted so far (listing keys calls it first)."""
        if self._usage:
            with self.store.write() as conn:
                self._flush_usage(conn)
