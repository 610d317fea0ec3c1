"""Delivery of the outbox: claim due deliveries, send one attempt, record its outcome.

A delivery row is claimed by moving its ``next_attempt_at`` a lease ahead (so a crashed
sender's row comes back by itself); the lease (:func:`.options.delivery_lease`) outlives the
longest attempt, which :mod:`.webhook_post` bounds with one deadline, so two senders never
POST the same delivery at once. Claims hand out at most ``delivery_per_host`` attempts at
once per receiver host (``host:port``) and ``delivery_per_key`` per hook owner, so a slow or
dead receiver, or one key with many of them, holds a bounded share of the sender.

Outcomes: 2xx delivered. 410: the subscription is deleted with its pending deliveries (and
its watch, if no other subscription uses it). Anything else, a timeout or a redirect (never
followed): retried after ``webhook_retry_schedule[attempt]`` seconds with -10 % to +20 %
jitter, or later if the receiver's ``Retry-After`` asks; failed after the schedule. A hook
whose deliveries have failed without a success for ``hook_disable_after`` is disabled, with
the reason in its status, until its owner enables it again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import redact
from ..providers.http import parse_retry_after
from .events import iso
from .outbox import SILENT_STATUSES
from .signing import signed_headers
from .tables import deliveries, delivery_attempts, events, subscriptions
from .targets import target_receiver
from .watches import delete_subscription
from .webhook_post import PostFailed, post

log = logging.getLogger("connector.trigger")

MAX_RETRY_AFTER = 24 * 3600
KEEP_ATTEMPTS = 50       # recent attempts kept per subscription (GET /hooks/<id> shows them)
START_WITHIN = 30.0      # a claimed delivery not started this soon is left for its lease to expire


@dataclass(frozen=True)
class Claimed:
    id: int
    receiver: str        # host:port of the target
    key_id: str          # the hook's owner
    claimed_at: float


@dataclass
class Outcome:
    delivery_id: int
    result: str            # delivered | retry | failed | gone | disabled | skipped
    status_code: int | None = None
    error: str | None = None


def _slots(column, busy: dict[str, int], cap: int):
    """SQL: attempts still allowed for the row's host (or key): ``cap`` less those running."""
    if not busy:
        return sa.literal(cap)
    return sa.case({name: cap - n for name, n in busy.items()}, value=column, else_=cap)


