"""The sender: delivers webhooks on its own threads, apart from polling.

It keeps ``delivery_threads`` attempts running, topping up claims as attempts finish, and
never runs more than ``delivery_per_host`` attempts to one receiver host, nor
``delivery_per_key`` for one key's hooks, at once: a receiver that hangs, drips or floods
(or a key with many such receivers) ties up at most that many threads, each for at most
``delivery_timeout``, while other hosts' deliveries are claimed and sent as usual.

A claim loads what its deliveries need in the same transaction, the threads only POST
(reusing connections to the same receiver, see :mod:`.webhook_post`), and outcomes are
recorded many to a transaction (:func:`.deliver.record_outcomes`): until then a delivery
stays claimed, so a sender that dies in between sends it again with the same
``webhook-id`` (at least once). :meth:`Sender.wake` cuts the idle sleep short when this
process's poller has committed new deliveries.
:meth:`Sender.run` is the worker's loop; :meth:`Sender.drain` sends what is due now and
returns (``connector poll --once``, tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .. import metrics
from ..errors import redact
from .deliver import Attempt, Claimed, Outcome, claim_due_deliveries, record_outcomes, send_one
from .options import delivery_lease

log = logging.getLogger("connector.trigger")

AHEAD = 16             # a fast host may have this many times its cap claimed (running or waiting)
SLOW = 1.0             # seconds: a host answering its last attempt sooner may have attempts claimed ahead
RECORD_BATCH = 64      # attempts recorded in one transaction ...
RECORD_EVERY = 0.05    # ... or sooner, once the oldest has waited this long (seconds)


class Sender:
    def __init__(self, svc, *, threads: int | None = None, rng=None, resolve=None):
        self.svc = svc
        opts = svc.settings.worker
        self.threads = threads or opts.delivery_threads
        self.idle_sleep = opts.idle_sleep
        self.per_host = svc.settings.delivery_per_host
        self.per_key = svc.settings.delivery_per_key
        self.lease = delivery_lease(svc.settings)
        self.rng, self.resolve = rng, resolve
        self.active_hosts: Counter = Counter()  # receiver host -> attempts running
        self.active_keys: Counter = Counter()   # hook owner -> attempts running
        self.held_hosts: Counter = Counter()    # receiver host -> claimed and not finished (running or waiting)
        self.held_keys: Counter = Counter()     # hook owner -> the same
        self.fast: set = set()                  # hosts whose last attempt got an answer within SLOW seconds
        self.waiting: deque = deque()           # claimed, waiting for a free slot of their host and key
        self.running: dict = {}                 # future -> Claimed
        self.made: list[Attempt] = []           # attempts made, their outcomes not yet recorded
        self.outcomes: Counter = Counter()
        self._made_since = 0.0
        self._wake = threading.Event()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="webhook")

    def wake(self) -> None:
        """New deliveries were committed (by this process's poller): claim them now, not
        after the idle sleep."""
        self._wake.set()

    def _send(self, claimed: Claimed) -> Attempt | Outcome:
        try:
            return send_one(self.svc, claimed, resolve=self.resolve)
        except Exception as exc:   # a bug or a database failure: the lease brings the row back
            log.error("delivery %s crashed: %s", claimed.id, redact(f"{type(exc).__name__}: {exc}"))
            return Outcome(claimed.id, "error")

    def _count(self, outcome: Outcome) -> None:
        self.outcomes[outcome.result] += 1
        metrics.delivery_done(outcome.result)

    def _ready(self, claimed: Claimed) -> bool:
        return (self.active_hosts[claimed.receiver] < self.per_host
                and self.active_keys[claimed.key_id] < self.per_key)

    def _top_up(self, due_before: float) -> int:
        """Claim more when few claimed attempts are about to start. A host that answered its
        last attempt quickly may have up to ``AHEAD`` times its cap claimed (waiting their
        turn here, so one claim serves many attempts); any other host only its cap, so
        nothing waits behind a receiver that hangs."""
        # Waiting attempts that start now, or soon (a fast host's turn comes quickly); not
        # those held up behind a slow receiver, which must not stop other hosts' claims.
        queued = sum(1 for claimed in self.waiting if claimed.receiver in self.fast or self._ready(claimed))
        free = 2 * self.threads - len(self.running) - queued
        if queued >= max(1, self.threads // 2) or free <= 0:
            return 0
        ahead = self.per_host * (AHEAD - 1)
        busy_hosts = {h: self.held_hosts[h] - (ahead if h in self.fast else 0)
                      for h in set(self.held_hosts) | self.fast}
        batch = claim_due_deliveries(self.svc.store, now=self.svc.clock(), lease=self.lease, limit=free,
                                     due_before=due_before, busy_hosts=busy_hosts, busy_keys=dict(self.held_keys),
                                     per_host=self.per_host, per_key=self.per_key * AHEAD)
        for claimed in batch:
            self.held_hosts[claimed.receiver] += 1
            self.held_keys[claimed.key_id] += 1
            self.waiting.append(claimed)
        return len(batch)

    def _dispatch(self) -> None:
        """Start waiting attempts, oldest first, within the thread count and the caps of
        their host and key (never more than ``per_host`` at once to one receiver host)."""
        if self._stopping:
            return
        keep: deque = deque()
        while self.waiting:
            claimed = self.waiting.popleft()
            if len(self.running) >= self.threads or not self._ready(claimed):
                keep.append(claimed)
                continue
            self.active_hosts[claimed.receiver] += 1
            self.active_keys[claimed.key_id] += 1
            self.running[self._pool.submit(self._send, claimed)] = claimed
        self.waiting = keep

    def _collect(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` for an attempt to finish; take every finished one."""
        if not self.running:
            return
        done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            claimed = self.running.pop(future)
            for busy, name in ((self.active_hosts, claimed.receiver), (self.active_keys, claimed.key_id),
                               (self.held_hosts, claimed.receiver), (self.held_keys, claimed.key_id)):
                busy[name] -= 1
                if busy[name] <= 0:
                    del busy[name]
            result = future.result()
            if isinstance(result, Attempt):
                if result.status_code is not None and result.finished - result.started < SLOW:
                    self.fast.add(claimed.receiver)
                else:
                    self.fast.discard(claimed.receiver)
                if not self.made:
                    self._made_since = time.monotonic()
                self.made.append(result)
            else:
                self._count(result)
        self._dispatch()

    def _record(self, *, now: bool = False) -> None:
        """Record the attempts made so far in one transaction, once there are
        ``RECORD_BATCH`` of them, the oldest waited ``RECORD_EVERY`` seconds, nothing is
        running, or ``now``. Their rows stay claimed until then, so a crash before it
        sends them again, with the same ``webhook-id``."""
        if not self.made:
            return
        if not (now or not self.running or len(self.made) >= RECORD_BATCH
                or time.monotonic() - self._made_since >= RECORD_EVERY):
            return
        made, self.made = self.made, []
        try:
            outcomes = record_outcomes(self.svc, made, rng=self.rng)
        except Exception as exc:   # the database is away: the leases bring the rows back
            log.error("recording %d delivery outcomes failed: %s", len(made), redact(f"{type(exc).__name__}: {exc}"))
            outcomes = [Outcome(a.claimed.id, "error") for a in made]
        for outcome in outcomes:
            self._count(outcome)

    def drain(self, stop: threading.Event | None = None) -> Counter:
        """Send every delivery due now (and retries that fall due meanwhile are left for the
        next pass); returns the outcomes counted by kind."""
        due_before = self.svc.clock()
        self.outcomes = Counter()
        while True:
            stopping = stop is not None and stop.is_set()
            if not stopping:
                self._top_up(due_before)
                self._dispatch()
            if not self.running:
                self._record(now=True)
                if stopping or not self.waiting:   # (what still waits is left to its lease)
                    return self.outcomes
                continue
            self._collect(None)
            self._record()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; attempts running then finish (within the timeout).
        Claimed deliveries still waiting then are left to their leases (sent again later)."""
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    self._top_up(self.svc.clock())
                except Exception as exc:   # the database is away: try again shortly
                    log.error("claiming deliveries failed: %s", redact(f"{type(exc).__name__}: {exc}"))
                self._dispatch()
                if self.running:
                    self._collect(self.idle_sleep)
                else:
                    self._wake.wait(self.idle_sleep)
                self._record()
            self._stopping = True
            while self.running:
                self._collect(None)
            self._record(now=True)
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def deliver_due_webhooks(svc, *, stop: threading.Event | None = None, **kwargs) -> Counter:
    """One pass: send what is due now, then return the outcomes counted by kind."""
    sender = Sender(svc, **kwargs)
    try:
        return sender.drain(stop)
    finally:
        sender.close()
