"""Watches: creation with a baseline, leases, and one poll committed in one transaction.

A poll reads pages outside any transaction, charging every paying key per page (and
renewing its lease before each page), then commits in ONE transaction: the lease check, the
watch's status and cursors, the seen followers, the new events (oldest first, so ``seq`` puts
the newest last) and one delivery row per hook subscription whose key paid for the page the
event was found on (the outbox). Ids are deterministic and every insert is ``ON CONFLICT DO
NOTHING``, so a poll that dies before its commit is redone without a trace, and two pollers
that raced commit every event once. A poll that loses its lease (or its watch) refunds what
it charged.

Unread gaps (``resume_cursor``) are saved as ``{"gaps": [{"cursor", "since"}]}``, ``since``
being when the gap opened: followers found in a gap predate every hook created after that,
so they are not delivered to those hooks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import InsufficientCredits, UpstreamError, redact
from ..manifests import Manifest
from ..store.keys import Caller
from ..store.schema import api_keys
from .crypto import credential_hash, decrypt_credentials, encrypt_credentials
from .detect import LoopDetected, Walk, keyed, walk
from .events import dumps, event_payload
from .options import TriggerOptions, poll_freshness
from .tables import deliveries, events, seen_followers, subscriptions, watches

log = logging.getLogger("connector.trigger")

EVENT = "new_follower"
ERROR_STATUS = {"not_found": "not_found", "auth_failed": "auth_failed", "not_configured": "auth_failed",
                "provider_key_rejected": "auth_failed"}
LOOP_MESSAGE = ("The followers service returned the same page twice (loop detected); "
                "the watch is retried at its next poll.")


class LeaseLost(Exception):
    """Another poller took the watch over (our lease expired): our results are dropped."""


@dataclass
class PollResult:
    status: str
    new_events: int = 0
    pages: int = 0
    error: UpstreamError | None = None
    unpaid: set = field(default_factory=set)
    lease_lost: bool = False


def trigger_manifest(manifests: dict[str, Manifest]) -> Manifest:
    return manifests[EVENT]


def watch_id(provider: str, cred_hash: str, handle: str) -> str:
    return "w_" + hashlib.sha256(f"{provider}:{cred_hash}:{handle}".encode()).hexdigest()[:24]


def insert_ignore(dialect: str, table: sa.Table, values: dict):
    """``INSERT ... ON CONFLICT DO NOTHING`` for SQLite and PostgreSQL."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).values(**values).on_conflict_do_nothing()


def get_watch(conn, wid: str):
    return conn.execute(sa.select(watches).where(watches.c.id == wid)).mappings().first()


def delete_subscription(conn, sub_id: str, wid: str) -> None:
    """Delete a subscription, then its watch if no subscription uses it any more (a later
    subscription starts from a fresh baseline). Run it in a write transaction."""
    conn.execute(subscriptions.delete().where(subscriptions.c.id == sub_id))
    left = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                        .where(subscriptions.c.watch_id == wid)).scalar_one()
    if not left:
        conn.execute(watches.delete().where(watches.c.id == wid))


def load_gaps(raw: str | None) -> list[dict]:
    """A watch's unread gaps as ``[{"cursor", "since"}]``; gaps saved as a bare JSON list
    (before ``since`` was kept) have ``since`` None: every hook receives their followers."""
    if not raw:
        return []
    data = json.loads(raw)
    if isinstance(data, dict):
        return list(data.get("gaps") or [])
    return [{"cursor": cursor, "since": None} for cursor in data]


def dump_gaps(gaps: list[dict]) -> str | None:
    return json.dumps({"gaps": gaps}) if gaps else None


# -- paying keys ---------------------------------------------------------------------------

