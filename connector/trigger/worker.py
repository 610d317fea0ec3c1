"""The worker: ``connector poll`` polls due watches, then delivers due webhooks.

Both passes run on thread pools, so upstream and receiver latency do not serialise a
cycle. Work is claimed in batches with leases (``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
so several worker processes share it; on SQLite run one. One pass only takes what was due
when it started, so a watch with a backlog or a delivery retried at once waits for the
next pass instead of spinning.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import click

from ..errors import redact
from .deliver import claim_due_deliveries, deliver_one, webhook_client
from .options import TriggerOptions
from .watches import claim_due_watches, poll_watch, release_watch

log = logging.getLogger("connector.trigger")


def new_owner() -> str:
    """Lease owner name: host, pid and a random tag (a restarted process is a new owner)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class PassStats:
    watches: int = 0
    pages: int = 0
    events: int = 0
    errors: int = 0
    outcomes: dict = field(default_factory=dict)


def _drain(claim, work, threads: int, stop: threading.Event | None) -> list:
    """Run ``work`` on claimed items, ``threads`` at a time, until nothing more is claimed.

    Claims are topped up as items finish, so one slow upstream or receiver never holds a
    whole batch back, and nothing waits claimed (its lease running) for long.
    """
    results: list = []
    running: set = set()
    exhausted = False
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="trigger") as pool:
        while True:
            if not exhausted and len(running) < threads and not (stop and stop.is_set()):
                batch = claim(2 * threads - len(running))
                exhausted = not batch
                running |= {pool.submit(work, item) for item in batch}
            if not running:
                return results
            done, running = wait(running, return_when=FIRST_COMPLETED)
            results.extend(future.result() for future in done)


def poll_due_watches(svc, owner: str | None = None, *, stop: threading.Event | None = None) -> PassStats:
    """Poll every watch that is due and paid for; returns what the pass did."""
    owner = owner or new_owner()
    opts = TriggerOptions.from_settings(svc.settings)
    started = time.time()

    def claim(limit: int):
        return claim_due_watches(svc.store, svc.settings, owner, opts.lease_seconds,
                                 limit=min(opts.claim_batch, limit), due_before=started)

    def work(wid):
        try:
            return poll_watch(svc, wid, owner)
        except Exception as exc:  # a bug or a database failure: keep the pass going
            log.error("poll of watch %s crashed: %s", wid, redact(f"{type(exc).__name__}: {exc}"))
            release_watch(svc.store, wid, owner)
            return None

    stats = PassStats()
    for result in _drain(claim, work, opts.poll_threads, stop):
        stats.watches += 1
        if result is None or result.error is not None:
            stats.errors += 1
        if result is not None:
            stats.pages += result.pages
            stats.events += result.new_events
    return stats


def deliver_due_webhooks(svc, *, client=None, stop: threading.Event | None = None) -> PassStats:
    """Send every delivery that is due; returns the outcomes counted by kind."""
    opts = TriggerOptions.from_settings(svc.settings)
    started = time.time()
    own_client = client is None
    client = client or webhook_client(svc.settings)

    def claim(limit: int):
        return claim_due_deliveries(svc.store, limit=min(opts.claim_batch, limit),
                                    lease=opts.lease_seconds, due_before=started)

    def work(delivery_id):
        try:
            return deliver_one(svc.store, svc.settings, client, delivery_id).result
        except Exception as exc:
            log.error("delivery %s crashed: %s", delivery_id, redact(f"{type(exc).__name__}: {exc}"))
            return "error"

    stats = PassStats()
    try:
        for result in _drain(claim, work, opts.delivery_threads, stop):
            stats.outcomes[result] = stats.outcomes.get(result, 0) + 1
    finally:
        if own_client:
            client.close()
    return stats


def run_worker(svc, *, once: bool = False, idle_sleep: float | None = None,
               stop: threading.Event | None = None) -> None:
    """Poll and deliver until stopped (or one pass with ``once``)."""
    stop = stop or threading.Event()
    if idle_sleep is None:
        idle_sleep = TriggerOptions.from_settings(svc.settings).idle_sleep
    owner = new_owner()
    client = webhook_client(svc.settings)
    try:
        while not stop.is_set():
            polled = poll_due_watches(svc, owner, stop=stop)
            sent = deliver_due_webhooks(svc, client=client, stop=stop)
            if polled.watches or sent.outcomes:
                log.info("pass: %d watches polled, %d pages, %d new events; deliveries %s",
                         polled.watches, polled.pages, polled.events, sent.outcomes or "{}")
            if once:
                return
            stop.wait(idle_sleep)
    finally:
        client.close()


ENV_OPTIONS = {"CONNECTOR_POLL_PAGE_BUDGET": ("page_budget", int),
               "CONNECTOR_POLL_LEASE_SECONDS": ("lease_seconds", float),
               "CONNECTOR_POLL_THREADS": ("poll_threads", int),
               "CONNECTOR_POLL_IDLE_SLEEP": ("idle_sleep", float)}


@click.command("poll")
@click.option("--once", is_flag=True, help="One pass (poll due watches, deliver due webhooks), then exit.")
def poll_command(once):
    """Poll due watches for new followers and deliver webhooks (the Procfile's worker)."""
    from flask import Flask

    from ..app import build_services
    from ..cli import load_settings
    from ..manifests import ManifestError

    settings = load_settings()
    extra = dict(settings.extra)
    for name, (key, kind) in ENV_OPTIONS.items():
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                extra[key] = kind(raw)
            except ValueError:
                raise click.ClickException(f"{name} must be a number, got {raw!r}.") from None
            if extra[key] <= 0:
                raise click.ClickException(f"{name} must be more than 0, got {raw!r}.")
    settings = settings.replace(extra=extra)
    try:
        svc = build_services(settings, Flask("connector.app", instance_relative_config=True).instance_path)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"Polling every {settings.poll_interval}s per watch"
               + (" (one pass)" if once else "; Ctrl-C stops"), err=True)
    try:
        run_worker(svc, once=once, stop=stop)
    finally:
        svc.providers.close()
        svc.store.dispose()
