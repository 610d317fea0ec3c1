"""The per-key cap on requests in flight in this web process.

A request holds one of its key's slots from authentication to the end of its answer; a key
already holding ``cap`` slots is answered ``429`` at once, before anything is counted or read
upstream. So one key whose upstream answers slowly (or never) holds at most ``cap`` of a
process's threads, and every other key keeps the rest. Each process counts for itself
(gunicorn's workers each allow ``cap`` per key): the cap is about threads, which are per
process.
"""

from __future__ import annotations

import threading

from ..errors import RATE_LIMITED, RateLimited

SETTING = "CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY"
RETRY_AFTER = 1    # seconds: a slot frees as soon as one of the key's requests is answered


class InFlight:
    def __init__(self, cap: int):
        self.cap = cap
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, key_id: str) -> None:
        """Take a slot for ``key_id``; :class:`RateLimited` when it holds ``cap`` already."""
        with self._lock:
            held = self._held.get(key_id, 0)
            if held >= self.cap:
                raise RateLimited(RETRY_AFTER, f"{RATE_LIMITED} This API key already has {self.cap} "
                                               f"request{'' if self.cap == 1 else 's'} in progress on this "
                                               f"server process, the most it may have at once ({SETTING}); "
                                               "wait for an answer before sending more.")
            self._held[key_id] = held + 1

    def leave(self, key_id: str) -> None:
        with self._lock:
            held = self._held.get(key_id, 0) - 1
            if held > 0:
                self._held[key_id] = held
            else:
                self._held.pop(key_id, None)   # bounded: only keys with requests running are kept

    def held(self, key_id: str) -> int:
        with self._lock:
            return self._held.get(key_id, 0)