def load_callers(conn, keys, key_ids) -> dict[str, Caller | None]:
    """The caller of each key id; None for a revoked or deleted key (it cannot pay)."""
    static = {caller.id: caller for caller in keys.static.values()}
    out: dict[str, Caller | None] = {k: static.get(k) for k in key_ids}
    wanted = [k for k in key_ids if k not in static]
    if wanted:
        rows = conn.execute(sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.credits,
                                      api_keys.c.rate_limit)
                            .where(api_keys.c.id.in_(wanted), api_keys.c.revoked_at.is_(None))).all()
        for row in rows:
            out[row.id] = Caller(id=row.id, name=row.name, credits=row.credits,
                                 rate_limit=row.rate_limit or keys.default_rate_limit)
    return out


def paying_subscriptions(subs, settings, now: float) -> list:
    """Hooks always pay; a polling caller pays while it keeps calling (see poll_freshness)."""
    fresh_after = now - poll_freshness(settings)
    return [s for s in subs if s["kind"] == "hook"
            or (s["last_called_at"] is not None and s["last_called_at"] >= fresh_after)]


def active_subscription_clause(settings, now: float, watch_table=watches):
    fresh_after = now - poll_freshness(settings)
    return sa.exists().where(
        subscriptions.c.watch_id == watch_table.c.id,
        sa.or_(subscriptions.c.kind == "hook", subscriptions.c.last_called_at >= fresh_after))


# -- creating a watch -----------------------------------------------------------------------

def open_watch(svc, provider_name: str, credentials: str | None, handle: str, caller: Caller,
               request_source: str = "API"):
    """The watch of (provider, credentials, handle), created with a baseline when new.

    Returns ``(row, created)``. The baseline reads the first page (charged to ``caller``),
    marks it seen and stores it as ``baseline`` events: samples, never delivered.
    """
    cred_hash = credential_hash(credentials)
    wid = watch_id(provider_name, cred_hash, handle)
    with svc.store.connect() as conn:
        row = get_watch(conn, wid)
    if row is not None:
        return row, False
    encrypted = encrypt_credentials(svc.settings.secret_key, credentials)
    provider = svc.providers.get(provider_name, credentials)
    cost = trigger_manifest(svc.manifests).cost
    if not svc.keys.reserve(caller, cost):
        raise InsufficientCredits()
    try:
        page = provider.list_followers(handle, request_source=request_source)
    except BaseException:
        svc.keys.refund(caller, cost)
        raise
    svc.keys.record_spend(caller, EVENT, request_source, cost)
    now = time.time()
    with svc.store.write() as conn:
        created = conn.execute(insert_ignore(svc.store.dialect, watches, {
            "id": wid, "provider": provider_name, "cred_hash": cred_hash, "credentials_enc": encrypted,
            "handle": handle, "status": "active", "last_poll_at": now,
            "next_poll_at": now + svc.settings.poll_interval, "credits_spent": cost, "pages_read": 1,
            "created_at": now}).returning(watches.c.id)).first() is not None
        if created:  # a concurrent request may have created it first: its baseline stands
            _store_events(conn, svc.store.dialect, wid, handle, provider_name,
                          list(reversed(keyed(page.records))), now, baseline=True)
        row = get_watch(conn, wid)
    return row, created


def _store_events(conn, dialect, wid, handle, provider_name, oldest_first, now, *, baseline,
                  hooks=(), recipients: list | None = None) -> int:
    """Seen rows, events and outbox rows; returns how many events were new.

    Each new event gets a delivery for every subscription id in ``hooks``, or, when given,
    in ``recipients[i]`` for the i-th follower of ``oldest_first``.
    """
    inserted = 0
    for index, (key, record) in enumerate(oldest_first):
        conn.execute(insert_ignore(dialect, seen_followers, {"watch_id": wid, "follower_key": key}))
        payload = event_payload(wid, key, record, handle=handle, provider=provider_name, detected_at=now)
        new = conn.execute(insert_ignore(dialect, events, {
            "id": payload["id"], "watch_id": wid, "follower_key": key, "payload": dumps(payload),
            "detected_at": now, "baseline": baseline}).returning(events.c.id)).first()
        if new is None:
            continue
        inserted += 1
        for sub_id in (hooks if recipients is None else recipients[index]):
            conn.execute(insert_ignore(dialect, deliveries, {
                "subscription_id": sub_id, "event_id": payload["id"], "status": "pending", "attempts": 0,
                "next_attempt_at": now, "created_at": now}))
    return inserted


