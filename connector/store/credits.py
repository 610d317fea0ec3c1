"""Credits: reserved before the upstream call and refunded if it fails, so only successes cost.

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
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .schema import api_keys, credit_leases

if TYPE_CHECKING:
    from .keys import Caller

log = logging.getLogger("connector")

LEASE_MAX = 25          # credits in one block at most
LEASE_FRACTION = 16     # ... and at most 1/16 of the balance
LEASE_TTL = 30.0        # seconds a block may be spent from before it goes back
LEASE_GRACE = 120.0     # seconds after expiry before another process hands back a dead holder's block
LEASE_REPORT = 1.0      # seconds between reports of what is left of a block


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


class CreditLeases:
    """Credits and credit leases for :class:`~connector.store.keys.KeyStore` (its store and clock)."""

    def _init_credits(self) -> None:
        self._credit_leases: dict[str, _CreditLease] = {}
        self._credit_lock = threading.Lock()
        self._holder_pid = None
        self.holder = ""
        self._at_exit = False

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

    def reserve(self, caller: "Caller", cost: int) -> bool:
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

    def refund(self, caller: "Caller", cost: int) -> None:
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
