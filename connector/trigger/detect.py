"""Walking a newest-first follower list down to what a watch already knows.

Pure functions over two callables, so every rule is unit-testable without a network:

- ``fetch(cursor) -> Page | None`` reads one page (``None``: nobody can pay for it);
- ``is_seen(keys) -> set`` says which follower keys the watch has already seen.

A walk stops at the *frontier*: a run of ``run`` consecutive already-seen followers (a
single seen follower is not enough: a re-follower reappears at the top, and the newest
known follower may have unfollowed), or the end of the list. It also stops when its page
budget is spent, returning the cursor to continue from next time, so a burst bigger than
the budget is read over several polls and never lost. A cursor that comes back twice is a
loop (:class:`LoopDetected`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..errors import UpstreamError
from ..providers.paging import Paginator
from ..records import Page, follower_key

log = logging.getLogger("connector.trigger")

__all__ = ["LoopDetected", "Walk", "walk", "keyed"]


class LoopDetected(Exception):
    """The upstream returned a cursor it had already returned in this walk."""


@dataclass
class Walk:
    new: list[tuple[str, dict]] = field(default_factory=list)   # (key, record), newest first
    new_page: list[int] = field(default_factory=list)            # page (0-based, in this walk) of each new one
    pages: int = 0
    cursor: Any = None      # where to continue; None once the frontier or the end was reached
    reason: str = ""        # frontier | end | budget | unpaid

    @property
    def finished(self) -> bool:
        return self.reason in ("frontier", "end")


def keyed(records: Iterable[dict]) -> list[tuple[str, dict]]:
    """``(follower_key, record)`` pairs; records without any identity are skipped."""
    out = []
    for record in records:
        try:
            out.append((follower_key(record), record))
        except ValueError:
            log.warning("skipping a follower record without id, secUid or uniqueId")
    return out


def walk(fetch: Callable[[Any], Page | None], is_seen: Callable[[list[str]], set], *,
         start: Any = None, run: int = 3, max_pages: int = 10,
         known: set | None = None) -> Walk:
    """Read pages from ``start`` until the frontier, the end, or ``max_pages``.

    ``known`` holds keys found new earlier in the same poll; they count as seen here and
    the keys this walk finds are added to it.
    """
    known = set() if known is None else known
    result = Walk(cursor=start)
    paginator = Paginator(start)   # the shared guard against a cursor that comes back
    streak = 0
    while True:
        if result.pages >= max_pages:
            result.reason = "budget"
            return result
        page = fetch(paginator.cursor)
        if page is None:
            result.reason = "unpaid"
            return result
        result.pages += 1
        entries = keyed(page.records)
        seen = is_seen([key for key, _ in entries if key not in known]) if entries else set()
        for key, record in entries:
            if key in seen or key in known:
                streak += 1
                if streak >= run:
                    result.cursor, result.reason = None, "frontier"
                    return result
            else:
                streak = 0
                known.add(key)
                result.new.append((key, record))
                result.new_page.append(result.pages - 1)
        try:
            paginator.advance(page)
        except UpstreamError as exc:
            raise LoopDetected(exc.detail) from None
        if paginator.done or not page.records:
            result.cursor, result.reason = None, "end"
            return result
        result.cursor = paginator.cursor
