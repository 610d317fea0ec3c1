"""Tuning of the worker, :class:`TriggerOptions`, from ``settings.extra``.

What callers and operators set (poll interval, retry schedule, quotas, delivery timeout,
retention) are typed fields of ``Settings``; these are the worker's knobs.

``connector poll`` fills ``extra`` from ``CONNECTOR_POLL_PAGE_BUDGET``,
``CONNECTOR_POLL_LEASE_SECONDS``, ``CONNECTOR_POLL_THREADS`` and ``CONNECTOR_POLL_IDLE_SLEEP``;
tests pass them directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Settings


@dataclass(frozen=True)
class TriggerOptions:
    page_budget: int = 10          # upstream pages one poll may read (the rest waits for the next poll)
    request_page_budget: int = 2   # pages a poll made inside an HTTP request may read (Zapier waits 30 s)
    frontier_run: int = 3          # consecutive seen followers that mark the known frontier
    lease_seconds: float = 120.0   # how long a poller owns a watch before another may take it over
    poll_threads: int = 16         # watches polled at once by one worker
    delivery_threads: int = 64     # webhooks sent at once by one worker (threads mostly wait on sockets)
    claim_batch: int = 200
    idle_sleep: float = 0.25       # seconds the worker rests between passes (bounds commit-to-delivery latency)
    prune_every: float = 600.0     # seconds between two retention passes
    prune_batch: int = 500         # rows one retention statement deletes (short transactions)

    @classmethod
    def from_settings(cls, settings: Settings) -> "TriggerOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.extra.items() if k in names})


def delivery_lease(settings: Settings) -> float:
    """How long a claimed delivery is ours: its longest attempt (the timeout bounds it,
    name lookup included) plus a margin for starting it and recording the outcome."""
    return settings.delivery_timeout + 60.0


def poll_freshness(settings: Settings) -> float:
    """How long a polling caller keeps its watch polled (and pays) after its last request."""
    return max(3 * settings.poll_interval, 900)
