"""A clock the tests move: code that waits on time takes ``clock`` (``svc.clock``), so a test
of a lease, a retry schedule or a session expiry advances this instead of sleeping."""

from __future__ import annotations

import time


class ManualClock:
    def __init__(self, now: float | None = None):
        self.now = time.time() if now is None else float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
