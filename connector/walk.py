"""Walking a whole followers (or following) list, page after page, each record once.

The walk calls the provider directly (no HTTP service in between) and yields each page's
new records as soon as it arrives; records are deduplicated across pages by
:func:`connector.records.follower_key`. ``connector followers`` (``cli/followers.py``) writes
them to a file, with progress and ``--resume``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


from .errors import UpstreamError
from .providers.base import Provider
from .providers.paging import Paginator
from .records import FOLLOWER_STATS_FIELDS, FOLLOWER_USER_FIELDS, Page, follower_key

__all__ = ["WalkStats", "walk_list"]

CSV_FIELDS = FOLLOWER_USER_FIELDS + FOLLOWER_STATS_FIELDS
# Failures the HTTP layer does not retry (the answer was a 200) and a second read may cure.
REREAD_KINDS = frozenset({"invalid_data"})


@dataclass
class WalkStats:
    records: int = 0  # new records written (or yielded)
    pages: int = 0
    duplicates: int = 0  # records dropped because an earlier page had them
    credits: int = 0  # upstream credits, where the upstream reports them
    total: int | None = None  # the list's size as the upstream reports it
    cursor: Any = None  # the cursor of the next page (None when finished)
    done: bool = False  # the upstream said there is nothing more
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.records / elapsed if elapsed > 0 else 0.0


def walk_list(provider: Provider, handle: str, which: str = "followers", *, cursor: Any = None,
         seen: set[str] | None = None, count: int | None = None, retries: int = 3,
         sleep: Callable[[float], None] = time.sleep,
         stats: WalkStats | None = None) -> Iterator[tuple[Page, list[dict]]]:
    """Yield ``(page, new_records)`` for every page from ``cursor`` to the end of the list.

    ``seen`` (follower keys already delivered) is updated in place; ``stats`` is updated
    before each yield, so ``stats.cursor`` is where to resume after the yielded page.
    Timeouts, transport errors, 429 and 5xx are retried once, by the provider's HTTP layer
    (:class:`connector.providers.http.RetryPolicy`; ``connector followers`` gives it a patient
    one), never again here. What that layer cannot see, a page that came back whole but
    malformed (``invalid_data``), is read again up to ``retries`` times, ``sleep`` waiting 2, 4,
    8 s between. A cursor that comes back raises (loop detected).
    """
    seen = set() if seen is None else seen
    stats = stats or WalkStats()
    stats.cursor = cursor
    paginator = Paginator(cursor, provider=provider.name)
    fetch = provider.operation(f"list_{which}")     # NotOffered when the provider has no such list
    while not paginator.done:
        for attempt in range(retries + 1):
            try:
                page = fetch(handle, cursor=paginator.cursor, count=count)
                break
            except UpstreamError as exc:
                if exc.kind not in REREAD_KINDS or attempt == retries:
                    raise
                sleep(2.0 * 2 ** attempt)
        paginator.advance(page)
        fresh = []
        for record in page.records:
            key = follower_key(record)
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            fresh.append(record)
        stats.pages += 1
        stats.records += len(fresh)
        credits = page.meta.get("creditsCharged", provider.page_credits)
        stats.credits += credits if isinstance(credits, int) else 0
        stats.total = page.total if page.total is not None else stats.total
        stats.cursor = None if paginator.done else paginator.cursor
        stats.done = paginator.done
        yield page, fresh
