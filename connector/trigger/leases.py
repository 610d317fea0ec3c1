"""Leases on watches: which poller owns a watch, until when.

A poller claims a watch by writing its owner name and an expiry; a poller that dies simply
lets the lease run out. Several pollers claim disjoint batches on PostgreSQL with
``FOR UPDATE SKIP LOCKED``; SQLite serialises writers, so one statement is enough there.
Every function takes ``now`` from the caller's clock.
"""

from __future__ import annotations

import os
import socket
import uuid

import sqlalchemy as sa

from .billing import active_subscription_clause
from .tables import watches


class LeaseLost(Exception):
    """Another poller took the watch over (our lease expired): our results are dropped."""


def new_owner() -> str:
    """Lease owner name: host, pid and a random tag (a restarted process is a new owner)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claimable(table, now: float):
    return sa.or_(table.c.lease_owner.is_(None), table.c.lease_expires_at < now)


def claim_watch(store, wid: str, owner: str, lease: float, *, due_only: bool, now: float) -> bool:
    """Take the lease of one watch (if it is free, or expired); False when someone holds it."""
    conditions = [watches.c.id == wid, _claimable(watches, now)]
    if due_only:
        conditions.append(watches.c.next_poll_at <= now)
    with store.write() as conn:
        result = conn.execute(watches.update().where(*conditions)
                              .values(lease_owner=owner, lease_expires_at=now + lease))
    return result.rowcount == 1


def claim_due_watches(store, settings, owner: str, lease: float, *, limit: int, due_before: float,
                      now: float) -> list[str]:
    """Lease up to ``limit`` due watches that someone pays for, in one statement."""
    w = watches.alias("w")
    pick = (sa.select(w.c.id)
            .where(w.c.next_poll_at <= due_before, _claimable(w, now),
                   active_subscription_clause(settings, now, w))
            .order_by(w.c.next_poll_at).limit(limit))
    if store.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True, of=w)
    stmt = (watches.update()
            .where(watches.c.id.in_(pick.scalar_subquery()), _claimable(watches, now))
            .values(lease_owner=owner, lease_expires_at=now + lease)
            .returning(watches.c.id))
    with store.write() as conn:
        return list(conn.execute(stmt).scalars())


def renew_lease(store, wid: str, owner: str, lease: float, *, now: float) -> None:
    """Extend our lease; :class:`LeaseLost` if another poller took it or the watch is gone."""
    with store.write() as conn:
        result = conn.execute(watches.update().where(watches.c.id == wid, watches.c.lease_owner == owner)
                              .values(lease_expires_at=now + lease))
    if result.rowcount != 1:
        raise LeaseLost(wid)


def release_watch(store, wid: str, owner: str, *, retry_at: float | None = None) -> None:
    """Give the lease back; ``retry_at`` puts the next poll off (after a crash, so that the
    same pass does not claim the watch again at once)."""
    values = {"lease_owner": None, "lease_expires_at": None}
    if retry_at is not None:
        values["next_poll_at"] = retry_at
    with store.write() as conn:
        conn.execute(watches.update().where(watches.c.id == wid, watches.c.lease_owner == owner).values(**values))
