"""Watches: one per (provider, provider key, handle, what is read), created with a baseline.

A watch is one upstream subject, read once for every subscription on it, whatever its
trigger and inputs (New Follower with and without filters read the same followers). Its id
is a pure function of what it watches, so every process finds the same one; a watch of
followers keeps the id it had before other lists could be watched. It is created by the
first subscriber, whose credits alone pay the first read: those followers are marked seen
and stored as ``baseline`` events of the subscriber's trigger (samples, never delivered).
Unread gaps (``list_state``) are saved as ``{"gaps": [{"cursor", "since"}], "mark": …}``,
``since`` being when the gap opened; ``mark`` is the last time the watch had read everything
above its frontier (:func:`load_mark`), from which a lost gap's size is estimated.
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa

from ..errors import InsufficientCredits
from ..manifests import Manifest
from ..store import insert_ignore
from ..store.keys import Caller
from .billing import read_now_asked
from .crypto import credential_hash, encrypt_credentials
from .detect import keyed
from .events import EVENT
from .outbox import account_events, mark_seen, store_events
from .snapshot import initial_snapshot
from .tables import subscriptions, watches


FOLLOWERS = "list_followers"
PROFILE = "profile"       # the key of a threshold watch's one record (see create_watch)


def trigger_manifest(manifests: dict[str, Manifest], event: str = EVENT) -> Manifest:
    return manifests[event]


def trigger_manifests(manifests: dict[str, Manifest]) -> dict[str, Manifest]:
    """The trigger manifests, by event name."""
    return {m.event: m for m in manifests.values() if m.kind == "trigger"}


def reader_manifest(manifests: dict[str, Manifest], operation: str) -> Manifest:
    """The manifest whose read serves a watch of ``operation``: its cost per read, its error
    messages. The first (by key) of the triggers that read it, a list strategy first."""
    readers = sorted((m for m in manifests.values() if m.kind == "trigger" and m.watch_operation == operation),
                     key=lambda m: (m.strategy != "newest_first", m.key))
    if not readers:
        raise KeyError(operation)
    return readers[0]


def watch_id(provider: str, cred_hash: str, handle: str, operation: str = FOLLOWERS) -> str:
    subject = f"{provider}:{cred_hash}:{handle}" + ("" if operation == FOLLOWERS else f":{operation}")
    return "w_" + hashlib.sha256(subject.encode()).hexdigest()[:24]


def get_watch(conn, wid: str):
    return conn.execute(sa.select(watches).where(watches.c.id == wid)).mappings().first()


def delete_subscription(conn, sub_id: str, wid: str) -> None:
    """Delete a subscription, then its watch if no subscription uses it any more (a later
    subscription starts from a fresh baseline). Run it in a write transaction. A read now
    the hook asked for and no poll served yet goes with it: unless another hook asked too,
    the watch waits for its schedule again (nobody else pays for that read).

    The watch row is locked first, in the order a poll's commit takes them (watch, then its
    subscriptions), so the two never deadlock on PostgreSQL."""
    watch = conn.execute(sa.select(watches.c.last_poll_at).where(watches.c.id == wid).with_for_update()
                         ).mappings().first()
    sub = conn.execute(sa.select(subscriptions.c.kind, subscriptions.c.poll_requested_at)
                       .where(subscriptions.c.id == sub_id)).mappings().first()
    conn.execute(subscriptions.delete().where(subscriptions.c.id == sub_id))
    left = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                        .where(subscriptions.c.watch_id == wid)).scalar_one()
    if not left:
        conn.execute(watches.delete().where(watches.c.id == wid))
    elif watch is not None and sub is not None and read_now_asked(sub, watch):
        asked = subscriptions.c.poll_requested_at >= watch["last_poll_at"] if watch["last_poll_at"] is not None \
            else subscriptions.c.poll_requested_at.is_not(None)
        others = conn.execute(sa.select(subscriptions.c.id).where(
            subscriptions.c.watch_id == wid, subscriptions.c.kind == "hook", asked).limit(1)).first()
        if others is None:
            conn.execute(watches.update().where(watches.c.id == wid, watches.c.next_poll_at < watches.c.scheduled_at)
                         .values(next_poll_at=watches.c.scheduled_at))


def load_gaps(raw: str | None) -> list[dict]:
    """A watch's unread gaps as ``[{"cursor", "since"}]``; gaps saved as a bare JSON list
    (before ``since`` was kept) have ``since`` None: every hook receives their followers."""
    if not raw:
        return []
    data = json.loads(raw)
    if isinstance(data, dict):
        return list(data.get("gaps") or [])
    return [{"cursor": cursor, "since": None} for cursor in data]


def load_mark(raw: str | None) -> dict | None:
    """``{"at", "total", "read", "top"}``: when the watch last knew everything above its
    frontier, the list's length then (None: the upstream does not tell it), how many new
    accounts were read since (less those still unread then), and the list's length when its
    top was last read; None before any such poll."""
    if not raw:
        return None
    data = json.loads(raw)
    return data.get("mark") if isinstance(data, dict) else None


def dump_gaps(gaps: list[dict], mark: dict | None = None) -> str | None:
    if not gaps and mark is None:
        return None
    return json.dumps({"gaps": gaps, **({"mark": mark} if mark is not None else {})})


def unread_above(mark: dict | None, total: int | None, top_read: int | None) -> int:
    """Accounts that arrived since the top was last read and are still to be read from the top
    or the gap this poll's top walk left (``top_read``: the new accounts it found; None: the top
    was not read): readable, so not lost when an older gap is."""
    if mark is None or total is None or mark.get("top") is None:
        return 0
    return max(0, total - int(mark["top"]) - (top_read or 0))


def missed_estimate(mark: dict | None, total: int | None, found: int, now: float,
                    rate_per_day: float | None, unread: int = 0) -> int:
    """How many accounts a lost gap held, at least one: the list's growth since ``mark``
    less what was read since (``found`` by this poll) and what is still to be read above
    (``unread``); unfollows make it an underestimate. Where the upstream does not tell the
    list's length, the arrival rate over the same time instead."""
    if mark is None:
        return 1
    read = int(mark.get("read") or 0) + found + unread
    if total is not None and mark.get("total") is not None:
        grown = total - int(mark["total"])
    elif rate_per_day:
        grown = round(rate_per_day * max(0.0, now - float(mark["at"])) / 86400)
    else:
        return 1
    return max(1, grown - read)


