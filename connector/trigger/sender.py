"""The sender: delivers webhooks on its own threads, apart from polling.

It keeps ``delivery_threads`` attempts running, topping up claims as attempts finish, and
never runs more than ``delivery_per_host`` attempts to one receiver host, nor
``delivery_per_key`` for one key's hooks, at once: a receiver that hangs, drips or floods
(or a key with many such receivers) ties up at most that many threads, each for at most
``delivery_timeout``, while other hosts' deliveries are claimed and sent as usual.
:meth:`Sender.run` is the worker's loop; :meth:`Sender.drain` sends what is due now and
returns (``connector poll --once``, tests).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ..errors import redact
from .deliver import Claimed, Outcome, claim_due_deliveries, deliver_one
from .options import delivery_lease

log = logging.getLogger("connector.trigger")


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
        self.busy_hosts: Counter = Counter()    # receiver host -> attempts running
        self.busy_keys: Counter = Counter()     # hook owner -> attempts running
        self.running: dict = {}                 # future -> Claimed
        self.outcomes: Counter = Counter()
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="webhook")

    def _send(self, claimed: Claimed) -> Outcome:
        try:
            return deliver_one(self.svc, claimed, rng=self.rng, resolve=self.resolve)
        except Exception as exc:   # a bug or a database failure: the lease brings the row back
            log.error("delivery %s crashed: %s", claimed.id, redact(f"{type(exc).__name__}: {exc}"))
            return Outcome(claimed.id, "error")

    def _top_up(self, due_before: float) -> int:
        free = self.threads - len(self.running)
        if free <= 0:
            return 0
        batch = claim_due_deliveries(self.svc.store, now=self.svc.clock(), lease=self.lease, limit=free,
                                     due_before=due_before, busy_hosts=dict(self.busy_hosts),
                                     busy_keys=dict(self.busy_keys), per_host=self.per_host, per_key=self.per_key)
        for claimed in batch:
            self.busy_hosts[claimed.receiver] += 1
            self.busy_keys[claimed.key_id] += 1
            self.running[self._pool.submit(self._send, claimed)] = claimed
        return len(batch)

    def _collect(self, timeout: float | None) -> None:
        if not self.running:
            return
        done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            claimed = self.running.pop(future)
            for busy, name in ((self.busy_hosts, claimed.receiver), (self.busy_keys, claimed.key_id)):
                busy[name] -= 1
                if busy[name] <= 0:
                    del busy[name]
            self.outcomes[future.result().result] += 1

    def drain(self, stop: threading.Event | None = None) -> Counter:
        """Send every delivery due now (and retries that fall due meanwhile are left for the
        next pass); returns the outcomes counted by kind."""
        due_before = self.svc.clock()
        self.outcomes = Counter()
        while True:
            claimed = 0 if stop is not None and stop.is_set() else self._top_up(due_before)
            if not self.running:
                return self.outcomes
            if not claimed or len(self.running) >= self.threads:
                self._collect(None)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; attempts running then finish (within the timeout)."""
        try:
            while not stop.is_set():
                try:
                    self._top_up(self.svc.clock())
                except Exception as exc:   # the database is away: try again shortly
                    log.error("claiming deliveries failed: %s", redact(f"{type(exc).__name__}: {exc}"))
                if self.running:
                    self._collect(self.idle_sleep)
                else:
                    stop.wait(self.idle_sleep)
            while self.running:
                self._collect(None)
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
