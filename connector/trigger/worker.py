"""The worker: ``connector poll`` polls due watches, delivers webhooks and prunes old rows.

Polling and delivery run apart: the :class:`.sender.Sender` has its own thread and event loop,
so a poll never waits for a receiver, and a receiver never holds up a poll. Polls run on
a pool of their own; work is claimed in batches with leases (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so several worker processes share it; on SQLite run one. One polling pass only
takes what was due when it started, so a watch with a backlog waits for the next pass
instead of spinning. Retention (:mod:`.retention`) runs every ``prune_every`` seconds.
The ``connector poll`` command that runs it is the CLI's (``connector/cli/worker.py``).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from ..errors import redact
from .. import metrics
from .leases import claim_due_watches, new_owner, release_watch
from .poll import poll_watch, prepare
from .retention import prune
from .sender import Sender, deliver_due_webhooks

log = logging.getLogger("connector.trigger")


@dataclass
class PassStats:
    watches: int = 0
    pages: int = 0
    events: int = 0
    errors: int = 0


def _drain(claim, work, threads: int, stop: threading.Event | None) -> list:
    """Run ``work`` on claimed items, ``threads`` at a time, until nothing more is claimed.

    Claims come in batches: when no more than ``threads`` items are left (running or
    queued), up to ``2 * threads`` are claimed in one go, so every claim (and the loading
    and paying that go with it) serves many polls, one slow upstream never holds a whole
    batch back, and nothing waits claimed (its lease running) for long.
    """
    results: list = []
    running: set = set()
    exhausted = False
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="poll") as pool:
        while True:
            if not exhausted and len(running) <= threads and not (stop and stop.is_set()):
                batch = claim(2 * threads - len(running))
                exhausted = not batch
                running |= {pool.submit(work, item) for item in batch}
            if not running:
                return results
            done, running = wait(running, return_when=FIRST_COMPLETED)
            results.extend(future.result() for future in done)


def poll_due_watches(svc, owner: str | None = None, *, stop: threading.Event | None = None,
                     notify=None) -> PassStats:
    """Poll every watch that is due and paid for; returns what the pass did.

    ``notify()`` is called after each poll that committed new events (the worker wakes its
    sender with it, so deliveries go out at once rather than after the sender's idle sleep).

    Each claimed batch is loaded in one go (:func:`.poll.prepare`: three statements for
    the batch instead of three per poll).
    """
    owner = owner or new_owner()
    opts = svc.settings.worker
    started = svc.clock()

    def claim(limit: int):
        wids = claim_due_watches(svc.store, svc.settings, owner, opts.lease_seconds,
                                 limit=min(opts.claim_batch, limit), due_before=started, now=svc.clock())
        if not wids:
            return []
        try:
            with svc.store.connect() as conn:
                prepared = prepare(conn, svc.keys, wids)
        except Exception as exc:  # the database is away: each poll loads itself
            log.error("loading claimed watches failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            prepared = {}
        return [(wid, prepared.get(wid)) for wid in wids]

    def work(item):
        wid, prepared = item
        try:
            result = poll_watch(svc, wid, owner, prepared=prepared)
            result.first_page = []     # (a request's samples; a pass of thousands must not keep them)
            if notify is not None and result.new_events:
                notify()
            return result
        except Exception as exc:  # a bug or a database failure: keep the pass going, try it later
            log.error("poll of watch %s crashed: %s", wid, redact(f"{type(exc).__name__}: {exc}"))
            release_watch(svc.store, wid, owner, retry_at=svc.clock() + min(svc.settings.poll_interval, 60))
            return None

    stats = PassStats()
    for result in _drain(claim, work, opts.poll_threads, stop):
        metrics.poll_done(result, "worker")
        stats.watches += 1
        if result is None or result.error is not None:
            stats.errors += 1
        if result is not None:
            stats.pages += result.pages
            stats.events += result.new_events
    return stats


def run_worker(svc, *, once: bool = False, stop: threading.Event | None = None) -> None:
    """Poll, deliver and prune until stopped (or one pass of each with ``once``)."""
    stop = stop or threading.Event()
    opts = svc.settings.worker
    owner = new_owner()
    if once:
        polled = poll_due_watches(svc, owner, stop=stop)
        sent = deliver_due_webhooks(svc, stop=stop)
        prune(svc)
        log.info("pass: %d watches polled, %d pages, %d new events; deliveries %s",
                 polled.watches, polled.pages, polled.events, dict(sent) or "{}")
        return
    sender = Sender(svc)
    sender_thread = threading.Thread(target=sender.run, args=(stop,), name="sender", daemon=True)
    sender_thread.start()
    next_prune = svc.clock()
    try:
        while not stop.is_set():
            try:
                polled = poll_due_watches(svc, owner, stop=stop, notify=sender.wake)
                if polled.watches:
                    log.info("pass: %d watches polled, %d pages, %d new events",
                             polled.watches, polled.pages, polled.events)
                if svc.clock() >= next_prune:
                    next_prune = svc.clock() + opts.prune_every
                    prune(svc)
            except Exception as exc:   # the database is away: try again after a rest
                log.error("polling pass failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            stop.wait(opts.idle_sleep)
    finally:
        stop.set()
        sender_thread.join(svc.settings.delivery_timeout + 5)
