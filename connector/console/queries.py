"""The console's read queries: watches, hooks, keys, a hook's deliveries, an account's growth.

Every list is one page (``PAGE_SIZE`` rows, ``OFFSET``/``LIMIT``) in an order an index gives
(watches by next poll: ``ix_watches_due``), plus one ``COUNT``; what each row needs besides
(subscriptions, pending deliveries, success rates, usage) is one grouped query over the ids of
that page only, so a page costs the same with ten watches or ten thousand. Nothing here writes:
state changes go through the trigger's domain functions (:mod:`connector.trigger.subscriptions`,
:mod:`connector.trigger.replay`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from ..config import DAY
from ..store.schema import api_keys, credit_leases, key_usage
from ..trigger.billing import active_subscription_clause
from ..trigger.events import GAP
from ..trigger.outbox import SILENT_STATUSES
from ..trigger.tables import deliveries, delivery_attempts, events, seen_followers, subscriptions, watches
from ..trigger.watches import load_gaps

PAGE_SIZE = 50
RECENT = 50            # deliveries and attempts shown on a hook's page
LATEST_FOLLOWERS = 24  # followers shown on an account's page


@dataclass
class TablePage:
    rows: list[dict]
    total: int
    number: int          # 1-based
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return (self.number - 1) * self.size + len(self.rows)


@dataclass(frozen=True)
class Filters:
    key_ids: tuple[str, ...] | None = None   # None: every key
    handle: str = ""                          # part of the handle


def resolve_key(conn, static_ids: dict[str, str], text: str) -> tuple[str, ...]:
    """The key ids a filter names: a key id, a key's name, or its prefix (``tc_…``, as listed)."""
    if text in static_ids:
        return (text,)
    rows = conn.execute(sa.select(api_keys.c.id).where(sa.or_(
        api_keys.c.id == text, sa.func.lower(api_keys.c.name) == text.lower(),
        api_keys.c.key_prefix == text)).order_by(api_keys.c.id)).scalars().all()
    return tuple(rows)


def _watch_filters(filters: Filters) -> list:
    conditions = []
    if filters.key_ids is not None:
        conditions.append(watches.c.id.in_(sa.select(subscriptions.c.watch_id)
                                           .where(subscriptions.c.key_id.in_(filters.key_ids))))
    if filters.handle:
        conditions.append(watches.c.handle.contains(filters.handle, autoescape=True))
    return conditions