def next_mark(mark: dict | None, *, now: float, total: int | None, top_total: int | None, found: int,
              caught_up: bool, unread: int = 0) -> dict | None:
    """The mark after a poll: a new one when everything readable is read (``caught_up``: the
    top walk met the frontier with no gap left, or a gap was told), its ``read`` counting off
    what is still to be read above (``unread``); else the old one with this poll's accounts
    read. ``top_total``: the list's length when this poll read its top (None: not read)."""
    top = top_total if top_total is not None else (mark or {}).get("top")
    if caught_up:
        return {"at": now, "total": total, "read": -unread, "top": top}
    if mark is None:
        return None
    return {**mark, "read": int(mark.get("read") or 0) + found, "top": top}


def create_watch(svc, manifest: Manifest, provider_name: str, credentials: str | None, handle: str,
                 caller: Caller, request_source: str = "API"):
    """Create the watch that ``manifest`` reads for (provider, credentials, handle) with its
    baseline, paid by ``caller`` alone. Returns ``(row, created, first_page)``: ``created``
    is False when a concurrent request made it first (its baseline stands; ours was still
    read and paid); ``first_page`` is ``[(follower_key, record)]`` newest first, the
    caller's samples.
    """
    cred_hash = credential_hash(credentials)
    operation = manifest.watch_operation
    wid = watch_id(provider_name, cred_hash, handle, operation)
    encrypted = encrypt_credentials(svc.settings.secret_key, credentials)
    provider = svc.providers.get(provider_name, credentials)
    reader = reader_manifest(svc.manifests, operation)
    read = provider.operation(reader.operation, reader.label.lower())   # NotOffered: nothing is made
    cost = reader.cost
    if not svc.keys.reserve(caller, cost):
        raise InsufficientCredits()
    try:
        page = read(handle, request_source=request_source)
    except BaseException:
        svc.keys.refund(caller, cost)
        raise
    now = svc.clock()
    extra = {}
    if manifest.strategy == "newest_first":   # the baseline knows everything above its frontier
        extra = {"list_state": dump_gaps([], {"at": now, "total": page.total, "read": 0, "top": page.total})}
    if manifest.strategy == "snapshot":
        try:   # refused above the limit, before anything is stored (the read is given back)
            extra = {"state": initial_snapshot(svc.settings, page, cost), "next_poll_at": now, "scheduled_at": now}
        except BaseException:
            svc.keys.refund(caller, cost)
            raise
    svc.keys.record_spend(caller, manifest.event, request_source, cost)
    # A list's first page (newest first), or the profile a threshold trigger reads.
    first_page = [(PROFILE, page)] if manifest.strategy == "threshold" else keyed(page.records)
    with svc.store.write() as conn:
        created = conn.execute(insert_ignore(svc.store.dialect, watches, {
            "id": wid, "provider": provider_name, "cred_hash": cred_hash, "credentials_enc": encrypted,
            "handle": handle, "operation": operation, "status": "active", "last_poll_at": now,
            "next_poll_at": now + svc.settings.poll_interval, "scheduled_at": now + svc.settings.poll_interval,
            "poll_interval": svc.settings.poll_interval,
            "credits_spent": cost, "pages_read": 1,
            "created_at": now, **extra}).returning(watches.c.id)).first() is not None
        if created and manifest.strategy == "newest_first":
            row = {"id": wid, "handle": handle, "provider": provider_name}
            mark_seen(conn, svc.store.dialect, wid, [key for key, _ in first_page])
            store_events(conn, svc.store.dialect, account_events(row, manifest, list(reversed(first_page)), now,
                                                                 baseline=True), now)
        row = get_watch(conn, wid)
    return row, created, first_page
