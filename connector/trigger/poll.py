"""One poll of a watch: read pages down to the known frontier, paid page by page.

The walk (:mod:`.detect`) reads from the top, then from each unread gap, within the page
budget; every page is paid before it is read (:class:`.billing.Tab`) and the lease is
renewed before every page after the first. Nothing is written until the end: the outbox
commit (:func:`.outbox.commit_poll`) stores it all at once, or, if the poll fails or loses
its lease, every credit it took is given back. A walk that reaches the end of the readable
list above what the watch knows (:func:`.detect.out_of_reach`) has found a lost gap: its
subscribers are told once (``gap_detected``), with an estimate from the watch's mark
(:func:`.watches.missed_estimate`).

A *catch-up* poll (``subscriber``) is read for a key about to subscribe to a watch that
already exists: that key alone pays, so the followers who exist at that moment never fire
for it; new ones are shared with the subscriptions paid up at that moment.

A *read now* poll is one its schedule had not made due (``watches.scheduled_at``) but
hooks asked for (``POST /hooks/<id>/poll``): the keys that asked alone pay, and what it finds
is shared the same way (:func:`.billing.read_now_keys`). Like a catch-up read it reads the
top and leaves older gaps to the regular polls. One that none of its askers can pay reads
nothing and leaves the watch's schedule as it was.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .. import metrics
from ..errors import ERROR_KINDS, BadRequest, NotOffered, UpstreamError, redact
from ..store.keys import Caller
from .billing import Tab, load_callers, paying_subscriptions, read_now_keys, scheduled_at
from .crypto import decrypt_credentials
from ..providers.paging import Paginator
from .detect import LoopDetected, Walk, keyed, out_of_reach, walk
from .leases import LeaseLost, claim_watch, new_owner, release_watch, renew_lease
from .outbox import Found, LostGap, commit_poll
from .schedule import Observation
from .tables import seen_followers, subscriptions, watches
from . import snapshot
from .outbox import SILENT_STATUSES
from .threshold import figure
from .watches import (PROFILE, dump_gaps, load_gaps, load_mark, missed_estimate, next_mark, reader_manifest,
                      unread_above)

log = logging.getLogger("connector.trigger")

ERROR_STATUS = {name: kind.watch_status for name, kind in ERROR_KINDS.items()}   # a failed poll's watch status
LOOP_MESSAGE = ("The followers service returned the same page twice (loop detected); "
                "the watch is retried at its next poll.")
NOBODY_PAYS = "No subscriber of this watch has credits left; top up a key to resume."


@dataclass
class PollResult:
    status: str
    new_events: int = 0
    pages: int = 0
    error: UpstreamError | None = None
    unpaid: set = field(default_factory=set)
    lease_lost: bool = False
    first_page: list = field(default_factory=list)   # [(key, record)] of the top page, newest first
    charged: dict = field(default_factory=dict)      # key id -> credits this poll kept
    event: str | None = None                         # the trigger whose read it is (metrics name it)
    events_by: dict = field(default_factory=dict)    # event name -> new events

    def refused(self, key_id: str) -> bool:
        """The key could pay nothing of this poll (its caller gets a 403)."""
        return key_id in self.unpaid and not self.charged.get(key_id)


_KNOWN = sa.select(sa.func.count()).select_from(
    sa.select(seen_followers.c.follower_key).where(seen_followers.c.watch_id == sa.bindparam("wid"))
    .limit(sa.bindparam("at_least")).subquery())
_SEEN_PG = "SELECT follower_key FROM seen_followers WHERE watch_id = %s AND follower_key = ANY(%s)"
_SEEN = sa.select(seen_followers.c.follower_key).where(
    seen_followers.c.watch_id == sa.bindparam("wid"),
    seen_followers.c.follower_key.in_(sa.bindparam("keys", expanding=True)))


@dataclass
class Prepared:
    """What a poll starts from: the watch row, its subscriptions (oldest first) and their keys."""
    watch: Any
    subs: list
    callers: dict      # key id -> Caller, None for a revoked or deleted key


def prepare(conn, keys, wids: list[str]) -> dict[str, Prepared]:
    """The :class:`Prepared` of each watch of ``wids`` that exists, in three statements
    whatever their number (a poller loads a whole claimed batch at once)."""
    if not wids:
        return {}
    rows = conn.execute(sa.select(watches).where(watches.c.id.in_(wids))).mappings().all()
    subs = conn.execute(sa.select(subscriptions).where(subscriptions.c.watch_id.in_(wids))
                        .order_by(subscriptions.c.created_at, subscriptions.c.id)).mappings().all()
    by_watch: dict[str, list] = {}
    for sub in subs:
        by_watch.setdefault(sub["watch_id"], []).append(sub)
    callers = load_callers(conn, keys, sorted({sub["key_id"] for sub in subs}))
    return {row["id"]: Prepared(row, by_watch.get(row["id"], []), callers) for row in rows}


class _Poll:
    """The state of one poll: the watch, who pays, what was read."""

    def __init__(self, svc, wid: str, owner: str, subscriber: Caller | None):
        self.svc, self.wid, self.owner, self.subscriber = svc, wid, owner, subscriber
        self.events_by: Counter = Counter()         # event name -> new events committed
        self.opts = svc.settings.worker
        self.now = svc.clock()
        self.page_payers: list[frozenset] = []     # who may receive each page read, in order
        self.paid: list[frozenset] = []            # who paid each page read, in order
        self.first_page: list = []
        self.sharers: frozenset = frozenset()
        self.eligible = None                        # keys that may pay the walk under way (a gap's)
        self.only = None                            # a read now: the keys that asked (they alone pay)
        self.asked = False                          # read for keys that asked, before the watch's schedule
        self.key_since: dict[str, float] = {}      # key id -> its earliest subscription on the watch
        self.followed_at: dict[str, float] = {}    # follower key -> follow time, where the provider tells it

    def load(self, prepared: "Prepared | None" = None) -> bool:
        if prepared is None:
            with self.svc.store.connect() as conn:
                prepared = prepare(conn, self.svc.keys, [self.wid]).get(self.wid)
        if prepared is None:
            return False
        self.watch = prepared.watch
        self.subs = prepared.subs
        self.manifest = reader_manifest(self.svc.manifests, self.watch["operation"])
        self.scheduled = scheduled_at(self.watch)
        paying = paying_subscriptions(prepared.subs, self.svc.settings, self.now)
        for sub in paying:
            since = self.key_since.get(sub["key_id"])
            self.key_since[sub["key_id"]] = sub["created_at"] if since is None else min(since, sub["created_at"])
        if self.subscriber is None:
            callers = {k: prepared.callers.get(k) for k in sorted({s["key_id"] for s in paying})}
            self.only = read_now_keys(prepared.subs, self.watch, paying, self.now)
            if self.only is not None:   # (those that asked pay; the paid-up others share, as a catch-up)
                self.asked, self.eligible = True, self.only
                self.sharers = frozenset(s["key_id"] for s in paying if s["status"] == "active") - self.only
        else:
            callers = {self.subscriber.id: self.subscriber}
            self.sharers = frozenset(s["key_id"] for s in paying if s["status"] == "active")
        self.tab = Tab(self.svc.keys, callers, self.manifest.cost)
        return True

    @property
    def early(self) -> bool:
        """The watch's own schedule has not made it due yet (a read now was asked)."""
        return self.scheduled > self.now

    def fetch(self, cursor: Any):
        """One page, paid first; None when nobody can pay for it."""
        if self.page_payers:
            renew_lease(self.svc.store, self.wid, self.owner, self.opts.lease_seconds, now=self.svc.clock())
        payers = self.tab.pay_page(self.eligible)
        if payers is None:
            return None
        try:
            page = self.read(self.watch["handle"], cursor=cursor)
        except BaseException:
            self.tab.refund_page(payers)
            raise
        self.paid.append(payers)
        self.page_payers.append(payers | self.sharers)
        if len(self.page_payers) == 1:
            self.first_page = keyed(page.records)
        times = page.meta.get("followed_at")
        if times:   # (for the schedule: which hour each follower came in)
            self.followed_at.update((key, t) for (key, _), t in zip(keyed(page.records), times))
        return page

    def observation(self, found: list, top: Walk, backlog: bool) -> Observation:
        """What this poll tells the schedule (:mod:`.schedule`)."""
        times = [self.followed_at.get(item.key) for item in found] if self.followed_at else None
        return Observation(since=self.watch["last_poll_at"], found=len(found),
                           times=None if times is None or None in times else times,
                           full_page=top.pages > 1 or not top.finished, backlog=backlog)

    def gap_payers(self, since: float | None):
        """The keys that may pay for (and receive) a gap opened at ``since``."""
        if since is None:
            return None
        return frozenset(k for k, first in self.key_since.items() if first <= since)

    def is_seen(self, keys: list[str]) -> set:
        if not keys:
            return set()
        with self.svc.store.connect() as conn:
            if self.svc.store.dialect == "postgresql":   # one array parameter: no statement to expand
                return set(conn.exec_driver_sql(_SEEN_PG, (self.wid, keys)).scalars())
            return set(conn.execute(_SEEN, {"wid": self.wid, "keys": keys}).scalars())

    def knows(self, at_least: int) -> bool:
        """Whether the watch has seen at least ``at_least`` accounts."""
        with self.svc.store.connect() as conn:
            return conn.execute(_KNOWN, {"wid": self.wid, "at_least": at_least}).scalar_one() >= at_least

    def commit(self, values: dict, found: list[Found], *, pages: int = 0, backlog: bool = False,
               observation: Observation | None = None, threshold: tuple | None = None,
               snapshot: tuple | None = None, next_poll: float | None = None, scheduled: float | None = None,
               lost_gap: LostGap | None = None) -> int:
        if self.asked and not pages:   # a read now that read nothing leaves the schedule as it was
            next_poll = scheduled = self.scheduled
        return commit_poll(self.svc, self.watch, self.owner, self.tab, values, found, now=self.now, pages=pages,
                           backlog=backlog, subscriber=self.subscriber.id if self.subscriber else None,
                           observation=observation, counts=self.events_by, threshold=threshold,
                           snapshot=snapshot, next_poll=next_poll, scheduled=scheduled, lost_gap=lost_gap)

    def fail(self, kind: str | None, message: str, status: str, clear_gaps: bool = False) -> PollResult:
        """Record a failed poll. What it read is dropped, so what it charged is refunded."""
        self.tab.refund()
        values = {"status": status, "last_error": message, "last_error_kind": kind}
        if clear_gaps:
            values["list_state"] = dump_gaps([], load_mark(self.watch["list_state"]))
        try:
            self.commit(values, [])
        except LeaseLost:
            return self.lost()
        return self.result(status)

    def withdrawn(self) -> PollResult:
        """A read now none of its askers could pay: nothing is read, nobody else pays, and the
        watch keeps its status and its schedule (the requests count as served)."""
        self.tab.refund()
        try:
            self.commit({}, [])
        except LeaseLost:
            return self.lost()
        return self.result(self.watch["status"])

    def upstream_failed(self, exc: UpstreamError) -> PollResult:
        """Record a poll the upstream failed (logged redacted); the result carries the error
        unless the lease was lost meanwhile."""
        log.warning("poll of watch %s (%s) failed (%s): %s", self.wid, self.watch["provider"], exc.kind,
                    redact(exc.detail, self.provider.secrets()))
        result = self.fail(exc.kind, exc.user_message(self.manifest.errors, self.watch["handle"]),
                           ERROR_STATUS.get(exc.kind, "error"))
        result.error = None if result.lease_lost else exc
        return result

    def result(self, status: str, **kwargs) -> PollResult:
        return PollResult(status=status, unpaid=self.tab.unpaid,
                          charged={k: v for k, v in self.tab.charged.items() if v > 0},
                          event=self.manifest.event, events_by=dict(self.events_by), **kwargs)

    def lost(self) -> PollResult:
        """The lease (or the watch) is gone: nothing is committed, so nothing is charged."""
        log.warning("lost the lease of watch %s (taken over or deleted); its credits are refunded", self.wid)
        self.tab.refund()
        return self.result(self.watch["status"], lease_lost=True)


