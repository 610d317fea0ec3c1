"""Retention: what the trigger stores is pruned once nobody can need it.

Events, deliveries, delivery attempts and inbox rows older than ``retention_seconds``
(by default the retry horizon plus 7 days) are deleted, but never a delivery with a retry
still ahead of it, nor its event, in batches of ``prune_batch`` rows, each its own short transaction, so pruning
never holds the database for long. Polling subscriptions nobody has called for
``poll_subscription_ttl`` expire, and their watch with them when nothing else uses it.
Seen followers stay as long as their watch: they are what keeps a follower from firing twice.
"""

from __future__ import annotations

import logging
from collections import Counter

import sqlalchemy as sa

from .tables import deliveries, delivery_attempts, events, inbox, subscriptions
from .watches import delete_subscription

log = logging.getLogger("connector.trigger")


def _delete_batches(store, table, key, old, batch: int) -> int:
    """Delete rows matching ``old`` ``batch`` at a time (by ``key``); returns how many."""
    total = 0
    while True:
        pick = sa.select(key).where(old).limit(batch).scalar_subquery()
        with store.write() as conn:
            deleted = conn.execute(table.delete().where(key.in_(pick), old)).rowcount
        total += deleted
        if deleted < batch:
            return total


def prune(svc) -> Counter:
    """One retention pass at ``svc.clock()``; returns how many rows of each kind went."""
    now = svc.clock()
    settings = svc.settings
    batch = settings.worker.prune_batch
    cutoff = now - settings.retention_seconds
    store = svc.store
    counts: Counter = Counter()
    counts["attempts"] = _delete_batches(store, delivery_attempts, delivery_attempts.c.id,
                                         delivery_attempts.c.attempted_at < cutoff, batch)
    # A delivery still to be retried stays (Retry-After may push retries past the horizon);
    # one waiting for its disabled or paused hook goes once it has waited the whole window.
    counts["deliveries"] = _delete_batches(store, deliveries, deliveries.c.id, sa.and_(
        deliveries.c.created_at < cutoff,
        sa.or_(deliveries.c.status != "pending", deliveries.c.next_attempt_at < cutoff)), batch)
    counts["inbox"] = _delete_batches(store, inbox, inbox.c.seq, inbox.c.created_at < cutoff, batch)
    # An event's inbox rows and deliveries would go with it (ON DELETE CASCADE): keep the
    # events of deliveries still kept.
    kept = sa.exists().where(deliveries.c.event_id == events.c.id)
    counts["events"] = _delete_batches(store, events, events.c.seq,
                                       sa.and_(events.c.detected_at < cutoff, ~kept), batch)

    stale = now - settings.poll_subscription_ttl
    with store.connect() as conn:
        expired = conn.execute(sa.select(subscriptions.c.id, subscriptions.c.watch_id).where(
            subscriptions.c.kind == "poll",
            sa.func.coalesce(subscriptions.c.last_called_at, subscriptions.c.created_at) < stale)
            .limit(batch)).all()
    for sub_id, wid in expired:
        with store.write() as conn:
            delete_subscription(conn, sub_id, wid)
    counts["poll_subscriptions"] = len(expired)
    if any(counts.values()):
        log.info("retention: pruned %s", dict(counts))
    return counts
