"""Usage statistics of caller keys: requests and credits by key, action and requestSource,
counted in memory and written at most once a second, piggybacked on a rate-limit write, so the hot
path costs one write per request.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import upsert
from .schema import key_usage

if TYPE_CHECKING:
    from .keys import Caller


class UsageLog:
    """Usage statistics for :class:`~connector.store.keys.KeyStore` (its store and clock)."""

    def _init_usage(self) -> None:
        self._usage: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._usage_lock = threading.Lock()
        self._usage_flushed = self.clock()

    def record_spend(self, caller: "Caller", action: str, request_source: str, cost: int) -> None:
        """Count credits spent in the usage statistics (written with the next flush)."""
        if cost > 0:
            self._count_usage(caller.id, action, request_source, credits=cost)

    def _count_usage(self, key_id: str, action: str, source: str, requests: int = 0, credits: int = 0) -> None:
        with self._usage_lock:
            entry = self._usage[(key_id, action, source)]
            entry[0] += requests
            entry[1] += credits

    def _flush_usage(self, conn) -> None:
        with self._usage_lock:
            pending, self._usage = self._usage, defaultdict(lambda: [0, 0])
            self._usage_flushed = self.clock()
        stamp = datetime.now(timezone.utc)
        for (key_id, action, source), (requests, credits) in sorted(pending.items()):
            conn.execute(upsert(self.store.dialect, key_usage,
                                {"key_id": key_id, "action": action, "request_source": source,
                                 "requests": requests, "credits_spent": credits, "last_used_at": stamp},
                                ["key_id", "action", "request_source"],
                                {"requests": key_usage.c.requests + requests,
                                 "credits_spent": key_usage.c.credits_spent + credits,
                                 "last_used_at": stamp}))

    def flush_usage(self) -> None:
        """Write the usage counted so far (listing keys calls it first)."""
        if self._usage:
            with self.store.write() as conn:
                self._flush_usage(conn)
