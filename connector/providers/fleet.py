"""The fleet provider: a simulated fleet's follower timelines (``connector simulate``), no network.

Each handle's followers are a list of follow times (unix seconds, ascending); follower ``i``
of a handle is always ``<handle>.<i>``. At the clock's time, a list shows those who have
followed by then, newest first, :data:`PAGE_SIZE` a page and only the newest
:data:`DEPTH_CAP` (as real upstreams), and tells each follow time
(``Page.meta["followed_at"]``), as a cursor in unix seconds does (TikTok Research). The
cursor is the index of the next, older follower: it stays put while new followers arrive.

It is not in the providers registry: the simulator uses it directly, and a test that runs
the real worker on a fleet registers it (``PROVIDERS["fleet"]``) and sets :attr:`timelines`.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from typing import Any, Callable, ClassVar

from ..config import Settings
from ..errors import UpstreamError
from ..records import Page
from .base import Provider

PAGE_SIZE = 30
DEPTH_CAP = 5000


class FleetProvider(Provider):
    name = "fleet"
    cursor_form = "a follower index"
    unsupported = {"get_profile": "a simulated fleet has follower lists only",
                   "list_following": "a simulated fleet has follower lists only"}
    timelines: ClassVar[dict[str, list[float]]] = {}   # what from_settings serves (set by a test)

    def __init__(self, timelines: dict[str, list[float]], clock: Callable[[], float] = time.time,
                 page_size: int = PAGE_SIZE):
        self.lists = timelines
        self.clock = clock
        self.page_size = page_size

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "FleetProvider":
        return cls(cls.timelines, clock=settings.clock)

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        times = self.lists.get(handle)
        if times is None:
            raise UpstreamError("not_found", f"no account {handle!r} in the fleet", provider=self.name)
        visible = bisect_right(times, self.clock())
        oldest = max(0, visible - DEPTH_CAP)
        newest = visible - 1 if cursor is None else min(int(cursor), visible - 1)
        last = max(oldest, newest - self.page_size + 1)
        indexes = range(newest, last - 1, -1) if newest >= oldest else range(0)
        # (only what a simulated follower has: its id and handle; other fields are absent)
        prefix = handle + "."
        records = []
        for i in indexes:
            name = prefix + str(i)
            records.append({"user": {"id": name, "uniqueId": name}})
        more = bool(records) and last > oldest
        return Page(records=records, next_cursor=str(last - 1) if more else None,
                    max_cursor=str(newest) if records else None, has_more=more, total=visible,
                    meta={"followed_at": [times[i] for i in indexes]})

    def list_following(self, handle: str, **_) -> Page:   # (unsupported; present for the contract check)
        raise UpstreamError("reported_issue", "a simulated fleet has follower lists only", provider=self.name)

    def get_profile(self, handle: str, **_) -> dict:
        raise UpstreamError("reported_issue", "a simulated fleet has follower lists only", provider=self.name)