# -- leases ---------------------------------------------------------------------------------

def _claimable(table, now: float):
    return sa.or_(table.c.lease_owner.is_(None), table.c.lease_expires_at < now)


def claim_watch(store, wid: str, owner: str, lease: float, *, due_only: bool, now: float | None = None) -> bool:
    """Take the lease of one watch (if it is free, or expired); False when someone holds it."""
    now = time.time() if now is None else now
    conditions = [watches.c.id == wid, _claimable(watches, now)]
    if due_only:
        conditions.append(watches.c.next_poll_at <= now)
    with store.write() as conn:
        result = conn.execute(watches.update().where(*conditions)
                              .values(lease_owner=owner, lease_expires_at=now + lease))
    return result.rowcount == 1


def claim_due_watches(store, settings, owner: str, lease: float, *, limit: int, due_before: float) -> list[str]:
    """Lease up to ``limit`` due watches that someone pays for, in one statement.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several pollers claim disjoint batches
    without waiting on each other; SQLite serialises writers, so the statement is enough.
    """
    now = time.time()
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


def renew_lease(store, wid: str, owner: str, lease: float) -> None:
    """Extend our lease; :class:`LeaseLost` if another poller took it or the watch is gone."""
    with store.write() as conn:
        result = conn.execute(watches.update().where(watches.c.id == wid, watches.c.lease_owner == owner)
                              .values(lease_expires_at=time.time() + lease))
    if result.rowcount != 1:
        raise LeaseLost(wid)


def release_watch(store, wid: str, owner: str) -> None:
    with store.write() as conn:
        conn.execute(watches.update().where(watches.c.id == wid, watches.c.lease_owner == owner)
                     .values(lease_owner=None, lease_expires_at=None))


# -- one poll -------------------------------------------------------------------------------

@dataclass
class Found:
    """A new follower, the keys that paid for the page it was on, and when its gap opened
    (``since`` None: found from the top, or in a gap saved without its opening time)."""
    key: str
    record: dict
    payers: frozenset
    since: float | None


