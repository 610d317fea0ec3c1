"""The sender: delivers webhooks from an event loop of its own, apart from polling.

Each attempt is a coroutine (:mod:`.webhook_client`), so up to ``delivery_concurrency``
attempts (1,000 by default) are open at once in little memory: a receiver that hangs costs
a socket until the attempt's deadline, not a thread.

Fair share between keys. The keys with work (deliveries claimed, waiting or running) share
the capacity: each may have ``max(delivery_per_key, capacity // (keys with work + 1))``
attempts open at once, so a key's share shrinks toward an equal one as more keys have work,
and the ``+ 1`` keeps room for a key that had none. Shares taken while fewer keys had work
shrink only as those attempts end (an attempt is never cut short), so the last ``share``
slots are kept for keys with fewer than ``delivery_per_key`` attempts open: keys whose
receivers all hang hold only what they took, and a healthy key's delivery starts at the
next claim (within ``idle_sleep``, at once when this worker's poller wakes the sender). Waiting attempts start round robin
between keys. A claim takes keys in turn and hands each at most its share (``AHEAD`` times
that for a key whose last answer came quickly, so a busy fast receiver is fed from memory).
Never more than ``delivery_per_host`` attempts at once go to one receiver host (``AHEAD``
times that may be claimed for a host that answers quickly; only the cap for any other, so
nothing waits claimed behind a receiver that hangs).

Database work (claims, outcomes) runs on one thread of its own, so the loop keeps sending
meanwhile. Outcomes are recorded many to a transaction (:func:`.deliver.record_robustly`:
one bad row never holds the others); until then a delivery stays claimed, so a sender that
dies in between sends it again with the same ``webhook-id`` (at least once). Outcomes the
database refused are tried again while the deliveries' leases last.

:meth:`Sender.run` is the worker's loop (on the worker's sender thread); :meth:`Sender.drain`
sends what is due now and returns (``connector poll --once``, tests). :meth:`Sender.wake`
cuts the idle sleep short when this process's poller has committed new deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial

from .. import metrics
from ..errors import redact
from .deliver import Attempt, Claimed, Outcome, claim_due_deliveries, record_robustly, send_one
from .webhook_client import WebhookClient

log = logging.getLogger("connector.trigger")

AHEAD = 16             # a fast host or key may have this many times its cap claimed (running or waiting)
SLOW = 1.0             # seconds: a host or key answering its last attempt sooner may have attempts claimed ahead
CLAIM_BATCH = 256      # rows one claim takes at most
CLAIM_LOW = 32         # claim again before the idle sleep is over when fewer wait ready to start ...
CLAIM_GAP = 0.02       # ... at most this often (seconds)
START_BATCH = 32      # attempts started in one turn of the loop at most, so answers are read in between
RECORD_BATCH = 64      # attempts recorded in one transaction ...
RECORD_EVERY = 0.05    # ... or sooner, once the oldest has waited this long (seconds)
RECORD_RETRY = 2.0     # seconds between two tries to record outcomes the database refused
RECORD_MARGIN = 10.0   # an outcome is recorded late only while its lease has this long left


class Sender:
    def __init__(self, svc, *, concurrency: int | None = None, rng=None, resolve=None, ssl_context=None):
        self.svc = svc
        settings = svc.settings
        self.capacity = concurrency or settings.worker.delivery_concurrency
        self.idle_sleep = settings.worker.idle_sleep
        self.per_host = settings.delivery_per_host
        self.floor = settings.delivery_per_key
        self.lease = settings.delivery_lease
        self.rng, self.resolve, self.ssl_context = rng, resolve, ssl_context
        self.queues: dict[str, deque] = {}      # key -> claimed, waiting to start (oldest first); order = turns
        self.waiting = 0                        # claimed attempts in the queues
        self.running: dict[asyncio.Task, Claimed] = {}
        self.running_hosts: Counter = Counter()  # receiver host -> attempts running
        self.running_keys: Counter = Counter()   # hook owner -> attempts running
        self.held_hosts: Counter = Counter()     # receiver host -> claimed and not finished (running or waiting)
        self.held_keys: Counter = Counter()      # hook owner -> the same; its keys are the keys with work
        self.fast_hosts: set = set()             # hosts whose last attempt got an answer within SLOW seconds
        self.fast_keys: set = set()              # keys whose last attempt did
        self.finished: deque = deque()           # tasks done, not yet collected
        self.made: list[Attempt] = []            # attempts made, their outcomes not yet recorded
        self.unrecorded: list[Attempt] = []      # attempts whose outcomes the database refused
        self.outcomes: Counter = Counter()
        self._made_since = 0.0
        self._retry_at = 0.0
        self._recording = None                   # (future, attempts) of the outcomes being written
        self._claiming = None                    # the claim running on the database thread
        self._claim_more = True                  # a claim may find more (the last found some, or slots freed)
        self._start_more = False                 # _dispatch stopped at START_BATCH with more to start
        self._stopping = False
        self._woken = threading.Event()          # set by wake(), from any thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None  # something to do: an attempt finished, outcomes written, wake()
        self._db: ThreadPoolExecutor | None = None

    # -- from other threads --------------------------------------------------------------------

    def wake(self) -> None:
        """New deliveries were committed (by this process's poller): claim them now, not
        after the idle sleep."""
        self._woken.set()
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:      # the loop has just closed
                pass

    # -- fair share ----------------------------------------------------------------------------

    def share(self) -> int:
        """Attempts one key may have open at once: an equal part of the capacity between the
        keys with work and one more (room for a key that has none yet), at least the floor."""
        return max(self.floor, self.capacity // (len(self.held_keys) + 1))

    def _claim(self, due_before: float) -> None:
        """Start claiming due deliveries (on the database thread, while attempts go on) within
        every key's share and every host's cap; one claim at a time."""
        if self._claiming is not None:
            return
        room = min(CLAIM_BATCH, 2 * self.capacity - sum(self.held_keys.values()))
        if room <= 0:
            self._claim_more = False
            return
        share = self.share()
        ahead_host, ahead_key = self.per_host * (AHEAD - 1), share * (AHEAD - 1)
        busy_hosts = {h: self.held_hosts[h] - (ahead_host if h in self.fast_hosts else 0)
                      for h in set(self.held_hosts) | self.fast_hosts}
        busy_keys = {k: self.held_keys[k] - (ahead_key if k in self.fast_keys else 0)
                     for k in set(self.held_keys) | self.fast_keys}
        claim = partial(claim_due_deliveries, self.svc.store, now=self.svc.clock(), lease=self.lease, limit=room,
                        due_before=due_before, busy_hosts=busy_hosts, busy_keys=busy_keys,
                        per_host=self.per_host, per_key=share,
                        trim=partial(self._fair_part, dict(self.held_keys), set(self.fast_keys)))
        self._claiming = self._loop.run_in_executor(self._db, claim)
        self._claiming.add_done_callback(self._poke)

    def _fair_part(self, held: dict, fast: set, picked: list) -> set:
        """The picked rows (in the claim's order: keys taking turns) within each key's share,
        the share counting every key with work, those of this claim included. (Runs on the
        database thread: ``held`` and ``fast`` are copies.)"""
        keys = set(held) | {key for _, _, key in picked}
        share = max(self.floor, self.capacity // (len(keys) + 1))
        room = {key: share * (AHEAD if key in fast else 1) - held.get(key, 0) for key in keys}
        keep = set()
        for delivery_id, _, key in picked:
            if room[key] > 0:
                room[key] -= 1
                keep.add(delivery_id)
        return keep

    def _ready(self) -> int:
        """Claimed attempts waiting that start as soon as a slot frees (up to ``CLAIM_LOW``):
        not those of a key at its share, nor those behind a receiver host at its cap, unless
        that key or host answers quickly. Rows held back by receivers that hang would
        otherwise keep the next claim (another key's new deliveries) waiting for the idle sleep."""
        share, ready = self.share(), 0
        for key, queue in self.queues.items():
            if self.running_keys[key] >= share and key not in self.fast_keys:
                continue
            for claimed in queue:
                if self.running_hosts[claimed.receiver] < self.per_host or claimed.receiver in self.fast_hosts:
                    ready += 1
                    if ready >= CLAIM_LOW:
                        return ready
        return ready

    def _claimed(self) -> bool:
        """Queue what a finished claim got; False while it is still running."""
        if self._claiming is None:
            return True
        if not self._claiming.done():
            return False
        future, self._claiming = self._claiming, None
        try:
            batch = future.result()
        except Exception as exc:   # the database is away: try again shortly
            log.error("claiming deliveries failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            self._claim_more = False
            return True
        for claimed in batch:
            self.held_hosts[claimed.receiver] += 1
            self.held_keys[claimed.key_id] += 1
            self.queues.setdefault(claimed.key_id, deque()).append(claimed)
        self.waiting += len(batch)
        self._claim_more = bool(batch)
        return True

    def _dispatch(self, client: WebhookClient) -> None:
        """Start waiting attempts, one key after another (round robin), each key within its
        share, each receiver host within its cap, all within the capacity. The last
        ``share`` slots are kept for keys with fewer than ``delivery_per_key`` attempts
        open: shares taken while fewer keys had work shrink only as their attempts end,
        and a key that has just got work must not wait for that. At most ``START_BATCH``
        start in one turn of the loop: hundreds of hanging receivers' attempts starting at
        once held up the answers of a healthy key's running ones."""
        self._start_more = False
        if self._stopping:
            return
        share = self.share()
        crowded = self.capacity - share      # beyond this, only keys below the floor start more
        started, budget = True, START_BATCH
        while started and len(self.running) < self.capacity:
            started = False
            for key in list(self.queues):
                if len(self.running) >= self.capacity:
                    return
                if budget == 0:          # the rest at the next turn of the loop, after what has finished
                    self._start_more = True
                    return
                running = self.running_keys[key]
                if running >= share or (running >= self.floor and len(self.running) >= crowded):
                    continue
                queue = self.queues[key]
                index = next((i for i, c in enumerate(queue) if self.running_hosts[c.receiver] < self.per_host), None)
                if index is None:
                    continue
                claimed = queue[index]
                del queue[index]
                del self.queues[key]
                if queue:                        # its next one waits for the other keys' turns
                    self.queues[key] = queue
                self.waiting -= 1
                self._start(client, claimed)
                started, budget = True, budget - 1

    # -- attempts ------------------------------------------------------------------------------

    def _start(self, client: WebhookClient, claimed: Claimed) -> None:
        self.running_hosts[claimed.receiver] += 1
        self.running_keys[claimed.key_id] += 1
        task = self._loop.create_task(self._send(client, claimed))
        self.running[task] = claimed
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.finished.append(task)
        self._poke()

    def _poke(self, _=None) -> None:
        if self._event is not None:
            self._event.set()

    async def _send(self, client: WebhookClient, claimed: Claimed) -> Attempt | Outcome:
        try:
            return await send_one(self.svc, client, claimed)
        except Exception as exc:   # a bug: the lease brings the row back
            log.error("delivery %s crashed: %s", claimed.id, redact(f"{type(exc).__name__}: {exc}"))
            return Outcome(claimed.id, "error")

    def _collect(self) -> None:
        """Take every finished attempt: free its slots, queue its outcome for recording."""
        while self.finished:
            task = self.finished.popleft()
            claimed = self.running.pop(task)
            for busy, name in ((self.running_hosts, claimed.receiver), (self.running_keys, claimed.key_id),
                               (self.held_hosts, claimed.receiver), (self.held_keys, claimed.key_id)):
                busy[name] -= 1
                if busy[name] <= 0:
                    del busy[name]
            self._claim_more = True
            result = task.result()
            if isinstance(result, Attempt):
                quick = result.status_code is not None and result.finished - result.started < SLOW
                for fast, name in ((self.fast_hosts, claimed.receiver), (self.fast_keys, claimed.key_id)):
                    if quick:
                        fast.add(name)
                    else:
                        fast.discard(name)
                if not self.made:
                    self._made_since = time.monotonic()
                self.made.append(result)
            else:
                self._count(result)

    def _count(self, outcome: Outcome) -> None:
        result = "error" if outcome.result == "unrecorded" else outcome.result
        self.outcomes[result] += 1
        metrics.delivery_done(result)

    # -- outcomes ------------------------------------------------------------------------------

    def _record(self, *, now: bool = False) -> None:
        """Start writing the outcomes made so far (on the database thread), once there are
        ``RECORD_BATCH`` of them, the oldest waited ``RECORD_EVERY`` seconds, nothing is
        running, or ``now``; one write at a time. Their rows stay claimed until then, so
        a crash before it sends them again, with the same ``webhook-id``."""
        if self._recording is not None:
            if not self._recording[0].done():
                return
            self._recorded()
        batch = []
        if self.made and (now or not self.running or len(self.made) >= RECORD_BATCH
                          or time.monotonic() - self._made_since >= RECORD_EVERY):
            batch, self.made = self.made, []
        if self.unrecorded and (now or time.monotonic() >= self._retry_at):
            batch, self.unrecorded = self.unrecorded + batch, []
        if not batch:
            return
        future = self._loop.run_in_executor(self._db, partial(record_robustly, self.svc, batch, rng=self.rng))
        future.add_done_callback(self._poke)
        self._recording = (future, batch)

    def _recorded(self) -> None:
        """Count a finished write's outcomes; keep those the database refused for another try
        while their leases last (else the leases bring them back)."""
        future, batch = self._recording
        self._recording = None
        outcomes = future.result()   # (record_robustly catches what the database raises)
        now = self.svc.clock()
        for attempt, outcome in zip(batch, outcomes):
            if outcome.result == "unrecorded" and now < attempt.claimed.claimed_at + self.lease - RECORD_MARGIN \
                    and not self._stopping:
                self.unrecorded.append(attempt)
            else:
                self._count(outcome)
        if self.unrecorded:
            self._retry_at = time.monotonic() + RECORD_RETRY

    async def _record_all(self) -> None:
        """Write every outcome made (at the end of a pass, or when stopping)."""
        for _ in range(2):        # what is being written, then what is left
            if self._recording is not None:
                await asyncio.wait([self._recording[0]])
            self._record(now=True)
        if self._recording is not None:
            await asyncio.wait([self._recording[0]])
            self._recorded()
        for attempt in self.unrecorded:     # (the database is away: left to their leases)
            self._count(Outcome(attempt.claimed.id, "error"))
        self.unrecorded = []

    # -- the loops -----------------------------------------------------------------------------

    async def _wait(self, timeout: float | None) -> None:
        """Until an attempt finishes, a claim or a write ends, wake() is called, or ``timeout`` passes."""
        if self.finished or self._start_more or (self._claiming.done() if self._claiming is not None
                             else self._woken.is_set() and not self._stopping):
            await asyncio.sleep(0)        # (let the attempts run: returning at once would never yield)
            return
        self._event.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            pass

    def _record_timeout(self, timeout: float) -> float:
        if self.made:
            timeout = min(timeout, max(0.0, self._made_since + RECORD_EVERY - time.monotonic()))
        if self.unrecorded:
            timeout = min(timeout, max(0.0, self._retry_at - time.monotonic()))
        return timeout

    @asynccontextmanager
    async def _session(self):
        self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-db")
        settings = self.svc.settings
        client = WebhookClient(timeout=settings.delivery_timeout, max_bytes=settings.delivery_max_response_bytes,
                               allow_private=settings.allow_private_targets,
                               resolve=self.resolve or socket.getaddrinfo, ssl_context=self.ssl_context)
        try:
            yield client
        finally:
            for task in self.running:     # (only when leaving on an exception)
                task.cancel()
            await client.aclose()
            self._loop = self._event = None
            self._db.shutdown(wait=True)

    def drain(self, stop: threading.Event | None = None) -> Counter:
        """Send every delivery due now (retries that fall due meanwhile are left for the next
        pass); returns the outcomes counted by kind."""
        return asyncio.run(self._drain(stop))

    async def _drain(self, stop: threading.Event | None) -> Counter:
        due_before = self.svc.clock()
        self.outcomes = Counter()
        async with self._session() as client:
            while True:
                stopping = stop is not None and stop.is_set()
                if not stopping and self._claim_more and self._ready() < CLAIM_LOW:
                    self._woken.clear()
                    self._claim(due_before)
                claiming = not self._claimed()
                self._dispatch(client)
                if not self.running and not claiming:
                    await self._record_all()
                    if stopping or not (self.waiting or self._claim_more):   # (what still waits is left to its lease)
                        return self.outcomes
                    continue
                await self._wait(None)
                self._collect()
                self._record()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; attempts running then finish (within the timeout).
        Claimed deliveries still waiting then are left to their leases (sent again later)."""
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        async with self._session() as client:
            last_claim = float("-inf")
            while not stop.is_set():
                now = time.monotonic()
                # (claim again once CLAIM_GAP is over, not only after the idle sleep, while few
                # claimed rows are ready to start and the last claim found some or slots freed)
                soon = self._claiming is None and self._claim_more and self._ready() < CLAIM_LOW
                if self._claiming is None and (self._woken.is_set() or now - last_claim >= self.idle_sleep
                                               or (soon and now - last_claim >= CLAIM_GAP)):
                    self._woken.clear()
                    last_claim, soon = now, False
                    self._claim(self.svc.clock())
                self._claimed()
                self._dispatch(client)
                self._record()
                wake_at = last_claim + (CLAIM_GAP if soon else self.idle_sleep)
                await self._wait(self._record_timeout(max(0.0, wake_at - time.monotonic())))
                self._collect()
            self._stopping, self._start_more = True, False
            while self.running or not self._claimed():
                await self._wait(None)
                self._collect()
                self._record()
            await self._record_all()


def deliver_due_webhooks(svc, *, stop: threading.Event | None = None, **kwargs) -> Counter:
    """One pass: send what is due now, then return the outcomes counted by kind."""
    return Sender(svc, **kwargs).drain(stop)
