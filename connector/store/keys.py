"""Caller keys, credits and per-minute rate limits.

Keys are random (``tc_`` + 43 characters) and stored only as SHA-256 hashes. Credits are
reserved before the upstream call and refunded if it fails, so only successes cost. Keys
from ``CONNECTOR_API_KEYS`` have no credit limit and the default rate limit.

Credit leases: a process takes a key's credits from the database in small blocks, with one
conditional UPDATE (``credits >= block``), so a balance never goes below zero however many
requests and processes race, and spends them from memory. A block is at most
``LEASE_MAX`` credits and at most 1/16 of the balance (never less than the request's cost),
so a key with 1 credit left spends exactly it, and near the end of a balance every
reservation is its own UPDATE again, as before leases. Each lease is a ``credit_leases`` row
(holder, key, what is left of it); the holder reports what is left at most a second late and
hands it back to the balance when the lease expires (``LEASE_TTL``), when it closes, and
before it takes the next block; a lease whose holder died is handed back by any other process
``LEASE_GRACE`` after it expired (what the dead holder spent in its last second comes back with
it). A key's balance (``balance``, ``connector keys list``) is its unleased credits plus what
is left of its leases: exact for this process's own, at most a second old for the others'.
A credit held by one process is not available to another until it comes back, so with
several processes a request may be refused while another process still holds the last few
credits of a small balance (at most 1/16 of it); never let through beyond the balance.

Usage statistics (requests and credits by key, action and requestSource) are counted in
memory and written at most once a second, piggybacked on a rate-limit write, so the hot
path costs one write per request.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import secrets
import threading
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from . import Store, upsert
from .schema import api_keys, credit_leases, key_usage, rate_windows

log = logging.getLogger("connector")

KEY_PREFIX = "tc_"
LEASE_MAX = 25          # credits in one block at most
LEASE_FRACTION = 16     # ... and at most 1/16 of the balance
LEASE_TTL = 30.0        # seconds a block may be spent from before it goes back
LEASE_GRACE = 120.0     # seconds after expiry before another process hands back a dead holder's block
LEASE_REPORT = 1.0      # seconds between reports of what is left of a block
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


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset_in: int
    allowed: bool


@dataclass
class _CreditLease:
    remaining: int
    expires_at: float
    reported: float          # clock time of the last report of ``remaining``
    reported_remaining: int


def _release_at_exit(ref) -> None:
    keys = ref()
    if keys is not None:
        try:
            keys.release_credit_leases()
        except Exception as exc:   # the database may be gone at exit; the leases then expire
            log.warning("could not hand back leased credits at exit (%s); other processes reclaim them "
                        "once the leases expire", type(exc).__name__)


class KeyStore:
    def __init__(self, store: Store, static_keys: tuple[str, ...] = (), default_rate_limit: int = 120,
                 clock=time.time):
        self.store = store
        self.default_rate_limit = default_rate_limit
        self.clock = clock
        self._credit_leases: dict[str, _CreditLease] = {}
        self._credit_lock = threading.Lock()
        self._holder_pid = None
        self.holder = ""
        self._at_exit = False
        self._auth_cache: dict[str, tuple[Caller, float]] = {}   # key hash -> (caller, when looked up)
        self._usage: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._usage_lock = threading.Lock()
        self._usage_flushed = self.clock()
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

    def balance(self, key_id: str) -> int | None:
        """Unleased credits plus what is left of every lease on the key (module docstring)."""
        with self.store.connect() as conn:
            credits = conn.execute(sa.select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar()
            if credits is None:
                return None
            return credits + self.leased_credits(conn).get(key_id, 0)

    def leased_credits(self, conn) -> dict[str, int]:
        """Credits left in leases, by key: this process's from memory, the others' as reported
        (add them to ``api_keys.credits`` for a key's balance)."""
        with self._credit_lock:
            own = {k: lease.remaining for k, lease in self._credit_leases.items()}
            holder = self.holder
        leased = dict(conn.execute(sa.select(credit_leases.c.key_id, sa.func.sum(credit_leases.c.credits))
                                   .where(credit_leases.c.holder != holder)
                                   .group_by(credit_leases.c.key_id)).all())
        return {k: int(leased.get(k) or 0) + own.get(k, 0) for k in set(leased) | set(own)}

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

    def hit(self, caller: Caller, action: str, request_source: str, clock=None) -> RateState:
        """Count one request against the caller's current minute; record its requestSource.

        Each process takes the minute's allowance from the database in leases of 1/20 of the
        limit (one write serves that many requests), so with several processes a key may be
        refused up to 5 % early, never let through beyond its limit.
        """
        t = (clock or self.clock)()
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
            if self.clock() - self._usage_flushed >= 1.0:
                self._flush_usage(conn)
        allowed = granted > 0
        with self._lease_lock:
            self._leases[caller.id] = [window, max(0, granted - 1), min(count, caller.rate_limit)]
        return RateState(limit=caller.rate_limit,
                         remaining=max(0, caller.rate_limit - min(count, caller.rate_limit) + max(0, granted - 1)),
                         reset_in=reset_in, allowed=allowed)

    def reserve(self, caller: Caller, cost: int) -> bool:
        """Take ``cost`` credits if the balance allows it (from this process's lease when it
        holds enough, else from a new block). Never goes below zero."""
        if caller.credits is None or cost <= 0:
            return True
        now = self.clock()
        with self._credit_lock:
            self._check_fork()
            lease = self._credit_leases.get(caller.id)
            if lease is not None and now < lease.expires_at and lease.remaining >= cost:
                lease.remaining -= cost
                if now - lease.reported >= LEASE_REPORT:
                    self._report(caller.id, lease, now)
                return True
            return self._lease(caller.id, cost, now)

    def refund(self, caller: Caller, cost: int) -> None:
        if caller.credits is None or cost <= 0:
            return
        with self._credit_lock:
            self._check_fork()
            lease = self._credit_leases.get(caller.id)
            if lease is not None and self.clock() < lease.expires_at:
                lease.remaining += cost
                return
        with self.store.write() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == caller.id)
                         .values(credits=api_keys.c.credits + cost))

    def release_credit_leases(self) -> None:
        """Hand back what is left of every lease this process holds (at shutdown)."""
        with self._credit_lock:
            if not self._credit_leases or os.getpid() != self._holder_pid:
                return
            with self.store.write() as conn:
                for key_id in list(self._credit_leases):
                    self._hand_back(conn, key_id)

    def close(self) -> None:
        self.release_credit_leases()

    # -- credit leases (callers hold self._credit_lock) ---------------------------

    def _check_fork(self) -> None:
        """A forked child must not spend its parent's leases: it starts with none, as a new holder."""
        pid = os.getpid()
        if pid != self._holder_pid:
            self._holder_pid = pid
            self.holder = f"{pid}-{secrets.token_hex(8)}"
            self._credit_leases = {}

    def _hand_back(self, conn, key_id: str) -> None:
        """Give what is left of this process's lease on ``key_id`` back to the balance, unless
        another process already did (the lease had expired long ago)."""
        lease = self._credit_leases.pop(key_id)
        gone = conn.execute(credit_leases.delete().where(credit_leases.c.holder == self.holder,
                                                         credit_leases.c.key_id == key_id)).rowcount
        if gone and lease.remaining:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id, api_keys.c.credits.is_not(None))
                         .values(credits=api_keys.c.credits + lease.remaining))

    def _reclaim_abandoned(self, conn, key_id: str, now: float) -> None:
        """Hand back the blocks of ``key_id`` whose holders let them expire long ago (they died)."""
        stale = conn.execute(sa.select(credit_leases.c.holder, credit_leases.c.credits)
                             .where(credit_leases.c.key_id == key_id,
                                    credit_leases.c.expires_at < now - LEASE_GRACE)).all()
        for holder, credits in stale:
            gone = conn.execute(credit_leases.delete().where(credit_leases.c.holder == holder,
                                                             credit_leases.c.key_id == key_id)).rowcount
            if gone and credits:
                conn.execute(api_keys.update().where(api_keys.c.id == key_id, api_keys.c.credits.is_not(None))
                             .values(credits=api_keys.c.credits + credits))

    def _lease(self, key_id: str, cost: int, now: float) -> bool:
        """Hand back the old block, take a new one of ``cost`` credits or more; False when the
        balance is short of ``cost``."""
        with self.store.write() as conn:
            if key_id in self._credit_leases:
                self._hand_back(conn, key_id)
            self._reclaim_abandoned(conn, key_id, now)
            balance = conn.execute(sa.select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar()
            if balance is None or balance < cost:
                return False
            block = min(max(cost, balance // LEASE_FRACTION), max(cost, LEASE_MAX))
            taken = conn.execute(api_keys.update()
                                 .where(api_keys.c.id == key_id, api_keys.c.credits >= block)
                                 .values(credits=api_keys.c.credits - block)).rowcount
            if taken != 1:   # another process took credits meanwhile: try for just this request
                block = cost
                taken = conn.execute(api_keys.update()
                                     .where(api_keys.c.id == key_id, api_keys.c.credits >= block)
                                     .values(credits=api_keys.c.credits - block)).rowcount
                if taken != 1:
                    return False
            if block > cost:
                conn.execute(credit_leases.insert().values(holder=self.holder, key_id=key_id, credits=block - cost,
                                                           expires_at=now + LEASE_TTL))
                self._credit_leases[key_id] = _CreditLease(remaining=block - cost, expires_at=now + LEASE_TTL,
                                                           reported=now, reported_remaining=block - cost)
                if not self._at_exit:
                    self._at_exit = True
                    atexit.register(_release_at_exit, weakref.ref(self))
        return True

    def _report(self, key_id: str, lease: _CreditLease, now: float) -> None:
        """Write what is left of a lease, so other processes show a true balance."""
        if lease.remaining != lease.reported_remaining:
            with self.store.write() as conn:
                conn.execute(credit_leases.update().where(credit_leases.c.holder == self.holder,
                                                          credit_leases.c.key_id == key_id)
                             .values(credits=lease.remaining))
            lease.reported_remaining = lease.remaining
        lease.reported = now

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
            self._usage_flushed = self.clock()
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