def poll_watch(svc, wid: str, owner: str, *, max_pages: int | None = None,
               subscriber: Caller | None = None, prepared: Prepared | None = None) -> PollResult:
    """Poll a watch whose lease ``owner`` holds; commit everything it learnt at once.

    ``max_pages`` caps the page budget (polls made inside a request); ``subscriber`` makes
    it a catch-up read paid by that key alone (see the module docstring). A poller passes
    what it loaded for its batch (``prepared``); otherwise the poll loads it.
    """
    poll = _Poll(svc, wid, owner, subscriber)
    if not poll.load(prepared):
        return PollResult(status="gone")
    watch, settings, manifest = poll.watch, svc.settings, poll.manifest
    budget = poll.opts.page_budget if max_pages is None else min(poll.opts.page_budget, max_pages)
    try:
        credentials = decrypt_credentials(settings.secret_key, watch["credentials_enc"])
        poll.provider = svc.providers.get(watch["provider"], credentials)
        poll.read = poll.provider.operation(manifest.operation, manifest.label.lower())
    except NotOffered as exc:   # (the provider stopped offering it since the watch was made)
        return poll.fail("reported_issue", exc.message, "error")
    except ValueError as exc:
        return poll.fail("auth_failed", f"The stored provider key cannot be used: {exc}.", "auth_failed")
    except UpstreamError as exc:
        return poll.fail(exc.kind, exc.user_message(manifest.errors, watch["handle"]),
                         ERROR_STATUS.get(exc.kind, "error"))

    if manifest.strategy == "threshold":
        return _poll_threshold(poll)
    if manifest.strategy == "snapshot":
        return _poll_snapshot(poll, budget)
    gaps = load_gaps(watch["list_state"])
    mark = load_mark(watch["list_state"])
    known: set = set()
    run = poll.opts.frontier_run
    lost_at = None    # (when the lost stretch opened, None: read from the top; the walk that found it)
    try:
        # While a backlog drains (polls back to back), the top was read moments ago: spend the
        # budget on the backlog; the next regular poll reads the top again.
        draining = subscriber is None and bool(gaps) and watch["status"] == "backlog" \
            and watch["last_poll_at"] is not None and poll.now - watch["last_poll_at"] < settings.poll_interval
        top = Walk(reason="frontier") if draining else walk(poll.fetch, poll.is_seen, run=run, max_pages=budget,
                                                               known=known)
        walks, remaining = [(top, None)], budget - top.pages     # (walk, when its gap opened)
        new_gaps = [] if top.finished or top.cursor is None else [{"cursor": top.cursor, "since": poll.now}]
        if subscriber is None and out_of_reach(top, from_top=True, knows_enough=lambda: poll.knows(run)):
            # The known accounts sank below the readable list: so did every older gap.
            lost_at, gaps = (None, top), []
        for index, gap in enumerate(gaps):
            # A catch-up read is the subscriber's, a read now its askers': the older gaps stay
            # for the regular polls.
            if remaining <= 0 or top.reason == "unpaid" or subscriber is not None or poll.only is not None:
                new_gaps.extend(gaps[index:])
                break
            poll.eligible = poll.gap_payers(gap["since"])
            if poll.eligible is not None and not poll.eligible:
                continue          # nobody subscribed when it opened is left: nobody can receive it
            more = walk(poll.fetch, poll.is_seen, start=gap["cursor"], run=run, max_pages=remaining, known=known)
            poll.eligible = None
            remaining -= more.pages
            walks.append((more, gap["since"]))
            if out_of_reach(more, from_top=False, knows_enough=lambda: True):
                lost_at = (gap["since"], more)   # older gaps lie deeper still: lost with it
                break
            if not more.finished:
                new_gaps.append({"cursor": more.cursor, "since": gap["since"]})
    except LeaseLost:
        return poll.lost()
    except UpstreamError as exc:
        return poll.upstream_failed(exc)
    except LoopDetected as exc:
        log.warning("poll of watch %s: %s", wid, exc)
        return poll.fail("fetch_error", LOOP_MESSAGE, "error", clear_gaps=True)
    except BaseException:
        poll.tab.refund()
        raise

    pages = len(poll.page_payers)
    if subscriber is not None and pages == 0:
        # The subscriber could not pay its catch-up read: nothing was read, nothing changes.
        release_watch(svc.store, wid, owner)
        return poll.result(watch["status"])
    if poll.asked and pages == 0:
        return poll.withdrawn()
    # Each new follower with the keys that may receive it and when its gap opened, newest first.
    found, offset, lost_gap = [], 0, None
    total = next((w.total for w, _ in walks if w.total is not None), None)
    top_read = None if draining else len(top.new)
    # A gap below the top lost while accounts above are still to be read: those are not lost.
    unread = unread_above(mark, total, top_read) if lost_at is not None and lost_at[1] is not top else 0
    for result, since in walks:
        for (key, record), page in zip(result.new, result.new_page):
            found.append(Found(key, record, poll.page_payers[offset + page], since))
        offset += result.pages
        if lost_at is not None and lost_at[1] is result:
            lost_gap = LostGap(since=lost_at[0], opened=_opened(lost_at[0], mark, watch, poll.now),
                               missed=missed_estimate(mark, total, len(found), poll.now, watch["rate_per_day"],
                                                      unread),
                               payers=poll.page_payers[offset - 1])
    mark = next_mark(mark, now=poll.now, total=total, top_total=None if draining else top.total, found=len(found),
                     caught_up=lost_gap is not None or (not draining and subscriber is None and top.finished
                                                        and not new_gaps), unread=unread)
    status = "paused_credits" if pages == 0 and poll.tab.unpaid else ("backlog" if new_gaps else "active")
    values = {"status": status, "last_error": None, "last_error_kind": None,
              "list_state": dump_gaps(new_gaps, mark)}
    if status == "paused_credits":
        values["last_error"] = NOBODY_PAYS
    observation = poll.observation(found, top, bool(new_gaps)) if pages else None
    try:
        inserted = poll.commit(values, list(reversed(found)), pages=pages, backlog=bool(new_gaps),
                               observation=observation, lost_gap=lost_gap)
    except LeaseLost:
        return poll.lost()
    return poll.result(status, new_events=inserted, pages=pages, first_page=poll.first_page)