def poll_watch(svc, wid: str, owner: str, *, extra_payers: dict[str, Caller] | None = None,
               max_pages: int | None = None) -> PollResult:
    """Poll a watch whose lease ``owner`` holds; commit everything it learnt at once.

    ``extra_payers``: keys that pay for this poll without a subscription yet (a hook being
    created on an existing watch polls it first, so followers that exist at that moment
    never fire for it). ``max_pages`` caps the page budget (polls made inside a request).
    """
    settings = svc.settings
    opts = TriggerOptions.from_settings(settings)
    budget = opts.page_budget if max_pages is None else min(opts.page_budget, max_pages)
    manifest = trigger_manifest(svc.manifests)
    cost = manifest.cost
    now = time.time()
    with svc.store.connect() as conn:
        watch = get_watch(conn, wid)
        if watch is None:
            return PollResult(status="gone")
        subs = conn.execute(sa.select(subscriptions).where(subscriptions.c.watch_id == wid)
                            .order_by(subscriptions.c.created_at, subscriptions.c.id)).mappings().all()
        paying = paying_subscriptions(subs, settings, now)
        callers = load_callers(conn, svc.keys, sorted({s["key_id"] for s in paying}))
    callers.update(extra_payers or {})

    charged: Counter = Counter()
    unpaid: set = set()
    page_payers: list[frozenset] = []    # the key ids that paid for each page read, in order

    def lost() -> PollResult:
        """The lease (or the watch) is gone: nothing is committed, so nothing is charged."""
        log.warning("lost the lease of watch %s (taken over or deleted); its credits are refunded", wid)
        for key_id, amount in charged.items():
            svc.keys.refund(callers[key_id], amount)
        charged.clear()
        return PollResult(status=watch["status"], lease_lost=True, unpaid=unpaid)

    def finish_error(kind: str | None, message: str, status: str, clear_gaps: bool = False) -> PollResult:
        values = {"status": status, "last_error": message, "last_error_kind": kind}
        if clear_gaps:
            values["resume_cursor"] = None
        try:
            _commit(svc, watch, owner, subs, charged, unpaid, callers, values, now, [])
        except LeaseLost:
            return lost()
        return PollResult(status=status, unpaid=unpaid)

    try:
        credentials = decrypt_credentials(settings.secret_key, watch["credentials_enc"])
        provider = svc.providers.get(watch["provider"], credentials)
    except ValueError as exc:
        return finish_error("auth_failed", f"The stored provider key cannot be used: {exc}.", "auth_failed")
    except UpstreamError as exc:
        return finish_error(exc.kind, exc.user_message(manifest.errors, watch["handle"]),
                            ERROR_STATUS.get(exc.kind, "error"))

    def fetch(cursor: Any):
        # A full poll may outlast one lease: renew it before every page after the first, which
        # follows the claim (LeaseLost if taken over). A steady-state poll writes nothing extra.
        if page_payers:
            renew_lease(svc.store, wid, owner, opts.lease_seconds)
        paid = []
        for key_id, caller in callers.items():
            if key_id in unpaid:
                continue
            if caller is not None and svc.keys.reserve(caller, cost):
                paid.append(caller)
            else:
                unpaid.add(key_id)
        if not paid:
            return None
        try:
            page = provider.list_followers(watch["handle"], cursor=cursor)
        except BaseException:
            for caller in paid:
                svc.keys.refund(caller, cost)
            raise
        for caller in paid:
            charged[caller.id] += cost
        page_payers.append(frozenset(caller.id for caller in paid))
        return page

    def is_seen(keys: list[str]) -> set:
        if not keys:
            return set()
        with svc.store.connect() as conn:
            return set(conn.execute(sa.select(seen_followers.c.follower_key).where(
                seen_followers.c.watch_id == wid, seen_followers.c.follower_key.in_(keys))).scalars())

    gaps = load_gaps(watch["resume_cursor"])
    known: set = set()
    try:
        # While a backlog drains (polls back to back), the top was read moments ago: spend the
        # budget on the backlog; the next regular poll reads the top again.
        draining = bool(gaps) and watch["status"] == "backlog" and watch["last_poll_at"] is not None \
            and now - watch["last_poll_at"] < settings.poll_interval
        top = Walk(reason="frontier") if draining else walk(fetch, is_seen, run=opts.frontier_run,
                                                               max_pages=budget, known=known)
        walks, remaining = [(top, None)], budget - top.pages     # (walk, when its gap opened)
        new_gaps = [] if top.finished or top.cursor is None else [{"cursor": top.cursor, "since": now}]
        for index, gap in enumerate(gaps):
            if remaining <= 0 or top.reason == "unpaid":
                new_gaps.extend(gaps[index:])
                break
            more = walk(fetch, is_seen, start=gap["cursor"], run=opts.frontier_run, max_pages=remaining,
                        known=known)
            remaining -= more.pages
            walks.append((more, gap["since"]))
            if not more.finished:
                new_gaps.append({"cursor": more.cursor, "since": gap["since"]})
    except LeaseLost:
        return lost()
    except UpstreamError as exc:
        log.warning("poll of watch %s (%s) failed (%s): %s", wid, watch["provider"], exc.kind,
                    redact(exc.detail, provider.secrets()))
        result = finish_error(exc.kind, exc.user_message(manifest.errors, watch["handle"]),
                              ERROR_STATUS.get(exc.kind, "error"))
        result.error = None if result.lease_lost else exc
        return result
    except LoopDetected as exc:
        log.warning("poll of watch %s: %s", wid, exc)
        return finish_error("fetch_error", LOOP_MESSAGE, "error", clear_gaps=True)

    # Each new follower with the keys that paid for its page and when its gap opened, newest first.
    found, offset = [], 0
    for result, since in walks:
        for (key, record), page in zip(result.new, result.new_page):
            found.append(Found(key, record, page_payers[offset + page], since))
        offset += result.pages
    pages = len(page_payers)
    if pages == 0 and unpaid:
        status = "paused_credits"
    else:
        status = "backlog" if new_gaps else "active"
    values = {"status": status, "last_error": None, "last_error_kind": None, "resume_cursor": dump_gaps(new_gaps)}
    if status == "paused_credits":
        values.update(last_error="No subscriber of this watch has credits left; top up a key to resume.")
    try:
        inserted = _commit(svc, watch, owner, subs, charged, unpaid, callers, values, now,
                           list(reversed(found)), pages=pages, backlog=bool(new_gaps))
    except LeaseLost:
        return lost()
    return PollResult(status=status, new_events=inserted, pages=pages, unpaid=unpaid)