def _shown(number: int, total: int, size: int) -> int:
    """The page number shown: one past the last page shows the last."""
    return min(max(1, number), max(1, -(-total // size)))


def _offset(number: int, total: int, size: int) -> int:
    return (_shown(number, total, size) - 1) * size


def _page(number: int, total: int, rows: list[dict], size: int) -> TablePage:
    return TablePage(rows=rows, total=total, number=_shown(number, total, size), size=size)


# -- watches -------------------------------------------------------------------------------

def watches_query(filters: Filters):
    """The watches of a page, next poll first (``ix_watches_due``); without OFFSET/LIMIT."""
    return (sa.select(watches.c.id, watches.c.handle, watches.c.operation, watches.c.provider, watches.c.status,
                      watches.c.last_poll_at, watches.c.next_poll_at, watches.c.last_error,
                      watches.c.list_state, watches.c.pages_read, watches.c.credits_spent,
                      watches.c.lease_owner, watches.c.lease_expires_at, watches.c.poll_interval,
                      watches.c.rate_per_day)
            .where(*_watch_filters(filters)).order_by(watches.c.next_poll_at, watches.c.id))


def watch_page(conn, filters: Filters, number: int = 1, size: int = PAGE_SIZE) -> TablePage:
    total = conn.execute(sa.select(sa.func.count()).select_from(watches)
                         .where(*_watch_filters(filters))).scalar_one()
    rows = [dict(r) for r in conn.execute(watches_query(filters).offset(_offset(number, total, size))
                                          .limit(size)).mappings()]
    counts: dict[str, dict[str, int]] = {}
    if rows:
        for wid, kind, n in conn.execute(
                sa.select(subscriptions.c.watch_id, subscriptions.c.kind, sa.func.count())
                .where(subscriptions.c.watch_id.in_([r["id"] for r in rows]))
                .group_by(subscriptions.c.watch_id, subscriptions.c.kind)):
            counts.setdefault(wid, {})[kind] = n
    for row in rows:
        row["gaps"] = _gaps(row.pop("list_state"))
        row["hooks"] = counts.get(row["id"], {}).get("hook", 0)
        row["polls"] = counts.get(row["id"], {}).get("poll", 0)
    return _page(number, total, rows, size)


def _gaps(raw: str | None) -> int:
    try:
        return len(load_gaps(raw))
    except (ValueError, TypeError):
        return 0


def watch_detail(conn, wid: str) -> dict | None:
    row = conn.execute(sa.select(watches).where(watches.c.id == wid[:40])).mappings().first()
    if row is None:
        return None
    watch = {k: v for k, v in row.items() if k != "credentials_enc"}
    watch["gaps"] = _gaps(watch.pop("list_state"))
    watch["seen"] = conn.execute(sa.select(sa.func.count()).select_from(seen_followers)
                                 .where(seen_followers.c.watch_id == watch["id"])).scalar_one()
    watch["subscriptions"] = [dict(r) for r in conn.execute(
        sa.select(subscriptions.c.id, subscriptions.c.kind, subscriptions.c.key_id, subscriptions.c.status,
                  subscriptions.c.target_host, subscriptions.c.request_source, subscriptions.c.credits_spent,
                  subscriptions.c.last_called_at, api_keys.c.name.label("key_name"))
        .select_from(subscriptions.outerjoin(api_keys, api_keys.c.id == subscriptions.c.key_id))
        .where(subscriptions.c.watch_id == watch["id"])
        .order_by(subscriptions.c.created_at, subscriptions.c.id)).mappings()]
    return watch


# -- an account's growth ---------------------------------------------------------------------

@dataclass
class Growth:
    days: list[tuple[str, int, int]]   # (YYYY-MM-DD, new followers that day, followers known at its end)
    seen: int                          # followers the watch knows now
    baseline: int                      # of which were there when it started watching


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def growth(conn, wid: str, *, now: float, days: int) -> Growth:
    """New followers detected per UTC day over the last ``days`` days (from the day the watch
    began, if later), and the running total.

    The total counts the followers the watch has seen (kept as long as the watch), so it is
    right even where old events were pruned: the total at the end of a day is what is known
    now less what was detected after that day.
    """
    today = int(now // DAY)
    created = conn.execute(sa.select(watches.c.created_at).where(watches.c.id == wid)).scalar()
    # The chart starts on the day the watch began: before it, nothing was known.
    start_day = max(today - days + 1, int(created // DAY) if created is not None else today - days + 1)
    days = today - start_day + 1
    seen = conn.execute(sa.select(sa.func.count()).select_from(seen_followers)
                        .where(seen_followers.c.watch_id == wid)).scalar_one()
    baseline = conn.execute(sa.select(sa.func.count()).select_from(events)
                            .where(events.c.watch_id == wid, events.c.baseline.is_(True))).scalar_one()
    per_day = [0] * days
    for (detected_at,) in conn.execute(sa.select(events.c.detected_at).where(
            events.c.watch_id == wid, events.c.baseline.is_(False), events.c.event != GAP,
            events.c.detected_at >= start_day * DAY)):
        index = int(detected_at // DAY) - start_day
        if 0 <= index < days:
            per_day[index] += 1
    running, later, out = [], 0, []
    for count in reversed(per_day):        # the total at each day's end: today's is `seen`
        running.append(seen - later)
        later += count
    running.reverse()
    for i, count in enumerate(per_day):
        out.append((day_of((start_day + i) * DAY), count, running[i]))
    return Growth(days=out, seen=seen, baseline=baseline)


def latest_events(conn, wid: str, subject: str = "follower", limit: int = LATEST_FOLLOWERS) -> list[dict]:
    """The newest events of a watch, newest first, each as the page shows it: an account
    (the event's ``subject`` field; ``last_seen`` for a lost follower), a milestone, or a gap
    (``missed``: accounts that arrived too fast to be read; one entry whichever triggers were told)."""
    rows = conn.execute(sa.select(events.c.id, events.c.event, events.c.payload, events.c.detected_at,
                                  events.c.baseline)
                        .where(events.c.watch_id == wid).order_by(events.c.seq.desc()).limit(limit)).all()
    out, gaps = [], set()
    for row in rows:
        try:
            payload = json.loads(row.payload)
        except ValueError:
            payload = {}
        entry = {"event_id": row.id, "detected_at": row.detected_at, "baseline": bool(row.baseline),
                 "missed": None, "milestone": None, "last_seen": payload.get("lastSeenAt")}
        if row.event == GAP:
            if row.detected_at in gaps:
                continue
            gaps.add(row.detected_at)
            entry["missed"] = payload.get("missedEstimate")
        elif payload.get("milestone") is not None:
            entry.update(milestone=payload.get("milestone"), count=payload.get("followerCount"))
        account = payload.get(subject) if isinstance(payload.get(subject), dict) else {}
        entry.update(unique_id=account.get("uniqueId"), nickname=account.get("nickname"),
                     verified=bool(account.get("verified")), followers=account.get("followerCount"))
        out.append(entry)
    return out


# -- hooks ---------------------------------------------------------------------------------

def _hook_columns():
    return (subscriptions.c.id, subscriptions.c.key_id, subscriptions.c.status, subscriptions.c.status_reason,
            subscriptions.c.target_url, subscriptions.c.target_host, subscriptions.c.last_error,
            subscriptions.c.failing_since, subscriptions.c.created_at, subscriptions.c.last_called_at,
            subscriptions.c.credits_spent, subscriptions.c.request_source, subscriptions.c.watch_id,
            subscriptions.c.event, watches.c.handle, watches.c.provider, watches.c.status.label("watch_status"),
            watches.c.last_error.label("watch_error"), api_keys.c.name.label("key_name"))


def _hooks_from():
    return (subscriptions.join(watches, watches.c.id == subscriptions.c.watch_id)
            .outerjoin(api_keys, api_keys.c.id == subscriptions.c.key_id))


def _hook_filters(filters: Filters) -> list:
    conditions = [subscriptions.c.kind == "hook"]
    if filters.key_ids is not None:
        conditions.append(subscriptions.c.key_id.in_(filters.key_ids))
    if filters.handle:
        conditions.append(watches.c.handle.contains(filters.handle, autoescape=True))
    return conditions


def _delivery_stats(conn, ids: list[str], now: float) -> tuple[dict, dict]:
    """Pending deliveries, and (attempts, successes) over the last 24 h, of each hook in ``ids``."""
    if not ids:
        return {}, {}
    pending = dict(conn.execute(sa.select(deliveries.c.subscription_id, sa.func.count())
                                .where(deliveries.c.subscription_id.in_(ids), deliveries.c.status == "pending")
                                .group_by(deliveries.c.subscription_id)).all())
    ok = sa.and_(delivery_attempts.c.status_code >= 200, delivery_attempts.c.status_code < 300)
    rates = {sub: (n, good) for sub, n, good in conn.execute(
        sa.select(delivery_attempts.c.subscription_id, sa.func.count(), sa.func.count().filter(ok))
        .where(delivery_attempts.c.subscription_id.in_(ids), delivery_attempts.c.attempted_at >= now - DAY)
        .group_by(delivery_attempts.c.subscription_id))}
    return pending, rates


def hook_status(row) -> str:
    """What a hook's owner sees (as ``GET /api/v1/hooks``): its own status, else its watch's."""
    return row["status"] if row["status"] != "active" else row["watch_status"]


def _with_stats(row: dict, pending: dict, rates: dict) -> dict:
    attempts, good = rates.get(row["id"], (0, 0))
    row.update(pending=pending.get(row["id"], 0), attempts_24h=attempts, successes_24h=good,
               success_rate=(good / attempts if attempts else None), shown_status=hook_status(row))
    return row


def hook_page(conn, filters: Filters, *, now: float, number: int = 1, size: int = PAGE_SIZE) -> TablePage:
    conditions = _hook_filters(filters)
    total = conn.execute(sa.select(sa.func.count()).select_from(_hooks_from()).where(*conditions)).scalar_one()
    rows = [dict(r) for r in conn.execute(
        sa.select(*_hook_columns()).select_from(_hooks_from()).where(*conditions)
        .order_by(subscriptions.c.created_at.desc(), subscriptions.c.id)
        .offset(_offset(number, total, size)).limit(size)).mappings()]
    pending, rates = _delivery_stats(conn, [r["id"] for r in rows], now)
    return _page(number, total, [_with_stats(r, pending, rates) for r in rows], size)


def hook_detail(conn, hook_id: str, *, now: float) -> dict | None:
    row = conn.execute(sa.select(*_hook_columns()).select_from(_hooks_from()).where(
        subscriptions.c.id == hook_id[:40], subscriptions.c.kind == "hook")).mappings().first()
    if row is None:
        return None
    hook = dict(row)
    pending, rates = _delivery_stats(conn, [hook["id"]], now)
    _with_stats(hook, pending, rates)
    hook["attempts"] = [dict(r) for r in conn.execute(
        sa.select(delivery_attempts.c.event_id, delivery_attempts.c.attempted_at, delivery_attempts.c.status_code,
                  delivery_attempts.c.duration_ms, delivery_attempts.c.error)
        .where(delivery_attempts.c.subscription_id == hook["id"])
        .order_by(delivery_attempts.c.id.desc()).limit(RECENT)).mappings()]
    hook["deliveries"] = [dict(r) for r in conn.execute(
        sa.select(deliveries.c.event_id, deliveries.c.status, deliveries.c.attempts, deliveries.c.last_status,
                  deliveries.c.last_error, deliveries.c.next_attempt_at, deliveries.c.delivered_at,
                  deliveries.c.claimed_until, events.c.detected_at)
        .select_from(deliveries.join(events, events.c.id == deliveries.c.event_id))
        .where(deliveries.c.subscription_id == hook["id"])
        .order_by(deliveries.c.id.desc()).limit(RECENT)).mappings()]
    hook["first_event_at"] = conn.execute(
        sa.select(sa.func.min(events.c.detected_at))
        .select_from(deliveries.join(events, events.c.id == deliveries.c.event_id))
        .where(deliveries.c.subscription_id == hook["id"])).scalar()
    return hook


# -- keys ----------------------------------------------------------------------------------

def key_page(conn, key_ids: tuple[str, ...] | None, leased: dict[str, int], *, number: int = 1,
             size: int = PAGE_SIZE) -> TablePage:
    """A page of keys; ``leased``: credits held in leases by key (``KeyStore.leased_credits``),
    part of each balance."""
    conditions = [] if key_ids is None else [api_keys.c.id.in_(key_ids)]
    total = conn.execute(sa.select(sa.func.count()).select_from(api_keys).where(*conditions)).scalar_one()
    rows = [dict(r) for r in conn.execute(
        sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.key_prefix, api_keys.c.credits,
                  api_keys.c.rate_limit, api_keys.c.created_at, api_keys.c.revoked_at)
        .where(*conditions).order_by(api_keys.c.created_at, api_keys.c.id)
        .offset(_offset(number, total, size)).limit(size)).mappings()]
    ids = [r["id"] for r in rows]
    usage: dict[str, dict[str, int]] = {}
    spent: dict[str, int] = {}
    subs: dict[str, dict[str, int]] = {}
    if ids:
        for key_id, source, requests, credits in conn.execute(
                sa.select(key_usage.c.key_id, key_usage.c.request_source, sa.func.sum(key_usage.c.requests),
                          sa.func.sum(key_usage.c.credits_spent))
                .where(key_usage.c.key_id.in_(ids)).group_by(key_usage.c.key_id, key_usage.c.request_source)):
            usage.setdefault(key_id, {})[source] = int(requests or 0)
            spent[key_id] = spent.get(key_id, 0) + int(credits or 0)
        for key_id, kind, status, n in conn.execute(
                sa.select(subscriptions.c.key_id, subscriptions.c.kind, subscriptions.c.status, sa.func.count())
                .where(subscriptions.c.key_id.in_(ids))
                .group_by(subscriptions.c.key_id, subscriptions.c.kind, subscriptions.c.status)):
            entry = subs.setdefault(key_id, {})
            entry[kind] = entry.get(kind, 0) + n
            if status == "paused_credits":
                entry["paused_credits"] = entry.get("paused_credits", 0) + n
        for row in rows:   # a balance is its unleased credits plus what is left of each lease (store/keys.py)
            if row["credits"] is not None:
                row["credits"] += leased.get(row["id"], 0)
    for row in rows:
        row["requests"] = usage.get(row["id"], {})
        row["credits_spent"] = spent.get(row["id"], 0)
        row["hooks"] = subs.get(row["id"], {}).get("hook", 0)
        row["polls"] = subs.get(row["id"], {}).get("poll", 0)
        row["paused_credits"] = subs.get(row["id"], {}).get("paused_credits", 0)
    return _page(number, total, rows, size)


# -- the overview --------------------------------------------------------------------------

def overview(conn, settings, *, now: float, cost: int) -> dict:
    """Totals and the worker's health, each one indexed or grouped query."""
    by_status = dict(conn.execute(sa.select(watches.c.status, sa.func.count()).group_by(watches.c.status)).all())
    hooks = dict(conn.execute(sa.select(subscriptions.c.status, sa.func.count())
                              .where(subscriptions.c.kind == "hook").group_by(subscriptions.c.status)).all())
    polls = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                         .where(subscriptions.c.kind == "poll")).scalar_one()
    live_keys = api_keys.c.revoked_at.is_(None)
    keys_total = conn.execute(sa.select(sa.func.count()).select_from(api_keys).where(live_keys)).scalar_one()
    leased = (sa.select(sa.func.coalesce(sa.func.sum(credit_leases.c.credits), 0))
              .where(credit_leases.c.key_id == api_keys.c.id).scalar_subquery())
    keys_broke = conn.execute(sa.select(sa.func.count()).select_from(api_keys).where(
        live_keys, api_keys.c.credits.is_not(None), api_keys.c.credits + leased < cost)).scalar_one()
    failing = conn.execute(sa.select(sa.func.count()).select_from(subscriptions).where(
        subscriptions.c.kind == "hook", subscriptions.c.failing_since.is_not(None))).scalar_one()
    return {"watches": sum(by_status.values()), "watch_statuses": by_status, "hooks": sum(hooks.values()),
            "hook_statuses": hooks, "hooks_failing": failing, "polls": polls, "live_keys": keys_total,
            "keys_out_of_credits": keys_broke, "worker": worker_health(conn, settings, now=now)}


def worker_health(conn, settings, *, now: float) -> dict:
    """What the worker's passes leave behind: its last poll and delivery attempt, and how far
    behind it is (the oldest watch due and paid for but not polled; the oldest due delivery)."""
    last_poll = conn.execute(sa.select(sa.func.max(watches.c.last_poll_at))).scalar()
    last_attempt = conn.execute(sa.select(sa.func.max(delivery_attempts.c.attempted_at))).scalar()
    due, oldest_due = conn.execute(sa.select(sa.func.count(), sa.func.min(watches.c.next_poll_at)).where(
        watches.c.next_poll_at <= now, active_subscription_clause(settings, now, watches))).one()
    stale_leases = conn.execute(sa.select(sa.func.count()).select_from(watches).where(
        watches.c.lease_owner.is_not(None), watches.c.lease_expires_at < now)).scalar_one()
    sending, oldest_delivery = conn.execute(
        sa.select(sa.func.count(), sa.func.min(deliveries.c.next_attempt_at))
        .select_from(deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id))
        .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now,
               subscriptions.c.status.notin_(SILENT_STATUSES))).one()
    poll_lag = max(0.0, now - oldest_due) if oldest_due is not None else 0.0
    delivery_lag = max(0.0, now - oldest_delivery) if oldest_delivery is not None else 0.0
    # Behind: a due watch has waited longer than a lease (a pass should have taken it), or a
    # delivery has waited longer than a lease plus an attempt.
    behind = poll_lag > settings.worker.lease_seconds or delivery_lag > settings.worker.lease_seconds + \
        settings.delivery_timeout
    # Stalled: watches are due and no poll has committed for longer than a lease (none ever, or
    # the worker stopped): no `connector poll` is running, so hooks do not fire.
    stalled = due > 0 and (last_poll is None or now - last_poll > settings.worker.lease_seconds)
    return {"last_poll_at": last_poll, "last_attempt_at": last_attempt, "due_watches": due, "poll_lag": poll_lag,
            "stalled": stalled, "lease_seconds": settings.worker.lease_seconds,
            "due_deliveries": sending, "delivery_lag": delivery_lag, "stale_leases": stale_leases,
            "state": "behind" if behind else ("idle" if last_poll is None else "ok")}