def _opened(since: float | None, mark: dict | None, watch, now: float) -> float:
    """When a lost stretch of the list opened: its gap's, else when the watch last knew
    everything above its frontier (its gap event's subject, stable if the poll is redone)."""
    for when in (since, (mark or {}).get("at"), watch["last_poll_at"]):
        if when is not None:
            return float(when)
    return now


def _poll_threshold(poll: _Poll) -> PollResult:
    """One read of a profile (:mod:`.threshold`): paid once by each paying key, then committed."""
    svc, watch, manifest = poll.svc, poll.watch, poll.manifest
    payers = poll.tab.pay_page(poll.eligible)
    if payers is None:
        if poll.subscriber is not None:      # nothing was read, nothing changes
            release_watch(svc.store, poll.wid, poll.owner)
            return poll.result(watch["status"])
        if poll.asked:
            return poll.withdrawn()
        try:
            poll.commit({"status": "paused_credits", "last_error": NOBODY_PAYS, "last_error_kind": None}, [])
        except LeaseLost:
            return poll.lost()
        return poll.result("paused_credits")
    try:
        record = poll.read(watch["handle"], request_source="API")
    except UpstreamError as exc:
        return poll.upstream_failed(exc)
    except BaseException:
        poll.tab.refund()
        raise
    poll.first_page = [(PROFILE, record)]
    count = figure(manifest, record)
    values = {"status": "active", "last_error": None, "last_error_kind": None}
    try:
        inserted = poll.commit(values, [], pages=1, threshold=None if count is None else
                               (manifest, count, payers | poll.sharers))
    except LeaseLost:
        return poll.lost()
    return poll.result("active", new_events=inserted, pages=1, first_page=poll.first_page)


