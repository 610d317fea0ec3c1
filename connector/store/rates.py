"""Per-minute rate limits of caller keys, counted in the ``rate_windows`` table.

Each process takes the minute's allowance from the database in blocks of 1/20 of the limit
(one write serves that many requests), so with several processes a key may be refused up to
5 % early, never let through beyond its limit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import upsert
from .schema import rate_windows

if TYPE_CHECKING:
    from .keys import Caller


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset_in: int
    allowed: bool


class RateWindows:
    """:meth:`hit` for :class:`~connector.store.keys.KeyStore` (its store, clock and usage counts)."""

    def _init_rates(self) -> None:
        # key id -> [window, requests left in this process's allowance, window count when taken]
        self._allowances: dict[str, list[int]] = {}
        self._allowance_lock = threading.Lock()
        self._refills: dict[str, threading.Lock] = {}   # key id -> held while its allowance is refilled

    def hit(self, caller: "Caller", action: str, request_source: str, clock=None) -> RateState:
        """Count one request against the caller's current minute; record its requestSource.

        A process takes the minute's allowance in blocks (module docstring).
        """
        t = (clock or self.clock)()
        window = int(t // 60)
        reset_in = max(1, 60 - int(t % 60))
        state = self._from_allowance(caller, window, reset_in, action, request_source)
        if state is not None:
            return state
        with self._allowance_lock:
            if len(self._refills) >= 10_000:   # bounded (a lock dropped here only costs an extra block)
                self._refills.clear()
            refill = self._refills.setdefault(caller.id, threading.Lock())
        # One thread of this process refills a key's allowance at a time; the others then spend
        # from it (each taking a block of its own would over-count the key's minute).
        with refill:
            state = self._from_allowance(caller, window, reset_in, action, request_source)
            if state is not None:
                return state
            return self._refill(caller, window, reset_in, action, request_source)

    def _from_allowance(self, caller: "Caller", window: int, reset_in: int, action: str,
                        request_source: str) -> RateState | None:
        with self._allowance_lock:
            allowance = self._allowances.get(caller.id)
            if allowance is not None and allowance[0] == window and allowance[1] > 0:
                allowance[1] -= 1
                self._count_usage(caller.id, action, request_source, requests=1)
                return RateState(limit=caller.rate_limit,
                                 remaining=max(0, caller.rate_limit - allowance[2] + allowance[1]),
                                 reset_in=reset_in, allowed=True)
        return None

    def _refill(self, caller: "Caller", window: int, reset_in: int, action: str, request_source: str) -> RateState:
        chunk = max(1, caller.rate_limit // 20)
        with self.store.write() as conn:
            count = conn.execute(
                upsert(self.store.dialect, rate_windows, {"key_id": caller.id, "window": window, "count": chunk},
                       ["key_id", "window"], {"count": rate_windows.c.count + chunk})
                .returning(rate_windows.c.count)
            ).scalar_one()
            granted = chunk - max(0, count - caller.rate_limit)
            if granted < chunk:  # give back what is beyond the limit; the attempt itself still counts
                count = caller.rate_limit + (1 if granted <= 0 else 0)
                conn.execute(rate_windows.update()
                             .where(rate_windows.c.key_id == caller.id, rate_windows.c.window == window)
                             .values(count=count))
            if count == chunk:  # first allowance of this window: prune the old ones
                conn.execute(rate_windows.delete().where(rate_windows.c.key_id == caller.id,
                                                         rate_windows.c.window < window - 1))
            if granted > 0:
                self._count_usage(caller.id, action, request_source, requests=1)
            if self.clock() - self._usage_flushed >= 1.0:
                self._flush_usage(conn)
        allowed = granted > 0
        with self._allowance_lock:
            self._allowances[caller.id] = [window, max(0, granted - 1), min(count, caller.rate_limit)]
        return RateState(limit=caller.rate_limit,
                         remaining=max(0, caller.rate_limit - min(count, caller.rate_limit) + max(0, granted - 1)),
                         reset_in=reset_in, allowed=allowed)
