"""Caller keys, credits and per-minute rate limits.

Keys are random (``tc_`` + 43 characters) and stored only as SHA-256 hashes. Credits are
reserved with one conditional UPDATE before the upstream call and refunded if it fails, so
a balance never goes below zero however many requests race, and only successes cost.
Keys from ``CONNECTOR_API_KEYS`` have no credit limit and the default rate limit.
"""

from __future__ import annotations

import hashlib
import secrets
import time
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
        self.static = {hash_key(k): Caller(id="static_" + hash_key(k)[:12], name="CONNECTOR_API_KEYS",
                                           credits=None, rate_limit=default_rate_limit, static=True)
                       for k in static_keys}

    # -- management (CLI) ------------------------------------------------------

    def create(self, name: str = "", credits: int | None = None, rate_limit: int | None = None) -> tuple[str, dict]:
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {"id": "key_" + secrets.token_hex(6), "name": name, "key_hash": hash_key(raw),
               "key_prefix": raw[:8], "credits": credits, "rate_limit": rate_limit, "created_at": now()}
        with self.store.begin() as conn:
            conn.execute(api_keys.insert().values(**row))
        return raw, row

    def list(self) -> list[dict]:
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
        with self.store.begin() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                  .values(revoked_at=now()))
        return result.rowcount == 1

    def top_up(self, key_id: str, credits: int) -> int | None:
        """Add credits; returns the new balance (None for a key without a limit)."""
        with self.store.begin() as conn:
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
        """Count one request against the caller's current minute; record its requestSource."""
        t = clock()
        window = int(t // 60)
        dialect = self.store.dialect
        with self.store.begin() as conn:
            count = conn.execute(
                upsert(dialect, rate_windows, {"key_id": caller.id, "window": window, "count": 1},
                       ["key_id", "window"], {"count": rate_windows.c.count + 1})
                .returning(rate_windows.c.count)
            ).scalar_one()
            if count == 1:
                conn.execute(rate_windows.delete().where(rate_windows.c.key_id == caller.id,
                                                         rate_windows.c.window < window - 1))
            if count <= caller.rate_limit:
                stamp = now()
                conn.execute(upsert(dialect, key_usage,
                                    {"key_id": caller.id, "action": action, "request_source": request_source,
                                     "requests": 1, "credits_spent": 0, "last_used_at": stamp},
                                    ["key_id", "action", "request_source"],
                                    {"requests": key_usage.c.requests + 1, "last_used_at": stamp}))
        return RateState(limit=caller.rate_limit, remaining=max(0, caller.rate_limit - count),
                         reset_in=max(1, 60 - int(t % 60)), allowed=count <= caller.rate_limit)

    def reserve(self, caller: Caller, cost: int) -> bool:
        """Take ``cost`` credits if the balance allows it. Never goes below zero."""
        if caller.credits is None or cost <= 0:
            return True
        with self.store.begin() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.id == caller.id, api_keys.c.credits >= cost)
                                  .values(credits=api_keys.c.credits - cost))
        return result.rowcount == 1

    def refund(self, caller: Caller, cost: int) -> None:
        if caller.credits is None or cost <= 0:
            return
        with self.store.begin() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == caller.id)
                         .values(credits=api_keys.c.credits + cost))

    def record_spend(self, caller: Caller, action: str, request_source: str, cost: int) -> None:
        if cost <= 0:
            return
        with self.store.begin() as conn:
            conn.execute(key_usage.update()
                         .where(key_usage.c.key_id == caller.id, key_usage.c.action == action,
                                key_usage.c.request_source == request_source)
                         .values(credits_spent=key_usage.c.credits_spent + cost, last_used_at=now()))