def _poll_snapshot(poll: _Poll, budget: int) -> PollResult:
    """Up to ``budget`` pages of a full walk of the list (:mod:`.snapshot`), every page paid by
    each key paying the walk; the walk goes on at the next poll (the watch stays due) until it
    is complete, then the commit compares it with the last one. A walk a read now asked for is
    paid by the keys that asked, to its end, and shared with the keys paid up when it started."""
    svc, watch, manifest = poll.svc, poll.watch, poll.manifest
    if poll.subscriber is not None:
        # A new subscriber of an existing snapshot watch shares its next full walk; no read now.
        release_watch(svc.store, poll.wid, poll.owner)
        return poll.result(watch["status"])
    state = snapshot.load(watch["state"])
    so_far = snapshot.walk_under_way(state, watch)
    guard = snapshot.pages_for(svc.settings.lost_follower_max, state.get("pageSize") or 1) + 2
    next_poll = snapshot.next_walk(manifest, poll.subs, poll.now, SILENT_STATUSES)
    current: list = []
    cursors = list(so_far["cursors"]) if so_far else []
    # A walk under way is paid by the keys that paid all of it (a key that came later would pay
    # pages whose walk it cannot receive), and shared as it was when it started, whoever asks.
    new_sharers, shared = poll.sharers, so_far.get("sharers") if so_far else None
    if so_far:
        poll.eligible, poll.sharers = frozenset(so_far["payers"]), frozenset(shared or ())
        poll.asked = poll.asked or (shared is not None and poll.early)   # (a read now's walk going on)
    else:
        shared = None if poll.only is None else sorted(poll.sharers)
    paginator = Paginator(cursors[-1] if cursors else None)
    done = False
    try:
        while len(poll.page_payers) < budget:
            if (so_far["pages"] if so_far else 0) + len(poll.page_payers) >= guard:
                total = max(len(current), state.get("total") or 0)
                raise snapshot.too_many(svc.settings, total)
            page = poll.fetch(paginator.cursor)
            if page is None and so_far is not None and not poll.page_payers and (poll.only or not poll.early):
                # Nobody who paid the walk under way can go on: a new walk, for whoever pays now
                # (before the schedule, the keys that asked for a read now).
                so_far, cursors, paginator = None, [], Paginator(None)
                poll.eligible, poll.sharers = poll.only, new_sharers
                shared = None if poll.only is None else sorted(new_sharers)
                page = poll.fetch(None)
            if page is None:      # nobody can pay the rest: the walk is not full, nothing is compared
                poll.tab.refund()
                if poll.asked:    # (a read now's: the watch waits for its schedule)
                    return poll.withdrawn()
                try:
                    poll.commit({"status": "paused_credits", "last_error": NOBODY_PAYS, "last_error_kind": None}, [],
                                next_poll=next_poll)
                except LeaseLost:
                    return poll.lost()
                return poll.result("paused_credits")
            current.extend(keyed(page.records))
            try:
                paginator.advance(page)
            except UpstreamError as exc:
                raise LoopDetected(exc.detail) from None
            if paginator.done or not page.records:
                done = True
                break
            if str(paginator.cursor) in map(str, cursors):     # (a loop across polls)
                raise LoopDetected(f"cursor {str(paginator.cursor)[:60]!r} came back")
            cursors.append(paginator.cursor)
    except LeaseLost:
        return poll.lost()
    except UpstreamError as exc:
        return poll.upstream_failed(exc)
    except LoopDetected as exc:
        log.warning("poll of watch %s: %s", poll.wid, exc)
        return poll.fail("fetch_error", LOOP_MESSAGE, "error")
    except BadRequest as exc:     # the account grew above the limit: the walk is dropped
        return poll.fail("reported_issue", exc.message, "error")
    except BaseException:
        poll.tab.refund()
        raise
    pages = len(poll.page_payers)
    payers = frozenset.intersection(*poll.paid) if poll.paid else frozenset()
    walked = snapshot.Walked(current, pages, payers, None if done else cursors, so_far,
                             None if shared is None else frozenset(shared))
    values = {"status": "active", "last_error": None, "last_error_kind": None}
    try:   # (a read now's walk going on keeps the schedule it came before)
        inserted = poll.commit(values, [], pages=pages, snapshot=(manifest, walked),
                               next_poll=next_poll if done else poll.now,
                               scheduled=next_poll if done else max(poll.scheduled, poll.now))
    except LeaseLost:
        return poll.lost()
    return poll.result("active", new_events=inserted, pages=pages, first_page=poll.first_page)


def poll_in_request(svc, wid: str, *, due_only: bool, subscriber: Caller | None = None) -> PollResult | None:
    """Poll a watch inside an HTTP request, at most ``request_page_budget`` pages, if its
    lease is free (None when another poller holds it: its poll stands)."""
    owner = new_owner()
    opts = svc.settings.worker
    if not claim_watch(svc.store, wid, owner, opts.lease_seconds, due_only=due_only, now=svc.clock()):
        return None
    try:
        result = poll_watch(svc, wid, owner, max_pages=opts.request_page_budget, subscriber=subscriber)
    except BaseException:
        release_watch(svc.store, wid, owner)
        raise
    metrics.poll_done(result, "request")
    return None if result.lease_lost else result
