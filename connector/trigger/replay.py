"""Replay: send a hook's events again, from a chosen time, with their original ids.

A delivery is one row per (hook, event) (``uq_deliveries_once``), and the events a hook may
receive are exactly those it has delivery rows for (its key paid for their pages, see
:mod:`.billing`). So a replay puts those rows back in the queue: ``pending``, due now, with
a fresh retry schedule. The sender (:mod:`.deliver`) then claims and signs them as usual,
with the same ``webhook-id`` (the event id), so a receiver that deduplicates stays correct.
Events never delivered to the hook (before it existed, or from pages its key did not pay
for) are not sent, and a row a sender holds right now (``claimed_until`` ahead) is left to it.
A paused or disabled hook's replayed rows wait until the hook is enabled again.

:func:`replay_plan` counts what :func:`replay` would send (the operator console's confirm
step); :func:`replay` does it and says how many rows it queued.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import NotFoundError
from .outbox import SILENT_STATUSES
from .tables import deliveries, events, subscriptions


@dataclass(frozen=True)
class ReplayPlan:
    hook_id: str
    since: float          # unix seconds: events detected at or after this
    resend: int           # delivered or failed deliveries that go out again
    queued: int           # pending ones (already waiting for their next attempt), sent now
    sending: int          # being sent right now: left alone
    hook_silent: bool     # paused or disabled: the replay waits until the hook is enabled

    @property
    def total(self) -> int:
        return self.resend + self.queued


def _hook(conn, hook_id: str):
    row = conn.execute(sa.select(subscriptions.c.id, subscriptions.c.status).where(
        subscriptions.c.id == hook_id[:40], subscriptions.c.kind == "hook")).first()
    if row is None:
        raise NotFoundError(f"No hook with id {hook_id[:60]}.")
    return row


def _since(hook_id: str, since: float):
    """The hook's delivery rows whose event was detected at or after ``since``."""
    return sa.and_(deliveries.c.subscription_id == hook_id,
                   deliveries.c.event_id.in_(sa.select(events.c.id).where(events.c.detected_at >= since)))


def _free(now: float):
    return sa.or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now)


def replay_plan(svc, hook_id: str, since: float) -> ReplayPlan:
    """What :func:`replay` would do now, counted (nothing changes)."""
    now = svc.clock()
    with svc.store.connect() as conn:
        hook = _hook(conn, hook_id)
        free = _free(now)
        counts = conn.execute(sa.select(
            sa.func.count().filter(free, deliveries.c.status != "pending"),
            sa.func.count().filter(free, deliveries.c.status == "pending"),
            sa.func.count().filter(sa.not_(free)))
            .where(_since(hook.id, since))).one()
    return ReplayPlan(hook_id=hook.id, since=since, resend=counts[0], queued=counts[1], sending=counts[2],
                      hook_silent=hook.status in SILENT_STATUSES)


def replay(svc, hook_id: str, since: float) -> int:
    """Queue the hook's deliveries of events detected since ``since`` to go out now; returns
    how many rows were queued (delivered, failed and waiting ones; not those being sent)."""
    now = svc.clock()
    with svc.store.connect() as conn:
        hook = _hook(conn, hook_id)
    with svc.store.write() as conn:
        return conn.execute(deliveries.update().where(_since(hook.id, since), _free(now)).values(
            status="pending", attempts=0, next_attempt_at=now, claimed_until=None, delivered_at=None,
            last_status=None, last_error=None)).rowcount