def _recipients(hooks, item: Found) -> list[str]:
    """The hooks an event goes to: those whose key paid for its page, and, for a follower
    found in a gap, that existed when the gap opened (the follower predates the others)."""
    return [s["id"] for s in hooks if s["key_id"] in item.payers
            and (item.since is None or s["created_at"] <= item.since)]


def _commit(svc, watch, owner, subs, charged, unpaid, callers, values, now, oldest_first: list[Found], *,
            pages: int | None = None, backlog: bool = False) -> int:
    """The poll's one transaction; raises :class:`LeaseLost` (and rolls back) without the lease."""
    wid, dialect = watch["id"], svc.store.dialect
    next_poll = now if backlog else now + svc.settings.poll_interval
    with svc.store.write() as conn:
        result = conn.execute(watches.update().where(watches.c.id == wid, watches.c.lease_owner == owner).values(
            last_poll_at=now, next_poll_at=next_poll, lease_owner=None, lease_expires_at=None,
            credits_spent=watches.c.credits_spent + sum(charged.values()),
            pages_read=watches.c.pages_read + (pages or 0), **values))
        if result.rowcount != 1:
            raise LeaseLost(wid)
        # Subscription status and spend: a key that paid resumes; one that could not pay the
        # last page it was asked for is paused (applied after, so it wins).
        first_of_key: dict[str, str] = {}
        for sub in subs:
            first_of_key.setdefault(sub["key_id"], sub["id"])
        inactive_keys = {sub["key_id"] for sub in subs if sub["status"] != "active"}
        for key_id, amount in charged.items():
            if key_id in inactive_keys:  # (a steady-state poll skips this statement)
                conn.execute(subscriptions.update().where(subscriptions.c.watch_id == wid,
                                                          subscriptions.c.key_id == key_id,
                                                          subscriptions.c.status != "active")
                             .values(status="active"))
            if key_id in first_of_key:
                conn.execute(subscriptions.update().where(subscriptions.c.id == first_of_key[key_id])
                             .values(credits_spent=subscriptions.c.credits_spent + amount))
        for key_id in unpaid:
            status = "paused_credits" if callers.get(key_id) is not None else "key_revoked"
            conn.execute(subscriptions.update().where(subscriptions.c.watch_id == wid,
                                                      subscriptions.c.key_id == key_id).values(status=status))
        hooks = [s for s in subs if s["kind"] == "hook"]
        return _store_events(conn, dialect, wid, watch["handle"], watch["provider"],
                             [(item.key, item.record) for item in oldest_first], now, baseline=False,
                             recipients=[_recipients(hooks, item) for item in oldest_first])
