"""The outbox commit: everything one poll learnt, in ONE transaction.

The lease check, the watch's status and cursors, the billing statuses, the seen
followers, the new events (oldest first, so ``seq`` puts the newest last), a delivery row
per hook and an inbox row per polling subscription that may see each event. Ids are
deterministic and every insert is ``ON CONFLICT DO NOTHING``, so a poll that dies before
its commit is redone without a trace, and two pollers that raced commit every event once.

The subscriptions are read again inside the transaction (and locked against deletion on
PostgreSQL), so a hook deleted while its watch was being read simply receives nothing. A
commit that fails for any reason gives every credit the poll took back; a key that can no
longer receive anything of the poll (unsubscribed, paused or disabled meanwhile) gets its
credits back too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from ..store import insert_ignore
from .billing import Tab, settle
from .events import dumps, event_payload
from .leases import LeaseLost
from .tables import deliveries, events, inbox, seen_followers, subscriptions, watches

log = logging.getLogger("connector.trigger")

# Subscriptions that receive nothing, whatever was paid: their owner paused them, or they failed for days.
SILENT_STATUSES = ("disabled", "paused")


@dataclass
class Found:
    """A new follower, the keys that may receive it (they paid for its page, or share a
    catch-up read), and when its gap opened (``since`` None: found from the top)."""
    key: str
    record: dict
    payers: frozenset
    since: float | None


def store_events(conn, dialect, wid, handle, provider_name, oldest_first, now, *, baseline,
                 recipients: list | None = None) -> int:
    """Seen rows, events and their delivery and inbox rows; returns how many events were new.

    ``recipients[i]`` is ``(hook_ids, poll_ids)`` for the i-th follower of ``oldest_first``.
    """
    inserted = 0
    for index, (key, record) in enumerate(oldest_first):
        conn.execute(insert_ignore(dialect, seen_followers, {"watch_id": wid, "follower_key": key}))
        payload = event_payload(wid, key, record, handle=handle, provider=provider_name, detected_at=now)
        new = conn.execute(insert_ignore(dialect, events, {
            "id": payload["id"], "watch_id": wid, "follower_key": key, "payload": dumps(payload),
            "detected_at": now, "baseline": baseline}).returning(events.c.seq)).first()
        if new is None:
            continue
        inserted += 1
        hook_ids, poll_ids = recipients[index] if recipients is not None else ((), ())
        for sub_id in hook_ids:
            conn.execute(insert_ignore(dialect, deliveries, {
                "subscription_id": sub_id, "event_id": payload["id"], "status": "pending", "attempts": 0,
                "next_attempt_at": now, "created_at": now}))
        for sub_id in poll_ids:
            conn.execute(insert_ignore(dialect, inbox, {"subscription_id": sub_id, "seq": new.seq,
                                                        "created_at": now}))
    return inserted


def _recipients(subs, item: Found) -> tuple[list[str], list[str]]:
    """The hooks and polling subscriptions an event goes to: those whose key may receive its
    page and, for a follower found in a gap, that existed when the gap opened."""
    hooks, polls = [], []
    for sub in subs:
        if sub["key_id"] not in item.payers or sub["status"] in SILENT_STATUSES:
            continue
        if item.since is not None and sub["created_at"] > item.since:
            continue
        (hooks if sub["kind"] == "hook" else polls).append(sub["id"])
    return hooks, polls


def _subscriptions_for_update(conn, dialect: str, wid: str):
    query = (sa.select(subscriptions).where(subscriptions.c.watch_id == wid)
             .order_by(subscriptions.c.created_at, subscriptions.c.id))
    if dialect == "postgresql":   # a concurrent DELETE waits for this commit instead of breaking it
        query = query.with_for_update(read=True, key_share=True)
    return conn.execute(query).mappings().all()


def commit_poll(svc, watch, owner: str, tab: Tab, values: dict, oldest_first: list[Found], *, now: float,
                pages: int = 0, backlog: bool = False, subscriber: str | None = None) -> int:
    """The poll's one transaction; returns how many events were new.

    Raises :class:`LeaseLost` without the lease. On any failure everything ``tab`` holds
    is refunded before the exception goes on. ``subscriber``: the key a catch-up read was
    made for (it has no subscription yet, and keeps what it paid).
    """
    wid, dialect = watch["id"], svc.store.dialect
    next_poll = now if backlog else now + svc.settings.poll_interval
    try:
        with svc.store.write() as conn:
            result = conn.execute(watches.update().where(watches.c.id == wid, watches.c.lease_owner == owner).values(
                last_poll_at=now, next_poll_at=next_poll, lease_owner=None, lease_expires_at=None,
                credits_spent=watches.c.credits_spent + tab.total, pages_read=watches.c.pages_read + pages,
                **values))
            if result.rowcount != 1:
                raise LeaseLost(wid)
            subs = _subscriptions_for_update(conn, dialect, wid)
            # Keys that can no longer receive what they paid for (unsubscribed, paused or
            # disabled while we read) are refunded after the commit.
            receiving = {sub["key_id"] for sub in subs if sub["status"] not in SILENT_STATUSES}
            gone = {k for k, v in tab.charged.items() if v > 0} - receiving - {subscriber}
            if gone:
                conn.execute(watches.update().where(watches.c.id == wid).values(
                    credits_spent=watches.c.credits_spent - sum(tab.charged[k] for k in gone)))
            settle(conn, wid, subs, tab, refunded=gone)
            inserted = store_events(conn, dialect, wid, watch["handle"], watch["provider"],
                                    [(item.key, item.record) for item in oldest_first], now, baseline=False,
                                    recipients=[_recipients(subs, item) for item in oldest_first])
    except BaseException:
        refunded = tab.refund()
        if refunded:
            log.info("poll of watch %s not committed; %d credits refunded", wid, refunded)
        raise
    if gone:
        tab.refund(gone)
    return inserted