def claim_due_deliveries(store, *, now: float, lease: float, limit: int, due_before: float,
                         busy_hosts: dict[str, int] | None = None, busy_keys: dict[str, int] | None = None,
                         per_host: int = 8, per_key: int = 8) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries, at most ``per_host`` running at once per
    receiver host and ``per_key`` per hook owner (``busy_*``: those running now), oldest
    first within a host, hosts taking turns."""
    busy_hosts = {h: n for h, n in (busy_hosts or {}).items() if n > 0}
    busy_keys = {k: n for k, n in (busy_keys or {}).items() if n > 0}
    d, s = deliveries.alias("d"), subscriptions.alias("s")
    order = (d.c.next_attempt_at, d.c.id)
    candidates = (sa.select(d.c.id, d.c.next_attempt_at, s.c.target_host, s.c.target_url, s.c.key_id,
                            sa.func.row_number().over(partition_by=s.c.target_host, order_by=order).label("rn"),
                            sa.func.row_number().over(partition_by=s.c.key_id, order_by=order).label("rk"))
                  .select_from(d.join(s, s.c.id == d.c.subscription_id))
                  .where(d.c.status == "pending", d.c.next_attempt_at <= due_before,
                         s.c.status.notin_(SILENT_STATUSES)))
    full_hosts = [host for host, n in busy_hosts.items() if n >= per_host]
    if full_hosts:
        candidates = candidates.where(sa.or_(s.c.target_host.is_(None), s.c.target_host.notin_(full_hosts)))
    full_keys = [key for key, n in busy_keys.items() if n >= per_key]
    if full_keys:
        candidates = candidates.where(s.c.key_id.notin_(full_keys))
    c = candidates.subquery()
    pick = (sa.select(c.c.id, c.c.target_host, c.c.target_url, c.c.key_id)
            .where(c.c.rn <= _slots(c.c.target_host, busy_hosts, per_host),
                   c.c.rk <= _slots(c.c.key_id, busy_keys, per_key))
            .order_by(c.c.rn, c.c.next_attempt_at, c.c.id).limit(limit))
    with store.write() as conn:
        picked = {row.id: (row.target_host or target_receiver(row.target_url), row.key_id)
                  for row in conn.execute(pick)}
        if not picked:
            return []
        mine = deliveries.c.id.in_(list(picked))
        if store.dialect == "postgresql":   # another sender may be claiming the same rows: skip its
            mine = deliveries.c.id.in_(sa.select(deliveries.c.id).where(deliveries.c.id.in_(list(picked)))
                                       .with_for_update(skip_locked=True).scalar_subquery())
        claimed = conn.execute(deliveries.update()
                               .where(mine, deliveries.c.status == "pending",
                                      deliveries.c.next_attempt_at <= due_before)
                               .values(next_attempt_at=now + lease, claimed_until=now + lease)
                               .returning(deliveries.c.id)).scalars().all()
    return [Claimed(id=i, receiver=picked[i][0], key_id=picked[i][1], claimed_at=now) for i in sorted(claimed)]


def retry_delay(schedule: tuple[int, ...], attempts: int, retry_after: float | None,
                rng: random.Random | None = None) -> float | None:
    """Seconds before the next try after ``attempts`` failed ones; None when the schedule is spent."""
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1] * (rng or random).uniform(0.9, 1.2)
    if retry_after is not None:
        base = max(base, min(retry_after, MAX_RETRY_AFTER))
    return base


def _error_text(status: int, body: bytes, secret: str) -> str:
    error = f"HTTP {status}"
    if 300 <= status < 400:
        return error + " (redirects are not followed; use the final URL)"
    snippet = " ".join(body[:400].decode("utf-8", "replace").split())[:200]
    return f"{error}: {redact(snippet, (secret,))}" if snippet else error


def deliver_one(svc, claimed: Claimed, *, rng: random.Random | None = None, resolve=None) -> Outcome:
    """Send one claimed delivery and record the outcome."""
    settings = svc.settings
    if svc.clock() - claimed.claimed_at > START_WITHIN:   # too late to start inside the lease: leave it
        return Outcome(claimed.id, "skipped")
    with svc.store.connect() as conn:
        row = conn.execute(
            sa.select(deliveries.c.id, deliveries.c.attempts, deliveries.c.event_id,
                      deliveries.c.subscription_id, subscriptions.c.watch_id, subscriptions.c.target_url,
                      subscriptions.c.secret, subscriptions.c.failing_since, events.c.payload)
            .select_from(deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                         .join(events, events.c.id == deliveries.c.event_id))
            .where(deliveries.c.id == claimed.id, deliveries.c.status == "pending",
                   subscriptions.c.status.notin_(SILENT_STATUSES))).first()
    if row is None:
        return Outcome(claimed.id, "gone")
    status_code, error, retry_after = None, None, None
    started = svc.clock()
    headers = signed_headers(row.secret, row.event_id, row.payload, int(started))
    try:
        kwargs = {"resolve": resolve} if resolve is not None else {}
        answer = post(row.target_url, row.payload.encode(), headers, allow_private=settings.allow_private_targets,
                      timeout=settings.delivery_timeout, max_bytes=settings.delivery_max_response_bytes, **kwargs)
        status_code = answer.status
        if not 200 <= status_code < 300:
            error = _error_text(status_code, answer.body, row.secret)
            retry_after = parse_retry_after(answer.headers.get("retry-after"))
    except PostFailed as exc:
        error = exc.message
    now = svc.clock()
    return _record(svc, row, claimed.id, status_code, error, retry_after, started, now, rng)


def _record(svc, row, delivery_id, status_code, error, retry_after, started, now, rng) -> Outcome:
    settings = svc.settings
    attempts = row.attempts + 1
    failing_since = None if error is None else (row.failing_since or started)
    disable = error is not None and now - failing_since >= settings.hook_disable_after
    with svc.store.write() as conn:
        if status_code == 410:
            # The receiver says the subscription is gone (Zapier does this on unsubscribe).
            delete_subscription(conn, row.subscription_id, row.watch_id)
            log.info("subscription %s answered 410; deleted", row.subscription_id)
            return Outcome(delivery_id, "gone", status_code, error)
        values = {"last_error": error, "last_called_at": now, "failing_since": failing_since}
        if disable:
            values.update(status="disabled", status_reason=(
                f"Disabled: deliveries have failed since {iso(failing_since)} without a success "
                f"(last: {error}). Fix the receiver, then enable the hook again: "
                'PATCH /api/v1/hooks/<id> {"enabled": true}.'))
        still_there = conn.execute(subscriptions.update().where(subscriptions.c.id == row.subscription_id)
                                   .values(**values)).rowcount
        if not still_there:  # unsubscribed while we were sending
            return Outcome(delivery_id, "gone", status_code, error)
        conn.execute(delivery_attempts.insert().values(
            subscription_id=row.subscription_id, event_id=row.event_id, attempted_at=now,
            status_code=status_code, error=error, duration_ms=int(max(0.0, now - started) * 1000)))
        if error is None:
            values = {"status": "delivered", "delivered_at": now}
            result = "delivered"
        else:
            delay = retry_delay(settings.webhook_retry_schedule, attempts, retry_after, rng)
            result = "failed" if delay is None else ("disabled" if disable else "retry")
            values = {"status": "failed"} if delay is None else {"next_attempt_at": now + delay}
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(
            attempts=attempts, last_status=status_code, last_error=error, claimed_until=None, **values))
        if delivery_id % 10 == 0:
            _prune_attempts(conn, row.subscription_id)
    if error is not None:
        log.info("delivery %s of %s to subscription %s: %s (%s)", delivery_id, row.event_id,
                 row.subscription_id, error, result)
    if disable:
        log.warning("subscription %s disabled: failing since %s", row.subscription_id, iso(failing_since))
    return Outcome(delivery_id, result, status_code, error)


def _prune_attempts(conn, subscription_id: str) -> None:
    cutoff = conn.execute(
        sa.select(delivery_attempts.c.id).where(delivery_attempts.c.subscription_id == subscription_id)
        .order_by(delivery_attempts.c.id.desc()).offset(KEEP_ATTEMPTS).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(delivery_attempts.delete().where(delivery_attempts.c.subscription_id == subscription_id,
                                                      delivery_attempts.c.id <= cutoff))
