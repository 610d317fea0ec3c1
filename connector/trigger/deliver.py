"""The outbox: signed webhook POSTs with retries for at least 72 hours.

A delivery row is claimed by moving its ``next_attempt_at`` a lease ahead (so a crashed
sender's row comes back by itself), then sent with Standard Webhooks headers
(``webhook-id`` is the event id, stable across retries). 2xx: delivered. 410: the
subscription is deleted with its pending deliveries (and its watch, if no other
subscription uses it). Anything else, a timeout or a
redirect (never followed): retried after ``webhook_retry_schedule[attempt]`` seconds with
-10 % to +20 % jitter (the default schedule still spans > 72 h), or later if the receiver's ``Retry-After`` asks; failed after the schedule.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from dataclasses import dataclass

import httpx
import sqlalchemy as sa

from ..errors import ConnectorError, redact
from ..providers.http import parse_retry_after
from .crypto import sign
from .options import TriggerOptions
from .tables import deliveries, delivery_attempts, events, subscriptions
from .targets import pinned_targets
from .watches import delete_subscription

log = logging.getLogger("connector.trigger")

USER_AGENT = "tiktok-connector-webhooks/0.1"
MAX_RETRY_AFTER = 24 * 3600
KEEP_ATTEMPTS = 50   # recent attempts kept per subscription (GET /hooks/<id> shows them)


@dataclass
class Outcome:
    delivery_id: int
    result: str            # delivered | retry | failed | gone
    status_code: int | None = None
    error: str | None = None


def claim_due_deliveries(store, *, limit: int, lease: float, due_before: float) -> list[int]:
    """Lease up to ``limit`` due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
    now = time.time()
    d = deliveries.alias("d")
    pick = (sa.select(d.c.id).where(d.c.status == "pending", d.c.next_attempt_at <= due_before)
            .order_by(d.c.next_attempt_at, d.c.id).limit(limit))
    if store.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True, of=d)
    stmt = (deliveries.update()
            .where(deliveries.c.id.in_(pick.scalar_subquery()), deliveries.c.status == "pending",
                   deliveries.c.next_attempt_at <= due_before)
            .values(next_attempt_at=now + lease)
            .returning(deliveries.c.id))
    with store.write() as conn:
        return list(conn.execute(stmt).scalars())


def retry_delay(schedule: tuple[int, ...], attempts: int, retry_after: float | None,
                rng: random.Random | None = None) -> float | None:
    """Seconds before the next try after ``attempts`` failed ones; None when the schedule is spent."""
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1] * (rng or random).uniform(0.9, 1.2)
    if retry_after is not None:
        base = max(base, min(retry_after, MAX_RETRY_AFTER))
    return base


def signed_headers(secret: str, msg_id: str, body: str, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, msg_id, timestamp, body)}


def deliver_one(store, settings, client: httpx.Client, delivery_id: int,
                rng: random.Random | None = None) -> Outcome:
    """Send one claimed delivery and record the outcome."""
    with store.connect() as conn:
        row = conn.execute(
            sa.select(deliveries.c.id, deliveries.c.attempts, deliveries.c.event_id,
                      deliveries.c.subscription_id, subscriptions.c.watch_id, subscriptions.c.target_url,
                      subscriptions.c.secret, events.c.payload)
            .select_from(deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                         .join(events, events.c.id == deliveries.c.event_id))
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")).first()
    if row is None:
        return Outcome(delivery_id, "gone")
    started = time.monotonic()
    status_code, error, retry_after = None, None, None
    try:
        response = post_pinned(client, row.target_url, row.payload.encode(),
                               signed_headers(row.secret, row.event_id, row.payload),
                               allow_private=settings.allow_private_targets)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
            if 300 <= status_code < 400:
                error += " (redirects are not followed; use the final URL)"
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except ConnectorError as exc:
        error = exc.message
    except httpx.TimeoutException:
        error = "timed out"
    except httpx.HTTPError as exc:
        error = redact(f"{type(exc).__name__}: {exc}", (row.secret,))
    duration_ms = int((time.monotonic() - started) * 1000)
    now = time.time()
    attempts = row.attempts + 1
    with store.write() as conn:
        if status_code == 410:
            # The receiver says the subscription is gone (Zapier does this on unsubscribe).
            delete_subscription(conn, row.subscription_id, row.watch_id)
            log.info("subscription %s answered 410; deleted", row.subscription_id)
            return Outcome(delivery_id, "gone", status_code, error)
        still_there = conn.execute(subscriptions.update().where(subscriptions.c.id == row.subscription_id)
                                   .values(last_error=error, last_called_at=now)).rowcount
        if not still_there:  # unsubscribed while we were sending
            return Outcome(delivery_id, "gone", status_code, error)
        conn.execute(delivery_attempts.insert().values(
            subscription_id=row.subscription_id, event_id=row.event_id, attempted_at=now,
            status_code=status_code, error=error, duration_ms=duration_ms))
        if error is None:
            values = {"status": "delivered", "delivered_at": now}
            result = "delivered"
        else:
            delay = retry_delay(settings.webhook_retry_schedule, attempts, retry_after, rng)
            result = "failed" if delay is None else "retry"
            values = {"status": "failed"} if delay is None else {"next_attempt_at": now + delay}
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(
            attempts=attempts, last_status=status_code, last_error=error, **values))
        if delivery_id % 10 == 0:
            _prune_attempts(conn, row.subscription_id)
    if error is not None:
        log.info("delivery %s of %s to subscription %s: %s (%s)", delivery_id, row.event_id,
                 row.subscription_id, error, result)
    return Outcome(delivery_id, result, status_code, error)


def post_pinned(client: httpx.Client, target_url: str, body: bytes, headers: dict, *,
                allow_private: bool, resolve=socket.getaddrinfo) -> httpx.Response:
    """POST to the addresses the target's name resolves to now, each checked, in turn until
    one connects (so a name cannot be re-pointed inside between the check and the send)."""
    *others, last = pinned_targets(target_url, allow_private=allow_private, resolve=resolve)
    for url, host, extensions in others:
        try:
            return client.post(url, content=body, headers={**headers, **host}, extensions=extensions)
        except httpx.ConnectError:
            continue
    url, host, extensions = last
    return client.post(url, content=body, headers={**headers, **host}, extensions=extensions)


def _prune_attempts(conn, subscription_id: str) -> None:
    cutoff = conn.execute(
        sa.select(delivery_attempts.c.id).where(delivery_attempts.c.subscription_id == subscription_id)
        .order_by(delivery_attempts.c.id.desc()).offset(KEEP_ATTEMPTS).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(delivery_attempts.delete().where(delivery_attempts.c.subscription_id == subscription_id,
                                                      delivery_attempts.c.id <= cutoff))


def webhook_client(settings) -> httpx.Client:
    opts = TriggerOptions.from_settings(settings)
    return httpx.Client(timeout=opts.delivery_timeout, follow_redirects=False,
                        limits=httpx.Limits(max_connections=max(10, opts.delivery_threads * 2)))
